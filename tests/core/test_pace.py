"""Pace values and where speakable segments end, in Chinese and English."""

from __future__ import annotations

import pytest

from hearth.core.errors import BadRequest
from hearth.core.pace import READING, SPEECH, first_segment_end, parse_flag, parse_pace, sentence_end


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


@pytest.mark.parametrize(("text", "end"), [
    ("好的，我来帮你。", 3),
    ("好，今天天气不错。", 9),  # "好，" is too short to speak alone: the first segment runs to the next mark
    ("今天天气很好，适合出门", 7),
    ("Sure, I can help.", 5),
    ("Hi, there", 3),
    ("I, for one", 0),  # too short, and no later mark yet
    ("It costs 1,000 dollars, I think", 23),  # a comma between digits is not a mark
    ("Pi is 3", 0),
    ("The value is 3,", 0),  # a comma right after a digit waits: it may be 3,000
])  # fmt: skip
def test_first_segment(text: str, end: int) -> None:
    assert first_segment_end(text) == end


@pytest.mark.parametrize(("text", "end"), [
    ("第一句。第二句", 4),
    ("First one. Second", 10),
    ("Version 3.14 is out", 0),
    ("Really?! Yes", 8),
    ("line one\nline two", 9),
    ("no end yet", 0),
])  # fmt: skip
def test_sentence_end(text: str, end: int) -> None:
    assert sentence_end(text) == end


def test_a_long_run_without_marks_is_cut() -> None:
    words = "word " * 40
    end = sentence_end(words)
    assert 60 < end <= 120 and words[end - 1] == " "
    assert first_segment_end("字" * 130) == 120
