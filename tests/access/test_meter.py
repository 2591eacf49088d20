"""Limits and budgets, the same cases against the in-process meter and against a real Redis."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.access import Access, PriceBook, Principal
from hearth.access.keys import ApiKey, KeySpec, mint
from hearth.access.meter import LEASE, Charge, MemoryMeter, Meter, Verdict
from hearth.access.redis_store import RedisAccess
from hearth.access.store import SqliteKeyStore
from hearth.config import load_config
from hearth.core.errors import KeyStoreUnavailable
from tests.conftest import free_port, redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


Case = Callable[[Meter], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Case], None]:
    """Runs a case on a fresh meter of the parameter's kind, in its own event loop."""

    def go(case: Case) -> None:
        async def main() -> None:
            m: Any
            if request.param == "memory":
                m = MemoryMeter(ledger=SqliteKeyStore(tmp_path / "keys.db"))
            else:
                m = RedisAccess(request.getfixturevalue("redis_url"))
            try:
                await case(m)
            finally:
                await m.close()

        asyncio.run(main())

    return go


def _key(**limits: Any) -> ApiKey:
    return mint(KeySpec(name="t", **limits))[0]


def test_requests_per_minute_hold_under_concurrency(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(rpm=10)
        verdicts = await asyncio.gather(*(meter.admit(key, f"t{i}", 0, 0.0) for i in range(40)))
        admitted = [v for v in verdicts if v.refused is None]
        refused = [v for v in verdicts if v.refused is not None]
        assert len(admitted) == 10 and {v.refused for v in refused} == {"requests"}
        assert sorted(v.requests_remaining for v in admitted) == list(range(10))
        assert all(0 < v.retry_after <= 60 and v.requests_remaining == 0 for v in refused)

    run(case)


def test_parallel_slots_free_when_requests_settle(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(max_parallel=2)
        assert [(await meter.admit(key, t, 0, 0.0)).refused for t in ("a", "b", "c")] == [None, None, "parallel"]
        await meter.settle(key, "a", 0, None, 0.0)
        assert (await meter.admit(key, "d", 0, 0.0)).refused is None

    run(case)


def test_budget_reserves_the_worst_case_and_settles_the_real_cost(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(budget=10.0)
        assert [(await meter.admit(key, t, 0, 3.0)).refused for t in ("a", "b", "c", "d")] == [
            None,
            None,
            None,
            "budget",
        ]
        assert await meter.settle(key, "a", 0, Charge("gpt", 100, 20, 1.0), 0.0) == pytest.approx(1.0)
        spend = await meter.spend(key)
        assert spend.spent == pytest.approx(1.0) and spend.reserved == pytest.approx(6.0)
        assert (await meter.admit(key, "e", 0, 3.0)).refused is None  # 1 spent + 9 reserved <= 10
        assert (await meter.admit(key, "f", 0, 0.5)).refused == "budget"
        assert (await meter.admit(key, "free", 0, 0.0)).refused is None  # a request that costs nothing passes
        for t in ("b", "c", "e"):
            await meter.settle(key, t, 0, Charge("gpt", 10, 10, 2.0), 0.0)
        spend = await meter.spend(key)
        assert spend.spent == pytest.approx(7.0) and spend.reserved == 0
        m = spend.models["gpt"]
        assert (m.requests, m.prompt_tokens, m.completion_tokens, m.cost) == (4, 130, 50, pytest.approx(7.0))

    run(case)


def test_concurrent_reservations_never_overrun_a_budget(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(budget=5.0)
        verdicts = await asyncio.gather(*(meter.admit(key, f"t{i}", 0, 1.0) for i in range(30)))
        assert sum(v.refused is None for v in verdicts) == 5

    run(case)


def test_tokens_per_minute_count_the_estimate_then_the_real_use(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(tpm=100)
        first = await meter.admit(key, "a", 60, 0.0)
        assert first.refused is None and first.tokens_remaining == 40
        refused = await meter.admit(key, "b", 60, 0.0)
        assert refused.refused == "tokens" and refused.tokens_remaining == 0 and refused.retry_after > 0
        await meter.settle(key, "a", 60, Charge("m", 5, 5), first.at)  # it used 10, not 60
        again = await meter.admit(key, "c", 60, 0.0)
        assert again.refused is None and again.tokens_remaining == 30

    run(case)


def test_a_release_charges_nothing(run: Callable[[Case], None]) -> None:
    async def case(meter: Meter) -> None:
        key = _key(budget=1.0, max_parallel=1)
        await meter.admit(key, "a", 10, 1.0)
        await meter.settle(key, "a", 10, None, 0.0)
        spend = await meter.spend(key)
        assert (spend.spent, spend.reserved, spend.models) == (0.0, 0.0, {})
        assert (await meter.admit(key, "b", 10, 1.0)).refused is None

    run(case)


def test_a_token_correction_never_outlives_the_estimate_it_corrects() -> None:
    async def case() -> None:
        now = [0.0]
        meter = MemoryMeter(clock=lambda: now[0])
        key = _key(tpm=10000)
        v = await meter.admit(key, "a", 9000, 0.0)
        now[0] = 30.0
        await meter.settle(key, "a", 9000, Charge("m", 100, 100), v.at)  # 200 used, counted at t=0
        assert (await meter.admit(key, "b", 9000, 0.0)).refused is None  # 200 + 9000
        now[0] = 61.0  # "a" has left the window with its correction: only "b"'s 9000 count
        assert (await meter.admit(key, "c", 1000, 0.0)).refused is None
        assert (await meter.admit(key, "d", 1, 0.0)).refused == "tokens"

    asyncio.run(case())


def test_a_request_the_estimate_missed_is_counted_when_it_settles() -> None:
    async def case() -> None:
        now = [0.0]
        meter = MemoryMeter(clock=lambda: now[0])
        key = _key(tpm=1000)
        v = await meter.admit(key, "a", 10, 0.0)  # no max_tokens: the estimate is the prompt only
        now[0] = 90.0
        await meter.settle(key, "a", 10, Charge("m", 10, 900), v.at)
        assert (await meter.admit(key, "b", 200, 0.0)).refused == "tokens"  # the 900 extra count now

    asyncio.run(case())


def test_running_requests_keep_their_slot_by_renewing_the_lease() -> None:
    async def case() -> None:
        now = [0.0]
        meter = MemoryMeter(clock=lambda: now[0])
        key = _key(max_parallel=1, budget=1.0)
        await meter.admit(key, "long", 0, 1.0)
        for _ in range(10):  # ten leases' time, renewed as Access does while the stream runs
            now[0] += LEASE / 2
            await meter.renew(key, "long")
        assert (await meter.admit(key, "next", 0, 0.1)).refused == "parallel"
        now[0] += LEASE + 1  # a replica that died stops renewing: the slot comes back
        assert (await meter.admit(key, "next", 0, 0.1)).refused is None

    asyncio.run(case())


def test_a_cancelled_admission_frees_what_it_may_hold() -> None:
    class LostAnswer(MemoryMeter):
        """Admits, then loses the answer (a client gone while Redis answered)."""

        async def admit(self, key: ApiKey, ticket: str, tokens: int, cost: float) -> Verdict:
            v = await super().admit(key, ticket, tokens, cost)
            await asyncio.sleep(3600)
            return v

    async def case() -> None:
        meter = LostAnswer()
        store = SqliteKeyStore(Path(tempfile.mkdtemp()) / "k.db")
        access = Access(store, meter, PriceBook(load_config(None, {})))
        key = _key(max_parallel=1)
        task = asyncio.create_task(access.admit_plain(Principal("t", key, key.scopes), ("m",)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        assert (await MemoryMeter.admit(meter, key, "next", 0, 0.0)).refused is None

    asyncio.run(case())


def test_budget_periods_start_afresh() -> None:
    async def case() -> None:
        now = [1000.0]
        meter = MemoryMeter(clock=lambda: now[0])
        key = mint(KeySpec(name="t", budget=2.0, budget_period="1h"), now=1000.0)[0]
        await meter.admit(key, "a", 0, 2.0)
        await meter.settle(key, "a", 0, Charge("m", 1, 1, 2.0), 0.0)
        assert (await meter.admit(key, "b", 0, 1.0)).refused == "budget"
        now[0] += 3600
        assert (await meter.admit(key, "c", 0, 1.0)).refused is None
        assert (await meter.spend(key)).period == 1

    asyncio.run(case())


def test_spend_survives_a_restart_with_the_sqlite_ledger(tmp_path: Path) -> None:
    async def case() -> None:
        store = SqliteKeyStore(tmp_path / "keys.db")
        meter = MemoryMeter(ledger=store)
        key = _key(budget=3.0)
        await meter.admit(key, "a", 0, 2.0)
        await meter.settle(key, "a", 0, Charge("m", 10, 10, 2.5), 0.0)
        await meter.close()
        again = MemoryMeter(ledger=SqliteKeyStore(tmp_path / "keys.db"))
        assert (await again.spend(key)).spent == pytest.approx(2.5)
        assert (await again.admit(key, "b", 0, 1.0)).refused == "budget"

    asyncio.run(case())


def test_a_redis_that_cannot_be_reached_refuses_rather_than_allows() -> None:
    async def case() -> None:
        dead = RedisAccess(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
        with pytest.raises(KeyStoreUnavailable, match="cannot be reached"):
            await dead.admit(_key(rpm=5), "a", 0, 0.0)
        with pytest.raises(KeyStoreUnavailable):
            await dead.find("0" * 64)
        await dead.close()

    asyncio.run(case())
