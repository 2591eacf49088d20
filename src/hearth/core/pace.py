"""How fast a stream's consumer uses its text: a request's pace, as the pipeline carries it.

A voice device does not read tokens: it needs the text only as fast as speech goes (about 4.5 Chinese
characters, or 14 characters of English, a second). A stream that knows its pace can be scheduled by how
much speech it has buffered ahead of its listener. Where speakable segments end is the speech stage's
business (`speech/cutting.py`); this is only the value a request carries to the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.core.errors import BadRequest

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
                             param=param) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value <= 10_000:
        raise BadRequest(f"{param}: expected speech, reading, none or characters per second (0.5 to 10000), "
                         f"got {value!r}", param=param)
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
