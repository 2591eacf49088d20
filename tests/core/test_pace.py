"""Pace values and where speakable segments end, in Chinese and English."""

from __future__ import annotations

import pytest

from hearth.core.errors import BadRequest
from hearth.core.pace import READING, SPEECH, parse_flag, parse_pace


def test_pace_values() -> None:
    assert parse_pace("speech") is SPEECH and parse_pace("reading") is READING
    assert parse_pace(None) is None and parse_pace("none") is None
    p = parse_pace("12")
    assert p is not None and p.cjk_per_second == p.other_per_second == 12.0
    assert parse_pace(7.5) is not None


@pytest.mark.parametrize("bad", ["fast", -1, 0, 0.1, True, [], "1e9"])
def test_bad_pace_names_the_field(bad: object) -> None:
    with pytest.raises(BadRequest) as e:
        parse_pace(bad)
    assert e.value.param == "hearth.pace" and "hearth.pace" in e.value.message


def test_flags() -> None:
    assert parse_flag(True, "f") and parse_flag("1", "f") and parse_flag("on", "f")
    assert not parse_flag("false", "f")
    with pytest.raises(BadRequest, match=r"hearth\.segments"):
        parse_flag("maybe", "hearth.segments")


def test_speech_seconds_count_scripts_apart() -> None:
    assert SPEECH.seconds("你好世界") == pytest.approx(4 / 4.5)
    assert SPEECH.seconds("Hello world!!") == pytest.approx(13 / 14)
