"""How good an answer is, without a reference answer: heuristic scores in [0, 1], or an LLM judge's.

The heuristic mode is cheap enough to run on a sample of live traffic and on a router's first window:
one embedding of the question and the answer (for relevance) and string checks for the rest. It
catches what a small model gets wrong in ways that do not need knowledge to see: an empty answer, a
refusal, an answer in the wrong language, a loop, text cut off at the budget, a short reply to a
question that asks for an explanation, an answer that wanders off the question, and (with sources)
claims the sources do not support. It cannot tell a fluent wrong fact from a right one; the judge mode
(any configured model, asked for a 1-10 grade) is for that, at the price of a generation.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hearth.convo import text as tx

REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry, (but )?i|i apologi[sz]e|unfortunately,? i|i can(not|'t) (help|assist|answer|"
    r"provide|do|comply|fulfil)|i'?m (not able|unable) to|i am (not able|unable) to|as an ai|i don'?t have (access|"
    r"the ability|real-time|information)|i do not have (access|the ability|real-time)|i'?m just an ai)|"
    r"^\s*(抱歉|对不起|很抱歉|我无法|我不能|我没有办法|作为一个?(ai|人工智能|语言模型)|我只是一个?(ai|人工智能))",
    re.IGNORECASE,
)
_DONT_KNOW = re.compile(
    r"\b(i don'?t know|not sure|no idea|cannot be determined)\b|不知道|不清楚|无法确定", re.IGNORECASE
)
_EXPLAIN = re.compile(
    r"^(why|how|explain|describe|compare|what are the (differences|steps|reasons|benefits))\b|为什么|怎么|如何|解释|"
    r"介绍|描述|比较|区别|步骤|原因",
    re.IGNORECASE,
)
_HOW_MANY = re.compile(
    r"\bhow (many|much|long|old|far|tall|big)\b|多少|几[个次年岁天]|多大|多长|多远|多高", re.IGNORECASE
)
_WHEN = re.compile(r"\bwhen\b|\bwhat (year|date|time|day)\b|什么时候|哪一?年|几月|几号|何时", re.IGNORECASE)
_WHO = re.compile(r"^\s*(who|whom)\b|谁", re.IGNORECASE)
_WHERE = re.compile(r"^\s*where\b|哪里|在哪|什么地方", re.IGNORECASE)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|dozen|none|zero)\b|[零一二三四五六七八九十百千万亿两]",
    re.IGNORECASE,
)
_DATE = re.compile(r"\b(1\d{3}|20\d{2})\b|\d+(st|nd|rd|th)|\b(january|february|march|april|may|june|july|august|"
                   r"september|october|november|december|century|spring|summer|autumn|fall|winter|today|yesterday)\b|"
                   r"[年月日]|世纪", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Z][a-z]+|[\u4e00-\u9fff]{2,4}")
_END = re.compile(r"[.!?。！？…)\]\"'`”」』*]\s*$|```\s*$|\d\s*$")

_MAX_CHARS = 20_000
WEIGHTS = {"relevance": 0.35, "completeness": 0.2, "coherence": 0.15, "language": 0.15, "groundedness": 0.15}

# Embeds [question, answer] (query-side for the question where the model distinguishes) into unit rows.
EmbedPair = Callable[[str, str], Awaitable[Any]]
# Runs one prompt through a chat model and returns its text.
Generate = Callable[[str], Awaitable[str]]


def is_refusal(answer: str) -> bool:
    return bool(REFUSAL.search(answer))


@dataclass(slots=True)
class Report:
    overall: float
    scores: dict[str, float]
    suggestions: list[str] = field(default_factory=list)
    mode: str = "heuristic"
    flags: list[str] = field(default_factory=list)  # empty, refusal, language_mismatch, truncated, repetitive

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "scores": self.scores, "suggestions": self.suggestions, "mode": self.mode,
                "flags": self.flags}


def _repetition(answer: str) -> float:
    """Share of the answer's word 3-grams (Han: character 4-grams) that repeat an earlier one."""
    han = tx.han_share(answer) > 0.3
    units = [c for c in answer if not c.isspace()] if han else answer.lower().split()
    n = 4 if han else 3
    grams = [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    if len(grams) < 8:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def _type_match(question: str, answer: str) -> float | None:
    """For factoid questions: does the answer have the kind of thing asked for? None: not a factoid question."""
    if _HOW_MANY.search(question):
        return 1.0 if _NUMBER.search(answer) else 0.2
    if _WHEN.search(question):
        return 1.0 if _DATE.search(answer) or _NUMBER.search(answer) else 0.2
    if _WHO.search(question) or _WHERE.search(question):
        return 1.0 if _NAME.search(answer) else 0.4
    return None


def _grounded(answer: str, sources: Sequence[str]) -> float:
    """Share of the answer's sentences whose content terms are mostly found in the sources."""
    src = tx.bag("\n".join(sources))
    sentences = [s for s in re.split(r"(?<=[.!?。！？])\s*|\n+", answer) if len(tx.terms(s)) >= 2]
    if not sentences:
        return 1.0
    supported = sum(1 for s in sentences if tx.overlap(tx.bag(re.sub(r"\[\d+\]", "", s)), src) >= 0.5)
    return supported / len(sentences)


class QualityEvaluator:
    def __init__(self, embed: EmbedPair | None = None, judge: Generate | None = None) -> None:
        self.embed = embed
        self.judge = judge

    async def evaluate(self, question: str, answer: str, sources: Sequence[str] | None = None, *,
                       mode: str = "heuristic", finish_reason: str | None = None,
                       partial: bool = False) -> Report:
        """`partial`: the answer is only a first window (a router deciding whether to escalate), so it is not
        judged on completeness."""
        if mode == "judge":
            return await self._judge(question, answer, sources)
        return await self.heuristic(question, answer, sources, finish_reason=finish_reason, partial=partial)

    async def heuristic(self, question: str, answer: str, sources: Sequence[str] | None = None, *,
                        finish_reason: str | None = None, partial: bool = False) -> Report:
        # Bounded work on the event loop whatever the size: the checks need the start of a long answer only.
        a, question = answer.strip()[:_MAX_CHARS], question[:_MAX_CHARS]
        sources = [x[:_MAX_CHARS] for x in sources[:20]] if sources else sources
        tips: list[str] = []
        flags: list[str] = []
        if not a:
            zero = {k: 0.0 for k in WEIGHTS if k != "groundedness" or sources}
            return Report(0.0, zero, ["The answer is empty: retry, or fall back to another model."], flags=["empty"])
        scores: dict[str, float] = {}

        # Relevance: meaning (embeddings) and shared terms, and for factoid questions the kind of answer.
        q_terms, a_terms = tx.bag(question), tx.bag(a)
        lexical = tx.overlap(q_terms, a_terms)
        semantic = None
        if self.embed is not None:
            rows = await self.embed(question, a)
            cos = float(rows[0] @ rows[1])
            semantic = min(1.0, max(0.0, (cos - 0.05) / 0.45))
        rel = max(lexical, semantic) if semantic is not None else lexical
        typed = _type_match(question, a)
        if typed is not None and len(a.split()) <= 12:
            rel = 0.5 * rel + 0.5 * typed
        refusal = is_refusal(a)
        if refusal:
            rel = min(rel, 0.1)
            flags.append("refusal")
            tips.append("The model refused or said it cannot help: route this kind of question to a stronger model.")
        elif _DONT_KNOW.search(a) and len(a) < 200:
            rel = min(rel, 0.3)
            flags.append("unsure")
        scores["relevance"] = round(rel, 3)
        if rel < 0.4 and not refusal:
            tips.append("The answer does not seem to address the question.")

        # Language: asked in Chinese, answered in Chinese (and the other way round).
        ql, al = tx.language(question), tx.language(a)
        lang_ok = not ql or not al or ql == al or (ql == "en" and tx.han_share(a) < 0.5)
        scores["language"] = 1.0 if lang_ok else 0.0
        if not lang_ok:
            flags.append("language_mismatch")
            names = {"zh": "Chinese", "en": "English"}
            tips.append(f"Asked in {names[ql]}, answered in {names[al]}: tell the model which language to answer in.")

        # Coherence: loops and garbage.
        rep = _repetition(a)
        junk = sum(1 for c in a if c == "\ufffd" or (ord(c) < 32 and c not in "\n\t\r")) / len(a)
        coh = max(0.0, 1.0 - max(0.0, rep - 0.1) * 2.0 - junk * 10)
        scores["coherence"] = round(coh, 3)
        if rep > 0.3:
            flags.append("repetitive")
            tips.append("The answer repeats itself: raise repeat_penalty or lower max_tokens.")

        # Completeness: cut off, or too short for what was asked.
        if not partial:
            comp = 1.0
            if finish_reason == "length" or (len(a) > 200 and not _END.search(a)):
                comp = 0.4
                flags.append("truncated")
                tips.append("The answer was cut off: raise max_tokens.")
            elif _EXPLAIN.search(question.strip()) and len(a_terms) < 6:
                comp = 0.5
                tips.append("The question asks for an explanation and the answer is very short.")
            scores["completeness"] = comp

        if sources:
            g = _grounded(a, sources)
            scores["groundedness"] = round(g, 3)
            if g < 0.5:
                tips.append("Much of the answer is not in the sources: it may be made up.")

        total = sum(WEIGHTS[k] for k in scores)
        overall = sum(WEIGHTS[k] * v for k, v in scores.items()) / total
        if refusal:
            overall = min(overall, 0.2)
        if not lang_ok:
            overall = min(overall, 0.4)
        return Report(round(overall, 3), scores, tips, flags=flags)

    async def _judge(self, question: str, answer: str, sources: Sequence[str] | None) -> Report:
        if self.judge is None:
            raise LookupError("no judge model is configured (conversation.quality.judge_model)")
        ctx = ""
        if sources:
            ctx = "Sources:\n" + "\n".join(f"[{i + 1}] {s[:800]}" for i, s in enumerate(sources[:5])) + "\n\n"
        prompt = (
            "You grade answers. Read the question and the answer, then grade how correct and helpful the answer is "
            "from 1 (wrong or useless) to 10 (correct and complete). Reply with the number only.\n\n"
            f"{ctx}Question: {question.strip()}\nAnswer: {answer.strip()}\nGrade:"
        )
        reply = await self.judge(prompt)
        m = re.search(r"\b(10|[1-9])\b(?!\s*[-–/]\s*\d)", reply)  # "1-10: 7" is a 7
        if m is None:
            return Report(0.5, {"judge": 0.5}, ["The judge gave no grade; 0.5 stands in."], mode="judge",
                          flags=["judge_unparsed"])
        value = round((int(m.group(1)) - 1) / 9, 3)
        tips = [] if value >= 0.5 else [f"The judge graded the answer {m.group(1)}/10."]
        return Report(value, {"judge": value}, tips, mode="judge")
