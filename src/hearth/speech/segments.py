"""Text cut into speakable segments as it streams, and a listener's playback clock.

A voice server speaks one segment at a time: the sooner the first one is whole, the sooner the device
talks. The first segment ends at the first comma-class mark (after a few characters), later ones at
sentence ends; concatenated, the segments are exactly the text that came in.
"""

from __future__ import annotations

from hearth.core.pace import Pace, first_segment_end, sentence_end


class Segmenter:
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


class Playback:
    """When a listener speaking at `pace` would run out of audio; a segment that arrives after that is an
    underrun (the device went silent mid-answer), and the gap is its lag."""

    __slots__ = ("_end", "pace")

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self._end = 0.0

    def arrive(self, segment: str, now: float) -> float:
        """Seconds the listener waited in silence before this segment (0.0 when it came in time)."""
        spoken = self.pace.seconds(segment)
        if not self._end:  # the first segment starts playback
            self._end = now + spoken
            return 0.0
        lag = max(0.0, now - self._end)
        self._end = max(self._end, now) + spoken
        return lag
