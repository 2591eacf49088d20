"""Cache keys, what may be cached, the semantic guards, and the byte-bounded LRU (no model, no Redis)."""

from __future__ import annotations

import time

import pytest

from hearth.cache.keys import exact_key, guard_features, guard_rejects, semantic_namespace, uncacheable_reason
from hearth.cache.tiers import MemoryLRU
from hearth.core.types import ChatRequest, Message, Sampling


def req(*turns: str, system: str = "be brief", temperature: float | None = 0.0, **kw: object) -> ChatRequest:
    msgs = [Message("system", system)] + [
        Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)
    ]
    return ChatRequest(model="m", messages=msgs, sampling=Sampling(temperature=temperature, **kw))  # type: ignore[arg-type]


def test_exact_key_covers_what_changes_the_answer() -> None:
    base = exact_key("m", req("hi"))
    assert base == exact_key("m", req("hi"))
    assert base != exact_key("other", req("hi"))
    assert base != exact_key("m", req("hi", system="be long"))
    assert base != exact_key("m", req("hi", max_tokens=5))
    assert base != exact_key("m", req("hi"), namespace="tenant-2")


def test_semantic_namespace_is_the_context_before_the_last_turn() -> None:
    assert semantic_namespace("m", req("a", "b", "q1")) == semantic_namespace("m", req("a", "b", "q2"))
    assert semantic_namespace("m", req("a", "b", "q1")) != semantic_namespace("m", req("x", "b", "q1"))
    assert semantic_namespace("m", req("q1")) != semantic_namespace("m", req("q1", system="other persona"))


def test_what_is_cacheable() -> None:
    assert uncacheable_reason(req("hi"), "deterministic", False) is None
    assert uncacheable_reason(req("hi", temperature=0.7), "deterministic", False)
    assert uncacheable_reason(req("hi", temperature=None), "deterministic", False)
    assert uncacheable_reason(req("hi", temperature=0.7), "deterministic", True) is None  # opted in
    assert uncacheable_reason(req("What's the weather in Paris?"), "all", False) == "time-sensitive"
    assert uncacheable_reason(req("今天北京天气怎么样"), "all", False) == "time-sensitive"
    r = req("hi")
    r.messages.append(Message("tool", "42", tool_call_id="c1"))
    assert uncacheable_reason(r, "all", False) == "tool results"
    assert uncacheable_reason(req("hi"), "opt-in", False) == "not requested"


@pytest.mark.parametrize(("a", "b", "reason"), [
    ("How do I enable dark mode?", "How do I disable dark mode?", "antonym"),
    ("如何打开蓝牙", "如何关闭蓝牙", "antonym"),
    ("I have 3 apples and eat one, how many are left?", "I have 4 apples and eat one, how many are left?", "numbers"),
    ("Is Python fast?", "Is Python not fast?", "negation"),
    ("这个功能可以用吗", "这个功能不可以用吗", "negation"),
    ("What is the population of Paris?", "What is the population of Lyon?", "entities"),
    ("When was 《红楼梦》 written?", "When was 《水浒传》 written?", "entities"),
])
def test_guards_reject_different_questions(a: str, b: str, reason: str) -> None:
    assert guard_rejects(guard_features(a), guard_features(b)) == reason


@pytest.mark.parametrize(("a", "b"), [
    ("How do I enable dark mode in Settings?", "how do i enable dark mode in settings"),
    ("What is the capital of France?", "what's the capital of france??"),
    ("怎么学习编程？", "怎样学习编程"),
])
def test_guards_accept_paraphrases(a: str, b: str) -> None:
    assert guard_rejects(guard_features(a), guard_features(b)) is None


def test_lru_is_bounded_by_bytes_and_expires() -> None:
    lru = MemoryLRU(10_000)
    for i in range(1000):
        lru.set(f"k{i}", b"x" * 500, ttl=60)
    assert lru.bytes <= 10_000 and lru.evictions > 0 and lru.get("k999") and lru.get("k0") is None
    lru.set("short", b"v", ttl=0.01)
    time.sleep(0.02)
    assert lru.get("short") is None
