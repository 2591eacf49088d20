"""A system prompt whose time line changes every minute keeps its KV prefix (issue 24): the changing lines go
next to the latest user message for models with `stable_prefix` (on for paced ones like `voice`)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hearth.backends.stable_prefix import VolatileLines
from hearth.core.types import Message
from tests.conftest import start_hearth
from tests.support.httpcall import call

RULES = "\n".join(f"{i}. Rule number {i}: keep answers short, warm and spoken; never use lists or markdown."
                  for i in range(1, 25))


def system(clock: str, weather: str = "多云，气温 24℃~31℃", city: str = "广州") -> str:
    return (f"You are a friendly voice assistant.\n<rules>\n{RULES}\n</rules>\n<context>\n- Current time: {clock}\n"
            f"- Today's date: 2026-12-07 (星期一)\n- Device location: {city}\n- Weather: {weather}\n</context>\n"
            "<memory>\n</memory>")


def convo(sys_text: str, *turns: str) -> list[Message]:
    msgs = [Message("system", sys_text)]
    for i, t in enumerate(turns):
        msgs.append(Message("user", t))
        if i < len(turns) - 1:
            msgs.append(Message("assistant", "好的。"))
    return msgs


def test_clock_and_date_lines_move_from_the_first_request() -> None:
    v = VolatileLines()
    out = v.arrange(convo(system("10:01"), "你好"))
    assert "Current time" not in out[0].content and "Today's date" not in out[0].content
    assert "Device location: 广州" in out[0].content
    assert [m.role for m in out] == ["system", "system", "user"]
    assert out[1].content == "<context>\n- Current time: 10:01\n- Today's date: 2026-12-07 (星期一)\n</context>"


def test_lines_that_change_are_learnt_and_stay_moved() -> None:
    v = VolatileLines()
    first = v.arrange(convo(system("10:01", weather="多云"), "你好"))
    assert "Weather: 多云" in first[0].content  # not known to change yet
    second = v.arrange(convo(system("10:02", weather="晴"), "你好"))
    assert "Weather" not in second[0].content and "- Weather: 晴" in second[-2].content
    # From then on the weather line is moved, whatever it says, and the stable part is byte-identical.
    third = v.arrange(convo(system("10:03", weather="小雨"), "你好", "明天呢"))
    assert third[0].content == second[0].content
    # The first turn keeps the block it was asked with (so its KV stays valid); the new turn gets today's.
    assert [m.role for m in third] == ["system", "system", "user", "assistant", "system", "user"]
    assert third[1] == second[1] and "- Weather: 晴" in third[1].content
    assert "- Weather: 小雨" in third[4].content and "10:03" in third[4].content
    assert "Today's date" not in third[4].content  # unchanged since the first turn's block: not repeated


def test_each_turn_extends_the_previous_rendering() -> None:
    """What the engine caches after turn n (its prompt and answer) is a prefix of turn n+1's prompt."""
    v = VolatileLines()
    turns = ["你好", "讲个笑话", "再来一个", "拜拜"]
    before: list[Message] = []
    for n in range(1, len(turns) + 1):
        now = v.arrange(convo(system(f"10:0{n}"), *turns[:n]))
        assert now[: len(before)] == before, n
        before = [*now, Message("assistant", "好的。")]


def test_short_or_absent_system_prompts_are_left_alone() -> None:
    v = VolatileLines()
    msgs = [Message("system", "Current time: 10:01. Be brief."), Message("user", "hi")]
    assert v.arrange(msgs) is msgs
    only_user = [Message("user", "what time is it? 10:01")]
    assert v.arrange(only_user) is only_user


def _chat(url: str, model: str, msgs: list[dict[str, str]]) -> dict[str, Any]:
    body = {"model": model, "messages": msgs, "max_tokens": 2, "temperature": 0}
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return dict(json.loads(r.read()))


@pytest.mark.model
def test_a_new_minute_reuses_the_prefix(tmp_path: Path) -> None:
    config = """
models:
  plain: {kind: llamacpp, path: 'builtin:smollm2-135m', n_ctx: 2048, threads: 2}
  steady: {kind: llamacpp, path: 'builtin:smollm2-135m', n_ctx: 2048, threads: 2, stable_prefix: true}
"""
    s = start_hearth(config, tmp_path, "stable")
    try:
        cached = {}
        # xiaozhi's layout: the context at the end of the system prompt, then few-shot turns (and, with Qwen's
        # template, the tool block) that a changed time line invalidates with it.
        shots = [{"role": r, "content": f"{r} example {i}: " + "一二三四五六七八九十" * 6}
                 for i in range(4) for r in ("user", "assistant")]
        for model in ("plain", "steady"):
            for clock in ("10:01", "10:02"):
                msgs = [{"role": "system", "content": system(clock)}, *shots, {"role": "user", "content": "你好"}]
                out = _chat(s.url, model, msgs)
            cached[model] = (out["usage"]["prompt_tokens_details"]["cached_tokens"], out["usage"]["prompt_tokens"])
        plain_cached, total = cached["plain"]
        steady_cached, steady_total = cached["steady"]
        assert total - plain_cached > 300, cached  # everything after the time line is prefilled again
        assert steady_cached >= steady_total - 40, cached  # only the moved lines and the question are new
    finally:
        s.stop()


@pytest.mark.model
def test_a_voice_history_that_outgrows_the_context_loses_its_oldest_turns(tmp_path: Path) -> None:
    """A voice server sends its whole history each turn and can only apologise for a 400: a paced request drops
    its oldest turns to fit; an unpaced one still gets context_length_exceeded."""
    config = """
models:
  smol: {kind: llamacpp, path: 'builtin:smollm2-135m', n_ctx: 256, threads: 2}
  smol-voice: {kind: router, default: smol, pace: speech, health_interval: null}
"""
    s = start_hearth(config, tmp_path, "overflow")
    try:
        msgs: list[dict[str, str]] = [{"role": "system", "content": "You are brief."}]
        for i in range(12):
            msgs += [{"role": "user", "content": f"Question number {i}: tell me about the number {i}."},
                     {"role": "assistant", "content": f"The number {i} is a fine number with many properties."}]
        msgs.append({"role": "user", "content": "And the number 12?"})
        status, body = call(s.url + "/v1/chat/completions", {"model": "smol", "messages": msgs, "max_tokens": 8})
        assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
        status, body = call(s.url + "/v1/chat/completions", {"model": "smol-voice", "messages": msgs, "max_tokens": 8})
        assert status == 200, body
        assert body["usage"]["prompt_tokens"] <= 256 - 8, body
    finally:
        s.stop()
