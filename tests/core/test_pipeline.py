"""The pipeline's Stream with the packaged scripted backend: early errors, metrics, closing."""

from __future__ import annotations

import asyncio

import pytest

from hearth.core.errors import ModelNotFound, UpstreamError
from hearth.core.pipeline import Gateway
from hearth.core.registry import ModelRegistry
from hearth.core.types import ChatRequest, Chunk, Finish, Message, TextDelta, Usage
from hearth.testing import ScriptedBackend


def gateway(*backends: ScriptedBackend) -> Gateway:
    return Gateway(ModelRegistry({b.name: b for b in backends}, aliases={"alias": backends[0].name}))


def req(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", "hi")])


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_chunks_flow_and_metrics_are_recorded() -> None:
    b = ScriptedBackend("m", [TextDelta("a"), TextDelta("b"), Usage(3, 2), Finish("stop")])
    gw = gateway(b)

    async def go() -> list[Chunk]:
        s = await gw.open("openai", req("alias"))
        try:
            return [c async for c in s]
        finally:
            await s.aclose()

    chunks = run(go())
    assert [type(c).__name__ for c in chunks] == ["TextDelta", "TextDelta", "Usage", "Finish"]  # type: ignore[attr-defined]
    text = gw.metrics.registry.render()
    assert 'hearth_requests_total{api="openai",model="m",backend="m",status="ok"} 1' in text
    assert 'hearth_prompt_tokens_total{model="m",backend="m"} 3' in text
    assert 'hearth_time_to_first_token_seconds_count{model="m",backend="m"} 1' in text
    assert b.closed == 1


def test_failure_before_first_chunk_raises_from_open() -> None:
    b = ScriptedBackend("m", UpstreamError("provider down"))
    gw = gateway(b)
    with pytest.raises(UpstreamError):
        run(gw.open("openai", req("m")))
    assert 'code="upstream_error"' in gw.metrics.registry.render()
    assert b.closed == 1


def test_failure_mid_stream_raises_from_iteration() -> None:
    gw = gateway(ScriptedBackend("m", [TextDelta("a"), UpstreamError("cut")]))

    async def go() -> list[Chunk]:
        s = await gw.open("ollama", req("m"))
        got = []
        try:
            async for c in s:
                got.append(c)
        finally:
            await s.aclose()
        return got

    with pytest.raises(UpstreamError):
        run(go())
    assert 'status="upstream_error"' in gw.metrics.registry.render()


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound, match="available: alias, m"):
        run(gateway(ScriptedBackend("m", [])).open("openai", req("x")))


def test_closing_early_closes_the_backend() -> None:
    b = ScriptedBackend("m", [TextDelta(str(i)) for i in range(100)])
    gw = gateway(b)

    async def go() -> None:
        s = await gw.open("openai", req("m"))
        await s.__anext__()
        await s.aclose()

    run(go())
    assert b.closed == 1
