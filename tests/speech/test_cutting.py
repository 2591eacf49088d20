"""Where a voice server's cutter ends speakable segments: the first at a comma-class mark, then sentences."""

from __future__ import annotations

import pytest

from hearth.speech.cutting import first_segment_end, sentence_end


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
])
def test_first_segment(text: str, end: int) -> None:
    assert first_segment_end(text) == end


@pytest.mark.parametrize(("text", "end"), [
    ("第一句。第二句", 4),
    ("First one. Second", 10),
    ("Version 3.14 is out", 0),
    ("Really?! Yes", 8),
    ("line one\nline two", 9),
    ("no end yet", 0),
])
def test_sentence_end(text: str, end: int) -> None:
    assert sentence_end(text) == end


def test_a_long_run_without_marks_is_cut() -> None:
    words = "word " * 40
    end = sentence_end(words)
    assert 60 < end <= 120 and words[end - 1] == " "
    assert first_segment_end("字" * 130) == 120
