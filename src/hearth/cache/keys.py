"""What may be cached, under which key, and the features the semantic guards compare.

The exact key covers everything that changes the answer: the requested model, every message, the
sampling parameters, tools and response format. The semantic namespace covers everything but the last
user turn (model, system prompt, earlier turns, sampling class), so a follow-up question is only ever
matched against the same question asked in the same conversation context.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from hearth.core.types import ChatRequest

_TIME_SENSITIVE = re.compile(
    r"\b(weather|forecast|today|tonight|tomorrow|yesterday|now|current(ly)?|latest|news|this (week|month|year)|"
    r"right now|stock price|score)\b|天气|今天|明天|昨天|现在|目前|最新|新闻|今年|本周|几点|股价",
    re.IGNORECASE,
)


def _digest(obj: Any) -> str:
    return hashlib.blake2b(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def _messages(req: ChatRequest, upto: int | None = None) -> list[Any]:
    return [[m.role, m.content, m.name, m.tool_call_id,
             [[c.name, c.arguments] for c in m.tool_calls] if m.tool_calls else None, m.images]
            for m in req.messages[:upto]]


def _sampling(req: ChatRequest) -> list[Any]:
    s = req.sampling
    return [s.max_tokens, s.temperature, s.top_p, s.top_k, s.min_p, s.stop, s.seed, s.presence_penalty,
            s.frequency_penalty, s.repeat_penalty, sorted((s.logit_bias or {}).items())]


def _provider(req: ChatRequest) -> list[Any]:
    """Thinking on or off changes the answer; nothing is added to keys of requests that set neither."""
    if req.thinking is None and not req.provider_fields:
        return []
    return [req.thinking, req.provider_fields]


def _model(model: str, req: ChatRequest) -> str:
    """A LoRA adapter answers differently from its base model: it is part of the model's identity here."""
    return f"{model}+{req.adapter}" if req.adapter else model


def exact_key(model: str, req: ChatRequest, namespace: str = "") -> str:
    return "x:" + _digest([namespace, _model(model, req), req.prompt, _messages(req), _sampling(req), req.tools,
                           req.tool_choice, req.response_format, *_provider(req)])


def semantic_namespace(model: str, req: ChatRequest, namespace: str = "") -> str:
    """Everything but the last user turn: a near match must share the whole context before it."""
    return "s:" + _digest([namespace, _model(model, req), _messages(req, -1), _sampling(req), req.tools,
                           req.tool_choice, req.response_format, *_provider(req)])


def last_user_text(req: ChatRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    return req.messages[-1].content if req.messages and req.messages[-1].role == "user" else ""


def uncacheable_reason(req: ChatRequest, policy: str, opted_in: bool) -> str | None:
    """Why this request must not use the cache, or None. Cheapest checks first: this runs on every request."""
    if not opted_in and policy != "all":
        if policy == "opt-in":
            return "not requested"
        t = req.sampling.temperature
        if t is None or t > 0:
            return "sampling is random (temperature > 0)"
    if any(m.role == "tool" for m in req.messages):
        return "tool results"
    if (req.intent is not None and req.intent.has("time_sensitive")) or _TIME_SENSITIVE.search(last_user_text(req)):
        return "time-sensitive"
    return None


# --- guard features --------------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|[零一二三四五六七八九十百千万亿两]+(?=[个只条件次年月日号点岁元块斤])")
_ENTITY = re.compile(r"\b[A-Z][a-zA-Z0-9]+(?:[-'][A-Za-z0-9]+)*\b|\"[^\"]+\"|'[^']+'|《[^》]+》|「[^」]+」")
_NEGATION = re.compile(
    r"\b(not|no|never|none|nothing|without|cannot|can't|don't|doesn't|isn't|aren't|won't|"
    r"shouldn't|wouldn't|didn't|wasn't|weren't|neither|nor)\b|不|没|别|无|非|未|勿",
    re.IGNORECASE,
)
_ANTONYMS = [
    ("enable", "disable"), ("enabled", "disabled"), ("on", "off"), ("open", "close"), ("start", "stop"),
    ("increase", "decrease"), ("add", "remove"), ("install", "uninstall"), ("allow", "deny"), ("allow", "block"),
    ("show", "hide"), ("lock", "unlock"), ("encrypt", "decrypt"), ("import", "export"), ("upload", "download"),
    ("before", "after"), ("min", "max"), ("minimum", "maximum"), ("first", "last"), ("buy", "sell"),
    ("true", "false"), ("up", "down"), ("more", "less"), ("higher", "lower"), ("faster", "slower"),
    ("开", "关"), ("打开", "关闭"), ("开启", "关闭"), ("启用", "禁用"), ("增加", "减少"), ("上", "下"), ("买", "卖"),
    ("加", "减"), ("前", "后"), ("大", "小"), ("多", "少"), ("最大", "最小"), ("安装", "卸载"), ("显示", "隐藏"),
]
_WORD = re.compile(r"[a-z]+|[\u4e00-\u9fff]", re.IGNORECASE)


def guard_features(text: str) -> dict[str, Any]:
    words = set(_WORD.findall(text.lower()))
    low = text.lower()
    sides = []
    for a, b in _ANTONYMS:
        in_a = a in words if a.isascii() else a in low
        in_b = b in words if b.isascii() else b in low
        if in_a != in_b:
            sides.append(f"{a}/{b}:{'a' if in_a else 'b'}")
    ents = sorted({e.strip("\"'《》「」").lower() for e in _ENTITY.findall(text)} - {text.split(" ", 1)[0].lower()})
    return {
        "numbers": sorted(_NUMBER.findall(text)),
        "entities": ents,
        "negations": len(_NEGATION.findall(text)) % 2,
        "polarity": sorted(sides),
        "text": low,
    }


def guard_rejects(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """Why two near-identical questions must not share an answer, or None."""
    if a["numbers"] != b["numbers"]:
        return "numbers"
    if a["negations"] != b["negations"]:
        return "negation"
    if a["polarity"] != b["polarity"]:
        return "antonym"
    # An entity (a capitalised name, a quoted or titled string) seen in either question must appear in both;
    # compared without case, so "python" and "Python" agree while "Paris" and "Lyon" do not.
    for e in set(a["entities"]) | set(b["entities"]):
        if (e in a["text"]) != (e in b["text"]):
            return "entities"
    return None
