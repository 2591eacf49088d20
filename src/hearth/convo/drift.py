"""Drift watch: is a model answering differently from how it used to?

Per model, scored answers are folded into time buckets: count, quality sum, refusals, and the mix of
routes and intents. The recent window (`drift_window`) is compared with the baseline before it
(`drift_baseline`): for quality and refusal rate the absolute difference of the means, for the route
and intent mixes the total variation distance (half the sum of absolute share differences, 0 same .. 1
disjoint). A swapped model file, an upstream that quietly changed its model, a new client population or
a prompt that broke all move one of these. Memory is bounded: one bucket per minute over both windows.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

SIGNALS = ("quality", "refusal_rate", "route_mix", "intent_mix")


@dataclass(slots=True)
class _Bucket:
    start: float
    n: int = 0
    quality: float = 0.0
    refusals: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    intents: Counter[str] = field(default_factory=Counter)


def _merge(buckets: list[_Bucket]) -> _Bucket:
    out = _Bucket(0.0)
    for b in buckets:
        out.n += b.n
        out.quality += b.quality
        out.refusals += b.refusals
        out.routes.update(b.routes)
        out.intents.update(b.intents)
    return out


def _tv(a: Counter[str], b: Counter[str]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in a.keys() | b.keys())


class DriftWatch:
    def __init__(self, window: float = 600.0, baseline: float = 21600.0, min_samples: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.baseline = baseline
        self.min_samples = min_samples
        self.clock = clock
        self.step = min(60.0, window / 10)
        self._models: dict[str, deque[_Bucket]] = {}

    def add(self, model: str, quality: float, *, refusal: bool = False, route: str = "", intent: str = "") -> None:
        now = self.clock()
        buckets = self._models.setdefault(model, deque())
        if not buckets or now - buckets[-1].start >= self.step:
            buckets.append(_Bucket(now - now % self.step))
        b = buckets[-1]
        b.n += 1
        b.quality += quality
        b.refusals += refusal
        if route:
            b.routes[route] += 1
        if intent:
            b.intents[intent] += 1
        horizon = now - self.window - self.baseline - self.step
        while buckets and buckets[0].start < horizon:
            buckets.popleft()

    def models(self) -> list[str]:
        return list(self._models)

    def _windows(self, model: str) -> tuple[_Bucket, _Bucket]:
        cut = self.clock() - self.window
        buckets = list(self._models.get(model, ()))
        return _merge([b for b in buckets if b.start >= cut]), _merge([b for b in buckets if b.start < cut])

    def samples(self, model: str) -> int:
        return self._windows(model)[0].n

    def drift(self, model: str, signal: str) -> float:
        """0 until both windows hold `min_samples` answers."""
        recent, base = self._windows(model)
        if recent.n < self.min_samples or base.n < self.min_samples:
            return 0.0
        if signal == "quality":
            return abs(recent.quality / recent.n - base.quality / base.n)
        if signal == "refusal_rate":
            return abs(recent.refusals / recent.n - base.refusals / base.n)
        if signal == "route_mix":
            return _tv(recent.routes, base.routes)
        if signal == "intent_mix":
            return _tv(recent.intents, base.intents)
        raise ValueError(f"unknown drift signal {signal!r}")

    def report(self) -> dict[str, dict[str, float]]:
        return {m: {s: round(self.drift(m, s), 4) for s in SIGNALS} | {"samples": self.samples(m)}
                for m in self._models}
