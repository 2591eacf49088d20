"""The residency's decisions with stand-in models (each load and unload takes a moment, as real ones do):
keep-alive, the least recently used idle model giving way, waiting for room, and a load shared by the
requests that wait for it."""

from __future__ import annotations

import asyncio
import math

import pytest

from hearth.core.errors import HearthError, ModelNotFound, Overloaded
from hearth.lifecycle.residency import Residency
from hearth.testing import ManualClock


class Model:
    def __init__(self, name: str, size: int = 100, fail: bool = False) -> None:
        self.name = name
        self.size = size
        self.fail = fail
        self.loads = 0
        self.unloads = 0
        self.loaded = False

    def footprint(self) -> int:
        return self.size

    async def load(self) -> None:
        await asyncio.sleep(0.02)
        if self.fail:
            raise HearthError("cannot load")
        self.loads += 1
        self.loaded = True

    async def unload(self) -> None:
        await asyncio.sleep(0.01)
        self.unloads += 1
        self.loaded = False


def make(max_models: int = 3, max_bytes: int = 1000, clock: ManualClock | None = None, timeout: float = 0.3) -> Residency:
    return Residency(max_models=max_models, max_bytes=max_bytes, load_timeout=timeout,
                     clock=clock or ManualClock())


def test_loaded_on_first_request_and_shared_by_concurrent_ones() -> None:
    async def go() -> None:
        r, a = make(), Model("a")
        r.register(a, 300)
        seen = []

        async def use() -> None:
            async with r.hold(a):
                seen.append(a.loaded)

        await asyncio.gather(*(use() for _ in range(5)))
        assert a.loads == 1 and seen == [True] * 5
        assert [x.name for x in r.listing()] == ["a"]

    asyncio.run(go())


def test_keep_alive_zero_negative_and_default() -> None:
    async def go() -> None:
        clock = ManualClock()
        r, a = make(clock=clock), Model("a")
        r.register(a, 300)
        r.start()
        async with r.hold(a, 0.0):
            pass
        await asyncio.sleep(0.05)
        assert not a.loaded and a.unloads == 1  # 0: unloaded right after the answer
        async with r.hold(a, math.inf):
            pass
        assert r.listing()[0].expires_at is None  # forever
        async with r.hold(a):  # the default: 300 s from now
            pass
        clock.advance(299)
        r._wake.set()
        await asyncio.sleep(0.05)
        assert a.loaded
        clock.advance(2)
        r._wake.set()
        await asyncio.sleep(0.05)
        assert not a.loaded
        await r.close()

    asyncio.run(go())


def test_least_recently_used_idle_model_gives_way() -> None:
    async def go() -> None:
        clock = ManualClock()
        r = make(max_models=2, clock=clock)
        a, b, c = Model("a"), Model("b"), Model("c")
        for m in (a, b, c):
            r.register(m, math.inf)
        async with r.hold(a):
            pass
        clock.advance(1)
        async with r.hold(b):
            pass
        clock.advance(1)
        async with r.hold(a):  # a is now the more recent
            pass
        async with r.hold(c):
            pass
        assert a.loaded and c.loaded and not b.loaded

    asyncio.run(go())


def test_byte_budget_and_a_model_too_big() -> None:
    async def go() -> None:
        r = make(max_bytes=1000)
        a, b, huge = Model("a", 600), Model("b", 600), Model("huge", 2000)
        for m in (a, b, huge):
            r.register(m, math.inf)
        async with r.hold(a):
            pass
        async with r.hold(b):
            pass
        assert b.loaded and not a.loaded
        with pytest.raises(HearthError, match=r"more than local\.max_loaded_bytes") as e:
            async with r.hold(huge):
                pass
        assert e.value.status == 507

    asyncio.run(go())


def test_waits_for_a_busy_model_then_503() -> None:
    async def go() -> None:
        r = make(max_models=1, timeout=0.5)
        a, b = Model("a"), Model("b")
        r.register(a, math.inf)
        r.register(b, math.inf)
        release = asyncio.Event()

        async def long_answer() -> None:
            async with r.hold(a):
                await release.wait()

        task = asyncio.create_task(long_answer())
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as e:  # a answers the whole time: no room for b
            async with r.hold(b):
                pass
        assert e.value.status == 503 and e.value.retry_after
        waiter = asyncio.create_task(_use(r, b))
        await asyncio.sleep(0.1)
        release.set()  # a's answer ends: b waits, then loads in its place
        await asyncio.wait_for(waiter, 2)
        await task
        assert b.loaded and not a.loaded

    asyncio.run(go())


async def _use(r: Residency, m: Model) -> None:
    async with r.hold(m):
        pass


def test_failed_load_fails_every_waiter_and_can_be_retried() -> None:
    async def go() -> None:
        r, a = make(), Model("a", fail=True)
        r.register(a, math.inf)
        results = await asyncio.gather(*(_use(r, a) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(x, HearthError) for x in results)
        a.fail = False
        await _use(r, a)
        assert a.loaded

    asyncio.run(go())


def test_unload_request_waits_for_running_answers() -> None:
    async def go() -> None:
        r, a = make(), Model("a")
        r.register(a, math.inf)
        r.start()
        release = asyncio.Event()

        async def answer() -> None:
            async with r.hold(a):
                await release.wait()

        task = asyncio.create_task(answer())
        await asyncio.sleep(0.05)
        await r.unload("a")
        assert a.loaded  # not under a running answer
        release.set()
        await task
        await asyncio.sleep(0.05)
        assert not a.loaded
        await r.close()

    asyncio.run(go())


def test_a_removed_model_refuses_new_requests_and_unloads_after_its_answers() -> None:
    async def go() -> None:
        r = make(max_models=2)
        old, new = Model("a"), Model("a")
        r.register(old, math.inf)
        release = asyncio.Event()

        async def answer() -> None:
            async with r.hold(old):
                await release.wait()

        task = asyncio.create_task(answer())
        await asyncio.sleep(0.05)
        r.retire(old)
        r.register(new, math.inf)  # a new version under the same name, at once
        with pytest.raises(ModelNotFound):
            async with r.hold(old):
                pass
        forgetting = asyncio.create_task(r.forget(old))
        await asyncio.sleep(0.05)
        assert old.loaded and not forgetting.done()  # not under its running answer
        await _use(r, new)
        release.set()
        await task
        await forgetting
        assert not old.loaded and new.loaded

    asyncio.run(go())
