"""Circuit breakers shared by two replicas (two composition roots in one process) through a real Redis: one
replica's failures open the other's circuit within a second, its successful probe closes it again, and a
Redis that is down leaves each replica's breakers working alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core.collect import collect
from hearth.core.errors import UpstreamError
from hearth.core.pipeline import Gateway
from hearth.core.types import ChatRequest, Message
from hearth.routing.breaker import State
from hearth.testing import Reply, ScriptedBackend
from tests.conftest import free_port, redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


def replica(url: str, cloud: ScriptedBackend) -> Assembly:
    cfg = Config.model_validate({
        "cache": {"enabled": False}, "replicas": {"redis_url": url},
        "models": {"cloud": {"kind": "openai", "base_url": "http://x"}, "local": {"kind": "llamacpp"},
                   "auto": {"kind": "router", "default": "cloud", "fallbacks": {"cloud": ["local"]}, "retries": 0,
                            "health_interval": None, "breaker": {"failures": 2, "cooldown": 2.0}}},
    })
    return assemble(cfg, leaves={"cloud": cloud, "local": ScriptedBackend("local", local=True)})


async def ask(a: Assembly) -> str:
    s = await Gateway(a.registry, a.metrics).open("openai", ChatRequest("auto", [Message("user", "hi")]))
    try:
        await collect(s)
    finally:
        await s.aclose()
    return s.served_by


async def wait_for(cond: Any, timeout: float = 1.0) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "not within the time"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def test_one_replicas_failures_open_the_others_circuit(redis_url: str) -> None:
    async def go() -> None:
        down = UpstreamError("down", status=503)
        a = replica(redis_url, ScriptedBackend("cloud", down, down, Reply("back")))
        b = replica(redis_url, ScriptedBackend("cloud", Reply("fine")))
        await a.start()
        await b.start()
        try:
            await asyncio.sleep(0.2)  # both subscribed
            assert await ask(a) == "local" and await ask(a) == "local"  # two failures: a's circuit opens
            assert a.breakers["cloud"].state is State.OPEN
            took = await wait_for(lambda: b.breakers["cloud"].state is State.OPEN)
            assert took < 1.0
            assert await ask(b) == "local"  # b never tried the dead provider itself
            await asyncio.sleep(2.1)  # the cooldown passes; a's probe succeeds and closes both
            assert await ask(a) == "cloud"
            await wait_for(lambda: b.breakers["cloud"].state is State.CLOSED)
            assert await ask(b) == "cloud"
            assert b.shared is not None and b.shared.applied >= 2
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_a_replica_that_starts_later_learns_the_open_circuit(redis_url: str) -> None:
    async def go() -> None:
        down = UpstreamError("down", status=503)
        a = replica(redis_url, ScriptedBackend("cloud", down))
        await a.start()
        try:
            await ask(a)
            await ask(a)
            late = replica(redis_url, ScriptedBackend("cloud"))
            await late.start()
            await wait_for(lambda: late.breakers["cloud"].state is State.OPEN)
            await late.close()
        finally:
            await a.close()

    asyncio.run(go())


def test_redis_down_leaves_local_breakers_working() -> None:
    async def go() -> None:
        down = UpstreamError("down", status=503)
        a = replica(f"redis://127.0.0.1:{free_port()}/0", ScriptedBackend("cloud", down))
        await a.start()
        try:
            assert await ask(a) == "local" and await ask(a) == "local"
            assert a.breakers["cloud"].state is State.OPEN
        finally:
            await a.close()

    asyncio.run(go())
