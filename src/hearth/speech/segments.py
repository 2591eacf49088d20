"""A listener's playback clock, and (from core, where the engine uses it too) the segmenter.

A voice server speaks one segment at a time: the sooner the first one is whole, the sooner the device
talks; after that, every segment has to arrive before the speech in front of it has been spoken.
"""

from __future__ import annotations

from hearth.core.pace import Pace
from hearth.speech.cutting import Segmenter

__all__ = ["Playback", "Segmenter"]


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
