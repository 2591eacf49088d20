"""Per-backend circuit breakers: stop sending traffic to a backend that keeps failing.

Closed: everything passes; failures are counted (consecutive, and the error rate in a sliding
window). Open: nothing passes until `cooldown` has elapsed. Half-open: one probe request (or a
background health check) is let through; success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    name: str
    failures: int = 5  # consecutive failures that open it
    error_rate: float = 0.5  # or this share of failures in the window...
    min_requests: int = 10  # ...once the window holds at least this many outcomes
    window: float = 30.0
    cooldown: float = 10.0
    state: State = State.CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    probing: bool = False
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    clock: object = time.monotonic
    # Told when this breaker opens (with its cooldown) or closes again by its own outcomes, so that other
    # replicas can follow (routing/shared.py); not told of changes applied from elsewhere.
    on_change: Callable[[CircuitBreaker, State], None] | None = None

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator,no-any-return]

    def allow(self) -> bool:
        """May a request go to this backend now? (A half-open breaker admits one probe at a time.)"""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN:
            if self._now() - self.opened_at < self.cooldown:
                return False
            self.state = State.HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def available(self) -> bool:
        """Like allow() but without taking the probe: for choosing among targets."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN:
            return self._now() - self.opened_at >= self.cooldown
        return not self.probing

    def record(self, ok: bool) -> None:
        now = self._now()
        self.outcomes.append((now, ok))
        while self.outcomes and now - self.outcomes[0][0] > self.window:
            self.outcomes.popleft()
        if ok:
            was = self.state
            self.consecutive = 0
            self.state = State.CLOSED
            self.probing = False
            if was is not State.CLOSED and self.on_change is not None:
                self.on_change(self, State.CLOSED)
            return
        self.consecutive += 1
        if self.state is State.HALF_OPEN:
            self._open(now)
            return
        fails = sum(1 for _, good in self.outcomes if not good)
        rate_trip = len(self.outcomes) >= self.min_requests and fails / len(self.outcomes) >= self.error_rate
        if self.consecutive >= self.failures or rate_trip:
            self._open(now)

    def _open(self, now: float) -> None:
        was = self.state
        self.state = State.OPEN
        self.opened_at = now
        self.probing = False
        if was is not State.OPEN and self.on_change is not None:  # late failures of an open circuit: no news
            self.on_change(self, State.OPEN)

    def apply_open(self, remaining: float) -> None:
        """Another replica saw this backend fail: open here too, for what is left of its cooldown."""
        if remaining <= 0:
            return
        self.state = State.OPEN
        self.opened_at = self._now() - max(0.0, self.cooldown - remaining)
        self.probing = False

    def apply_closed(self) -> None:
        """Another replica's probe succeeded: the backend is back."""
        self.state = State.CLOSED
        self.consecutive = 0
        self.probing = False
        self.outcomes.clear()
