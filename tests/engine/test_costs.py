"""The engine's own step costs (issue 24, item 5's measuring half): moving averages of what this machine's steps
take, and the paced voice streams that buys, never claimed past the widest step measured."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from hearth.engine.costs import HEADROOM, SPEECH_TOKENS_PER_SECOND, StepCosts
from hearth.lifecycle.cli import _voice
from tests.conftest import Server

BUDGET = HEADROOM / SPEECH_TOKENS_PER_SECOND  # the longest decode step a width may take to count as held


def test_nothing_measured_claims_nothing() -> None:
    c = StepCosts(8)
    assert c.devices() == 0 and c.step_seconds(1) is None and c.widest_measured() == 0
    c.prefilled(8, 0.01)  # a handful of prompt tokens says little about prefill speed
    assert c.prefill_tps == 0.0


def test_devices_follow_the_measured_step_times() -> None:
    c = StepCosts(8)
    c.decoded(1, 0.04)
    assert c.devices() == 1, "never more than the widest step measured"
    c.decoded(4, 0.10)
    assert c.step_seconds(2) == pytest.approx(0.06) and c.devices() == 4
    c.decoded(8, BUDGET * 1.5)  # a step of 8 too slow for 8 listeners: the interpolation says where it stops
    assert 4 <= c.devices() < 8
    assert c.step_seconds(6) == pytest.approx(0.10 + (BUDGET * 1.5 - 0.10) / 2)


def test_the_figures_move_with_the_machine() -> None:
    fast, slow = StepCosts(4), StepCosts(4)
    for width, seconds in ((1, 0.02), (2, 0.03), (4, 0.05)):
        fast.decoded(width, seconds)
        slow.decoded(width, seconds * 4)  # the same engine on a CPU four times slower
    assert fast.devices() == 4 and slow.devices() < 4
    for _ in range(60):  # the machine gets busy: the averages follow within tens of steps
        fast.decoded(4, BUDGET * 2)
    assert fast.devices() < 4
    fast.prefilled(200, 1.0)
    fast.prefilled(200, 0.5)
    assert 200 < fast.prefill_tps < 400


def test_hearth_ps_says_a_lower_bound_until_wider_steps_ran() -> None:
    assert _voice({"name": "remote"}) == "-"
    assert _voice({"voice_devices": 2, "voice_devices_measured_width": 2}) == ">=2"
    assert _voice({"voice_devices": 3, "voice_devices_measured_width": 8}) == "3"


def _chat(url: str, prompt: str) -> None:
    body = {"model": "smol", "temperature": 0, "max_tokens": 40, "messages": [{"role": "user", "content": prompt}]}
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.model
def test_a_running_engine_reports_its_own_figures(gateway: Server) -> None:
    _chat(gateway.url, "Count from 1 to 30.")  # alone: steps of one stream (two together may finish together)
    threads = [threading.Thread(target=_chat, args=(gateway.url, f"Count from {i} to {i + 30}.")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    smol = _get(gateway.url + "/admin/stats")["engine"]["smol"]
    assert smol["decode_step_ms"] > 0 and smol["voice_devices_measured_width"] >= 1
    assert smol["voice_devices"] >= 1, "a 135M model on any CPU keeps one listener fed"
    ps = next(m for m in _get(gateway.url + "/api/ps")["models"] if m["name"] == "smol")
    assert ps["voice_devices"] == smol["voice_devices"] and ps["decode_step_ms"] > 0


def test_a_step_alone_pays_only_where_it_is_at_most_half_a_full_one() -> None:
    c = StepCosts(8)
    assert c.alone_pays(4), "until both widths ran, the first assumption holds"
    c.decoded(1, 0.036)
    c.decoded(4, 0.058)  # the 2-core Xeon VM: one costs 0.62 of four
    assert not c.alone_pays(4)
    other = StepCosts(8)
    other.decoded(1, 0.017)
    other.decoded(4, 0.051)  # the machine the scheduler was written on: a third
    assert other.alone_pays(4)
