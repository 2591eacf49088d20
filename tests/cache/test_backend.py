"""The cache stage in-process (memory tier only) around scripted models: what is stored, what is replayed,
what is never cached. tests/cache/test_cache.py covers Redis, replicas and the semantic index for real."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hearth.cache.backend import CacheBackend, ResponseCache
from hearth.config import CacheConfig
from hearth.core.collect import Collected, collect
from hearth.core.errors import UpstreamError
from hearth.core.types import CacheInfo, ChatRequest, Message, Sampling
from hearth.testing import Reply, ScriptedBackend


def ask(b: CacheBackend, text: str = "what is 2+2?", stream: bool = False, **ext: Any) -> tuple[str, Collected]:
    req = ChatRequest(model=b.name, messages=[Message("user", text)], sampling=Sampling(temperature=0.0),
                      stream=stream, extensions={"cache": ext} if ext else {})

    async def go() -> tuple[str, Collected]:
        status, answer = "", Collected()
        async for c in b.stream(req):
            if type(c) is CacheInfo:
                status = c.status
            answer.add(c)
        return status, answer

    return asyncio.run(go())


def cached(model: ScriptedBackend, **cfg: Any) -> tuple[CacheBackend, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []
    cache = ResponseCache(CacheConfig(**cfg), on_event=lambda kind, value: events.append((kind, value)))
    return CacheBackend(model, cache), events


def test_second_identical_request_is_a_hit_with_the_same_answer_and_usage() -> None:
    model = ScriptedBackend("m", Reply("four", usage=(7, 1)))
    b, events = cached(model)
    assert ask(b)[0] == "miss"
    status, answer = ask(b)
    assert (status, answer.text, model.started) == ("hit", "four", 1)
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.cached_tokens) == (7, 7)
    assert [k for k, _ in events if k != "lookup"] == ["miss", "hit"]


def test_a_hit_streams_in_word_sized_pieces() -> None:
    b, _ = cached(ScriptedBackend("m", Reply("one two three four")))
    ask(b)
    req = ChatRequest(model="m", messages=[Message("user", "what is 2+2?")], sampling=Sampling(temperature=0.0),
                      stream=True)

    async def pieces() -> list[str]:
        return [c.text for c in [c async for c in b.stream(req)] if type(c).__name__ == "TextDelta"]  # type: ignore[union-attr]

    assert asyncio.run(pieces()) == ["one ", "two ", "three ", "four"]


def test_tool_calls_are_replayed_whole() -> None:
    b, _ = cached(ScriptedBackend("m", Reply(tool_calls=[("get_weather", {"city": "Paris"})])))
    ask(b)
    status, answer = ask(b)
    assert status == "hit" and answer.reason == "tool_calls"
    assert [(c.name, c.arguments) for c in answer.tool_calls] == [("get_weather", '{"city":"Paris"}')]


def test_random_sampling_is_not_cached_by_default() -> None:
    model = ScriptedBackend("m")
    b, _ = cached(model)
    req = ChatRequest(model="m", messages=[Message("user", "hi")], sampling=Sampling(temperature=0.9))
    for _ in range(2):
        asyncio.run(collect(b.stream(req)))
    assert model.started == 2


def test_no_store_and_no_cache() -> None:
    model = ScriptedBackend("m")
    b, _ = cached(model)
    ask(b, no_store=True)
    assert ask(b)[0] == "miss"  # the first answer was not stored
    assert ask(b, no_cache=True)[0] == "miss"  # stored by the previous call, but not read
    assert model.started == 3


def test_failed_or_cut_streams_are_never_stored() -> None:
    model = ScriptedBackend("m", Reply("half an", error_after=1, error=UpstreamError("cut")), Reply("whole"))
    b, _ = cached(model)
    with contextlib.suppress(UpstreamError):
        ask(b)
    assert ask(b)[1].text == "whole"
    assert ask(b)[0] == "hit"


def test_namespaces_and_models_do_not_share_entries() -> None:
    b, _ = cached(ScriptedBackend("m"))
    ask(b, namespace="tenant-a")
    assert ask(b, namespace="tenant-b")[0] == "miss"
    assert ask(b, namespace="tenant-a")[0] == "hit"
