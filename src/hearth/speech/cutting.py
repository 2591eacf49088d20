"""Where speakable segments end, as a voice server cuts streamed text for its TTS.

A voice server cuts the text at the first comma-class mark, speaks that segment, then cuts at sentence ends;
a turn that has not yet produced its first segment is the most urgent thing on the machine. The speech stage
(segments, underrun metrics) and the engine's scheduler (how much speech a paced stream has buffered) read the
same definitions from here, so they agree on what "the first segment" is.
"""

from __future__ import annotations

# The marks a voice server cuts at (xiaozhi-esp32-server's list), and the ones that end a sentence.
FIRST_MARKS = frozenset("，、,。？?！!；;：")
SENTENCE_MARKS = frozenset("。？?！!；;：\n")
MIN_FIRST_CHARS = 2  # "好，" alone is not worth a TTS round trip; "好的，" and "Sure," are
MAX_SEGMENT_CHARS = 120  # a sentence without marks is cut at a space (or anywhere, for Chinese) past this


def first_segment_end(text: str) -> int:
    """The end (exclusive) of the first speakable segment in `text`, or 0 when it has not ended yet: at the
    first comma-class mark after `MIN_FIRST_CHARS` visible characters, or at `MAX_SEGMENT_CHARS`."""
    visible = 0
    for i, ch in enumerate(text):
        if ch in FIRST_MARKS and visible >= MIN_FIRST_CHARS and not _inside_number(text, i):
            return i + 1
        if not ch.isspace() and ch not in FIRST_MARKS:
            visible += 1
    return _forced_cut(text)


def sentence_end(text: str) -> int:
    """The end (exclusive) of the first whole sentence in `text`, or 0: at 。？！；：, a newline, or an English
    `.` `?` `!` `;` followed by a space; or at `MAX_SEGMENT_CHARS`."""
    for i, ch in enumerate(text):
        if ch in SENTENCE_MARKS and not _inside_number(text, i):
            if ch in "?!;" and i + 1 < len(text) and not text[i + 1].isspace():
                continue  # "?!" or a URL: wait for the end of the run
            return i + 1
        if ch == "." and i + 1 < len(text) and text[i + 1].isspace() and not _inside_number(text, i):
            return i + 1
    return _forced_cut(text)


class Segmenter:
    """Text cut into speakable segments as it streams: the first at `first_segment_end`, later ones at
    `sentence_end`; blank pieces join the next segment. Concatenated, the segments are exactly the input.
    The speech stage cuts the client's chunks with it, and the engine counts a paced stream's buffered speech
    with it, so both agree on what the listener can already hear."""

    __slots__ = ("_buf", "_carry", "first")

    def __init__(self) -> None:
        self._buf = ""
        self._carry = ""  # a blank piece (a lone newline) waiting to join the next segment
        self.first = True

    def feed(self, text: str) -> list[str]:
        """The segments completed by `text` (often none)."""
        self._buf += text
        out: list[str] = []
        while self._buf:
            end = first_segment_end(self._buf) if self.first else sentence_end(self._buf)
            if not end:
                break
            seg, self._buf = self._buf[:end], self._buf[end:]
            if not seg.strip():
                self._carry += seg
                continue
            out.append(self._carry + seg)
            self._carry = ""
            self.first = False
        return out

    def flush(self) -> str:
        """Whatever is left when the stream ends (a last sentence without a mark)."""
        rest, self._buf, self._carry = self._carry + self._buf, "", ""
        return rest


def _inside_number(text: str, i: int) -> bool:
    """`3.14`, `1,000`: a mark between digits does not end anything; after a digit at the very end of what
    has arrived, it may still turn out to be inside a number, so it waits for the next piece."""
    if i == 0 or not text[i - 1].isdigit() or text[i] not in ",.，":
        return False
    return i == len(text) - 1 or text[i + 1].isdigit()


def _forced_cut(text: str) -> int:
    if len(text) < MAX_SEGMENT_CHARS:
        return 0
    space = text.rfind(" ", 0, MAX_SEGMENT_CHARS)
    return space + 1 if space > MAX_SEGMENT_CHARS // 2 else MAX_SEGMENT_CHARS
