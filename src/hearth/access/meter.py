"""Limits and budgets: one admission step before a request, one settlement after it.

`admit` checks every limit of a key and, only if all pass, records the request, its token estimate,
its parallel slot and its worst-case cost in the same step. Nothing can slip between a check and its
write: the in-memory meter runs on the event loop without awaiting in between, and the Redis meter
(redis.py) runs the same algorithm as one Lua script, so it holds for any number of replicas.
`settle` replaces the estimate and the reservation with what the request really used.

Windows slide (the last 60 s, not the current minute), so a burst across a minute boundary cannot get
twice the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hearth.access.keys import ApiKey

log = logging.getLogger("hearth.access")

WINDOW = 60.0  # seconds: rpm and tpm are per sliding minute
LEASE = 120.0  # seconds a parallel slot or reservation outlives a replica that died holding it; renewed while running
RENEW_EVERY = 40.0

Refusal = Literal["requests", "tokens", "parallel", "budget"]


@dataclass(slots=True)
class Verdict:
    """The outcome of an admission, with what the rate-limit headers report."""

    refused: Refusal | None = None
    retry_after: float = 0.0
    requests_remaining: int | None = None
    requests_reset: float = 0.0  # seconds until the oldest request of the window leaves it
    tokens_remaining: int | None = None
    tokens_reset: float = 0.0
    at: float = 0.0  # when the request was admitted (the token window's slot its estimate went to)


@dataclass(slots=True)
class Charge:
    """What one request used, settled against its key."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


@dataclass(slots=True)
class ModelSpend:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, c: Charge) -> None:
        self.requests += 1
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        self.cost += c.cost


@dataclass(slots=True)
class Spend:
    """A key's spend in its current budget period."""

    period: int
    spent: float = 0.0
    reserved: float = 0.0
    models: dict[str, ModelSpend] = field(default_factory=dict)


class Meter(Protocol):
    async def admit(self, key: ApiKey, ticket: str, tokens: int, cost: float) -> Verdict: ...

    async def settle(self, key: ApiKey, ticket: str, tokens_estimated: int, charge: Charge | None,
                     admitted_at: float) -> float:
        """Replace the estimate (in the window slot of `admitted_at`, so that a correction never outlives what
        it corrects) and the reservation with `charge` (None: nothing was used); returns the key's spend this
        period."""
        ...

    async def renew(self, key: ApiKey, ticket: str) -> None:
        """Extend a running request's parallel slot and reservation by another lease."""
        ...

    async def spend(self, key: ApiKey) -> Spend: ...

    async def close(self) -> None: ...


# What the SQLite store offers the in-memory meter so that spend survives restarts.
SpendRows = dict[tuple[str, int], dict[str, ModelSpend]]


class SpendLedger(Protocol):
    def load_spend(self) -> SpendRows: ...

    def add_spend(self, rows: list[tuple[str, int, Charge]]) -> None: ...


@dataclass(slots=True)
class _Tokens:
    at: float
    n: int
    ticket: str


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[_Tokens] = field(default_factory=deque)
    by_ticket: dict[str, _Tokens] = field(default_factory=dict)  # the entries still in the window
    token_sum: int = 0
    inflight: dict[str, float] = field(default_factory=dict)  # ticket -> lease expiry
    reserved: dict[str, tuple[float, float]] = field(default_factory=dict)  # ticket -> (cost, expiry)

    def add_tokens(self, at: float, n: int, ticket: str) -> None:
        entry = _Tokens(at, n, ticket)
        self.tokens.append(entry)
        self.by_ticket[ticket] = entry
        self.token_sum += n

    def trim(self, now: float) -> None:
        edge = now - WINDOW
        while self.requests and self.requests[0] <= edge:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at <= edge:
            old = self.tokens.popleft()
            self.token_sum -= old.n
            if self.by_ticket.get(old.ticket) is old:
                del self.by_ticket[old.ticket]
        for t in [t for t, exp in self.inflight.items() if exp <= now]:
            del self.inflight[t]
        for t in [t for t, (_, exp) in self.reserved.items() if exp <= now]:
            del self.reserved[t]


