"""Segments as text streams in token by token, and the listener's playback clock."""

from __future__ import annotations

from hearth.core.pace import SPEECH
from hearth.speech.segments import Playback, Segmenter


def cut(pieces: list[str]) -> list[str]:
    s = Segmenter()
    out = [seg for p in pieces for seg in s.feed(p)]
    rest = s.flush()
    return [*out, rest] if rest else out


def test_chinese_answer_token_by_token() -> None:
    text = "好的，我来帮你查一下。今天北京晴，气温二十度。要带伞吗？不用。"
    segs = cut(list(text))
    assert segs == ["好的，", "我来帮你查一下。", "今天北京晴，气温二十度。", "要带伞吗？", "不用。"]
    assert "".join(segs) == text


def test_english_first_segment_at_a_comma_then_sentences() -> None:
    text = "Sure, the capital of France is Paris. It has 2.1 million people. Anything else"
    segs = cut([text[i : i + 3] for i in range(0, len(text), 3)])
    assert segs == ["Sure,", " the capital of France is Paris.", " It has 2.1 million people.", " Anything else"]


def test_blank_pieces_join_the_next_segment() -> None:
    assert cut(["Hello there, friend.", "\n", "\n", "Next line."]) == ["Hello there,", " friend.", "\n\nNext line."]


def test_playback_counts_silence() -> None:
    p = Playback(SPEECH)
    assert p.arrive("你好你好你好你好你", 10.0) == 0.0  # 2 s of speech: playing until 12.0
    assert p.arrive("好", 11.0) == 0.0  # in time: the buffer now runs to ~12.22
    lag = p.arrive("好", 13.0)
    assert 0.7 < lag < 0.8
