"""How fast a stream's consumer uses its text, and where speakable segments end.

A voice device does not read tokens: its voice server cuts the text at the first comma-class mark,
speaks that segment, and then needs the rest only as fast as speech goes (about 4.5 Chinese characters,
or 14 characters of English, a second). A stream that knows its pace can be scheduled by how much
speech it has buffered ahead of its listener, and a turn that has not yet produced its first segment
is the most urgent thing on the machine. The engine (scheduling) and the speech stage (segments,
underrun metrics) read the same definitions from here, so they agree on what "the first segment" is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.core.errors import BadRequest

# The marks a voice server cuts at (xiaozhi-esp32-server's list), and the ones that end a sentence.
FIRST_MARKS = frozenset("，、,。？?！!；;：")
SENTENCE_MARKS = frozenset("。？?！!；;：\n")
MIN_FIRST_CHARS = 2  # "好，" alone is not worth a TTS round trip; "好的，" and "Sure," are
MAX_SEGMENT_CHARS = 120  # a sentence without marks is cut at a space (or anywhere, for Chinese) past this

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Pace:
    """Characters per second the consumer takes: one rate for CJK characters, one for everything else."""

    name: str
    cjk_per_second: float
    other_per_second: float

    def seconds(self, text: str) -> float:
        """How long the consumer takes over `text` (speech: roughly how long it is spoken)."""
        cjk = len(_CJK.findall(text)) if text else 0
        other = len(text) - cjk
        return cjk / self.cjk_per_second + other / self.other_per_second


SPEECH = Pace("speech", 4.5, 14.0)  # TTS voices at their default rate
READING = Pace("reading", 9.0, 25.0)  # a fast reader of a chat window
PACES = {"speech": SPEECH, "reading": READING}


def parse_pace(value: object, param: str = "hearth.pace") -> Pace | None:
    """`speech`, `reading`, a number of characters per second, or `none` / null (no pacing)."""
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        if value in PACES:
            return PACES[value]
        try:
            value = float(value)
        except ValueError:
            raise BadRequest(f"{param}: expected speech, reading, none or characters per second, got {value!r}",
                             param=param) from None  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value <= 10_000:
        raise BadRequest(f"{param}: expected speech, reading, none or characters per second (0.5 to 10000), "
                         f"got {value!r}", param=param)  # fmt: skip
    return Pace(f"{value:g}/s", float(value), float(value))


def parse_flag(value: object, param: str) -> bool:
    """A boolean option from JSON (true/false) or a header (1/0, true/false, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"{param}: expected true or false, got {value!r}", param=param)


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
