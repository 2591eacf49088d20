"""The loop guard (issue 24): an answer that repeats one unit over and over ends with finish reason stop; text,
lists and code that repeat only in parts are left alone."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from hearth.engine.loops import MIN_SPAN, LoopGuard
from tests.conftest import Server


def _feed(tokens: list[int]) -> int | None:
    """The index of the token at which the guard fires, or None."""
    g = LoopGuard()
    for i, t in enumerate(tokens):
        if g.looping(t):
            return i
    return None


def test_a_repeated_phrase_is_cut_after_three_copies() -> None:
    phrase = list(range(100, 120))  # a 20-token sentence
    at = _feed(list(range(30)) + phrase * 10)
    assert at is not None and 30 + 3 * 20 - 1 <= at < 30 + 3 * 20 + 2


def test_one_token_over_and_over_is_cut_at_the_span() -> None:
    assert _feed([7] * 100) == MIN_SPAN - 1


def test_ordinary_text_lists_and_code_are_left_alone() -> None:
    import random

    rng = random.Random(1)
    assert _feed([rng.randrange(30000) for _ in range(2000)]) is None
    # A numbered list: the same shape each item, different numbers.
    item = lambda n: [11, 500 + n, 13, 14, 15, 16, 17, 18]  # noqa: E731
    assert _feed([t for n in range(40) for t in item(n)]) is None
    # Two copies of a long unit (a repeated paragraph quoted once) are not a loop.
    para = list(range(200, 260))
    assert _feed(para + para) is None
    # Short repetition below the span: "ha ha ha ha".
    assert _feed([1, 2] * 10 + list(range(300, 340))) is None


def _chat(gateway: Server, prompt: str) -> dict[str, object]:
    body = {"model": "smol", "temperature": 0, "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]}
    req = urllib.request.Request(gateway.url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return dict(json.loads(r.read()))


@pytest.mark.model
def test_a_looping_answer_ends_with_stop(gateway: Server) -> None:
    """SmolLM2 under greedy decoding answers this with one sentence over and over (without the guard: all 200
    tokens); the guard ends it after three copies, with finish reason stop, and counts it. Counting to 500,
    which repeats a shape but never a unit, runs to its max_tokens."""
    out: dict[str, Any] = _chat(gateway, "Repeat after me forever: la la la la")
    text = out["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop", out
    assert out["usage"]["completion_tokens"] < 100, out
    assert 3 <= text.count("never-ending mercy") <= 8, text  # 48 tokens of an 8-token unit, and the first
    counted: dict[str, Any] = _chat(gateway, "List the numbers 1 to 500 separated by commas.")
    assert counted["choices"][0]["finish_reason"] == "length", counted
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    line = next(x for x in metrics.splitlines() if x.startswith('hearth_engine_value{model="smol",what="loops_stopped"}'))
    assert float(line.split()[-1]) >= 1
