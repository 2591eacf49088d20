"""The work pools: request work runs off the event loop, and bulk work never delays a short request."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hearth.core.work import BULK, IsolatedFailure, close, isolated, offload


def test_work_runs_off_the_loop_and_bulk_work_queues_apart() -> None:
    async def main() -> tuple[str, float]:
        loop_thread = threading.get_ident()
        where = await offload(lambda: threading.current_thread().name)
        assert threading.get_ident() == loop_thread
        # Three slow bulk jobs hold the bulk worker; a short job still runs at once in the ordinary pool.
        slow = [asyncio.ensure_future(offload(lambda: time.sleep(0.3), size=BULK + 1)) for _ in range(3)]
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        await offload(lambda: None)
        quick = time.perf_counter() - t0
        await asyncio.gather(*slow)
        return where, quick

    where, quick = asyncio.run(main())
    assert where.startswith("hearth-work") and quick < 0.1


def _spin() -> None:
    while True:
        pass


def _allocate(n: int) -> int:
    return len(bytearray(n))


def test_isolated_work_is_killed_at_its_deadline_and_capped_in_memory() -> None:
    async def main() -> None:
        assert await isolated(_allocate, 100, timeout=30) == 100
        t0 = time.perf_counter()
        with pytest.raises(IsolatedFailure, match="longer than 1 s"):
            await isolated(_spin, timeout=1.0)
        assert time.perf_counter() - t0 < 3
        with pytest.raises(IsolatedFailure, match="MB"):
            await isolated(_allocate, 4 << 30, timeout=30)  # over the 1 GB cap: refused, not swapped in
        assert await isolated(_allocate, 10, timeout=30) == 10  # a fresh worker after a kill
        close()

    asyncio.run(main())
