"""A clock that moves only when told: for breakers, drift windows and anything else given a `clock=`."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
