"""The work pools: request work runs off the event loop, and bulk work never delays a short request."""

from __future__ import annotations

import asyncio
import threading
import time

from hearth.core.work import BULK, offload


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
