"""The drift watch on a controlled clock: nothing reported below the sample floor, then each signal's distance."""

from __future__ import annotations

import pytest

from hearth.convo.drift import DriftWatch
from hearth.testing import ManualClock


def test_windows_and_signals() -> None:
    clock = ManualClock(100_000.0)
    w = DriftWatch(window=600, baseline=3600, min_samples=10, clock=clock)
    for i in range(40):  # an hour of good answers, mostly local
        w.add("auto", 0.9, route="local" if i % 4 else "cloud", intent="question")
        clock.t += 60
    assert w.drift("auto", "quality") == 0.0  # the recent window is empty
    for _ in range(20):  # then ten minutes of refusals from the cloud model
        w.add("auto", 0.2, refusal=True, route="cloud", intent="task")
        clock.t += 25
    assert w.samples("auto") >= 10
    assert w.drift("auto", "quality") == pytest.approx(0.7, abs=0.05)
    assert w.drift("auto", "refusal_rate") == pytest.approx(1.0, abs=0.05)
    assert w.drift("auto", "route_mix") > 0.6 and w.drift("auto", "intent_mix") > 0.9
    assert set(w.report()["auto"]) >= {"quality", "refusal_rate", "route_mix", "intent_mix", "samples"}


def test_memory_is_bounded_by_the_windows() -> None:
    clock = ManualClock(100_000.0)
    w = DriftWatch(window=600, baseline=600, min_samples=1, clock=clock)
    for _ in range(1000):
        w.add("m", 0.5)
        clock.t += 30
    assert len(w._models["m"]) <= 1200 / 60 + 2
