"""The quality evaluator: each heuristic on answers built to fail it, relevance with the real MiniLM, and the
judge mode over a scripted generator (the real-model judge is exercised through /v1/evaluate)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearth.config import EmbeddingModel
from hearth.convo.quality import QualityEvaluator, Report, is_refusal
from hearth.embed.local import LocalEmbedder


def run(ev: QualityEvaluator, q: str, a: str, **kw: Any) -> Report:
    return asyncio.run(ev.evaluate(q, a, **kw))


PLAIN = QualityEvaluator()


def test_empty_and_refusal() -> None:
    r = run(PLAIN, "What is the capital of Peru?", "   ")
    assert r.overall == 0.0 and r.flags == ["empty"] and r.suggestions
    r = run(PLAIN, "How do I pick a lock?", "I'm sorry, but I can't help with that.")
    assert r.overall <= 0.2 and "refusal" in r.flags
    assert is_refusal("抱歉，我无法回答这个问题") and not is_refusal("Sorry to hear that! Here is a fix:")


def test_language_mismatch() -> None:
    r = run(PLAIN, "北京有哪些好吃的？", "Beijing has roast duck, zhajiangmian and hot pot.")
    assert r.scores["language"] == 0.0 and r.overall <= 0.4 and "language_mismatch" in r.flags
    ok = run(PLAIN, "北京有哪些好吃的？", "北京有烤鸭、炸酱面和涮羊肉。")
    assert ok.scores["language"] == 1.0 and ok.overall > r.overall


def test_repetition_and_truncation() -> None:
    loop = "The answer is yes because it is. " * 12
    r = run(PLAIN, "Is water wet?", loop)
    assert "repetitive" in r.flags and r.scores["coherence"] < 0.5
    cut = run(PLAIN, "Explain how vaccines work", "Vaccines train the immune system by " + "showing it " * 3 + "a harmless",
              finish_reason="length")
    assert "truncated" in cut.flags and cut.scores["completeness"] < 1


def test_short_answer_to_an_explanation_and_factoid_type() -> None:
    r = run(PLAIN, "Why is the sky blue?", "Because.")
    assert r.scores["completeness"] < 1
    good = run(PLAIN, "How many legs does a spider have?", "Eight.")
    bad = run(PLAIN, "How many legs does a spider have?", "Spiders.")
    assert good.scores["relevance"] > bad.scores["relevance"]


def test_groundedness_against_sources() -> None:
    src = ["The Eiffel Tower is 330 metres tall and was completed in 1889 for the World's Fair."]
    grounded = run(PLAIN, "How tall is the Eiffel Tower?", "The Eiffel Tower is 330 metres tall [1].", sources=src)
    made_up = run(PLAIN, "How tall is the Eiffel Tower?", "It was painted gold by Napoleon in 1920 for a royal wedding.",
                  sources=src)
    assert grounded.scores["groundedness"] == 1.0 and made_up.scores["groundedness"] < 0.5
    assert grounded.overall > made_up.overall


@pytest.fixture(scope="module")
def minilm() -> Any:
    emb = LocalEmbedder("all-minilm", EmbeddingModel(kind="embedding"))

    async def pair(q: str, a: str) -> Any:
        return (await emb.embed([q, a])).vectors

    yield pair
    asyncio.run(emb.close())


def test_relevance_with_embeddings(minilm: Any) -> None:
    ev = QualityEvaluator(minilm)
    q = "How do I keep basil plants alive indoors?"
    on = run(ev, q, "Give basil six hours of sun a day, water when the top of the soil is dry, and pinch off flowers.")
    off = run(ev, q, "The French Revolution began in 1789 with the storming of the Bastille.")
    assert on.scores["relevance"] > off.scores["relevance"] + 0.3
    assert on.overall > off.overall


def test_judge_mode() -> None:
    async def judge(prompt: str) -> str:
        assert "Question: 2+2?" in prompt and "Answer: 4" in prompt
        return " 9"

    r = run(QualityEvaluator(judge=judge), "2+2?", "4", mode="judge")
    assert r.mode == "judge" and r.overall == pytest.approx(8 / 9, abs=1e-3)

    async def babble(prompt: str) -> str:
        return "a fine answer"

    r = run(QualityEvaluator(judge=babble), "2+2?", "4", mode="judge")
    assert r.overall == 0.5 and "judge_unparsed" in r.flags
    with pytest.raises(LookupError):
        run(PLAIN, "2+2?", "4", mode="judge")
