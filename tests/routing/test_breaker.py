"""Circuit breaker states with a controllable clock."""

from hearth.routing.breaker import CircuitBreaker, State
from hearth.testing import ManualClock


def test_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = ManualClock(0.0)
    b = CircuitBreaker("x", failures=3, cooldown=10, clock=clock)
    for _ in range(2):
        b.record(False)
    assert b.state is State.CLOSED and b.allow()
    b.record(False)
    assert b.state is State.OPEN and not b.allow() and not b.available()
    clock.t = 10.5
    assert b.available()
    assert b.allow() and b.state is State.HALF_OPEN  # the probe
    assert not b.allow()  # only one probe at a time
    b.record(True)
    assert b.state is State.CLOSED and b.allow()


def test_failed_probe_reopens() -> None:
    clock = ManualClock(0.0)
    b = CircuitBreaker("x", failures=1, cooldown=5, clock=clock)
    b.record(False)
    clock.t = 6
    assert b.allow()
    b.record(False)
    assert b.state is State.OPEN and not b.allow()


def test_error_rate_in_window() -> None:
    clock = ManualClock(0.0)
    b = CircuitBreaker("x", failures=100, error_rate=0.5, min_requests=4, window=30, clock=clock)
    for ok in (True, False, True, False):
        b.record(ok)
    assert b.state is State.OPEN


def test_old_outcomes_leave_the_window() -> None:
    clock = ManualClock(0.0)
    b = CircuitBreaker("x", failures=100, error_rate=0.5, min_requests=4, window=10, clock=clock)
    b.record(False)
    b.record(False)
    clock.t = 20
    for _ in range(3):
        b.record(True)
    b.record(False)
    assert b.state is State.CLOSED