class MemoryMeter:
    """Limits for one process. Spend is written through `ledger` (batched, off the event loop) and read back
    at start, so budgets survive restarts; rate windows start empty, as they would after a minute anyway."""

    def __init__(self, ledger: SpendLedger | None = None, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._spend: SpendRows = ledger.load_spend() if ledger else {}
        self._unsaved: list[tuple[str, int, Charge]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def admit(self, key: ApiKey, ticket: str, tokens: int, cost: float) -> Verdict:
        now = self._clock()
        w = self._windows.get(key.id)
        if w is None:
            w = self._windows[key.id] = _Window()
        w.trim(now)
        v = Verdict()
        if w.requests:
            v.requests_reset = w.requests[0] + WINDOW - now
        if w.tokens:
            v.tokens_reset = w.tokens[0].at + WINDOW - now
        if key.rpm is not None:
            v.requests_remaining = max(0, key.rpm - len(w.requests))
        if key.tpm is not None:
            v.tokens_remaining = max(0, key.tpm - w.token_sum)
        if key.rpm is not None and len(w.requests) >= key.rpm:
            return refuse(v, "requests", v.requests_reset)
        if key.tpm is not None and w.token_sum + tokens > key.tpm:  # one request over the rate is refused too
            return refuse(v, "tokens", v.tokens_reset)
        if key.max_parallel is not None and len(w.inflight) >= key.max_parallel:
            return refuse(v, "parallel", 1.0)
        if key.budget is not None and cost > 0:
            reserved = sum(c for c, _ in w.reserved.values())
            if self._spent(key, now) + reserved + cost > key.budget:
                return refuse(v, "budget", 0.0)
        w.requests.append(now)
        w.add_tokens(now, tokens, ticket)
        w.inflight[ticket] = now + LEASE
        if cost > 0:
            w.reserved[ticket] = (cost, now + LEASE)
        v.requests_reset = w.requests[0] + WINDOW - now
        v.tokens_reset = w.tokens[0].at + WINDOW - now
        v.at = now
        if key.rpm is not None:
            v.requests_remaining = key.rpm - len(w.requests)
        if key.tpm is not None:
            v.tokens_remaining = max(0, key.tpm - w.token_sum)
        return v

    async def settle(self, key: ApiKey, ticket: str, tokens_estimated: int, charge: Charge | None,
                     admitted_at: float) -> float:
        now = self._clock()
        w = self._windows.get(key.id)
        if w is not None:
            w.trim(now)  # an estimate that has left the window must not take the correction with it
            w.inflight.pop(ticket, None)
            w.reserved.pop(ticket, None)
            used = charge.prompt_tokens + charge.completion_tokens if charge else 0
            entry = w.by_ticket.pop(ticket, None)
            if entry is not None:  # still in the window: the estimate becomes the real figure where it stands
                w.token_sum += used - entry.n
                entry.n = used
            elif used > tokens_estimated:  # the estimate has left the window; what it missed is counted now
                w.add_tokens(now, used - tokens_estimated, ticket)
                del w.by_ticket[ticket]
        period = key.period_index(now)
        models = self._spend.setdefault((key.id, period), {})
        if charge is None:
            return sum(m.cost for m in models.values())
        models.setdefault(charge.model, ModelSpend()).add(charge)
        if self._ledger is not None:
            self._unsaved.append((key.id, period, charge))
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        return sum(m.cost for m in models.values())

    async def renew(self, key: ApiKey, ticket: str) -> None:
        w = self._windows.get(key.id)
        if w is None:
            return
        until = self._clock() + LEASE
        if ticket in w.inflight:
            w.inflight[ticket] = until
        if ticket in w.reserved:
            w.reserved[ticket] = (w.reserved[ticket][0], until)

    async def spend(self, key: ApiKey) -> Spend:
        now = self._clock()
        period = key.period_index(now)
        models = self._spend.get((key.id, period), {})
        w = self._windows.get(key.id)
        reserved = sum(c for c, exp in w.reserved.values() if exp > now) if w else 0.0
        return Spend(period, sum(m.cost for m in models.values()), reserved, dict(models))

    def _spent(self, key: ApiKey, now: float) -> float:
        models = self._spend.get((key.id, key.period_index(now)))
        return sum(m.cost for m in models.values()) if models else 0.0

    async def _flush_soon(self) -> None:
        await asyncio.sleep(1.0)  # one write per second at most, whatever the request rate
        await self._flush()

    async def _flush(self) -> None:
        rows, self._unsaved = self._unsaved, []
        if rows and self._ledger is not None:
            try:
                await asyncio.to_thread(self._ledger.add_spend, rows)
            except Exception as e:  # the in-memory figures stay right; say loudly that the file lags
                log.error("could not save spend of %d requests: %r", len(rows), e)
                self._unsaved = rows + self._unsaved

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self._flush()


def refuse(v: Verdict, why: Refusal, retry_after: float) -> Verdict:
    v.refused, v.retry_after = why, max(retry_after, 0.0)
    if why == "requests":
        v.requests_remaining = 0
    if why == "tokens":
        v.tokens_remaining = 0
    return v
