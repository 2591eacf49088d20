"""Ollama's `keep_alive`: how long a model stays loaded after a request, as users and clients send it.

A number is seconds; a string is a Go duration ("5m", "1h30m", "300ms", "-1m"), or a bare number in a
string ("300", "-1"), which Ollama's clients also send. Negative means forever, 0 unload after the answer.
The result is seconds, with `FOREVER` (infinity) for any negative value.
"""

from __future__ import annotations

import math
import re

from hearth.core.errors import BadRequest

FOREVER = math.inf
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_keep_alive(value: object, field: str = "keep_alive") -> float | None:
    """Seconds to stay loaded (FOREVER for negative), or None when the request leaves it to the default."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest(f'{field}: expected a duration such as "5m" or seconds, got {value!r}', param=field)
    if isinstance(value, int | float):
        if math.isnan(value):
            raise BadRequest(f"{field}: not a number", param=field)
        return FOREVER if value < 0 else float(value)
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected a duration such as \"5m\" or seconds, got {type(value).__name__}",
                         param=field)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        parts = _PART.findall(body)
        if not parts or "".join(n + u for n, u in parts) != body:
            raise BadRequest(f"{field}: {value!r} is not a duration (use e.g. \"30s\", \"5m\", \"1h\", \"-1\", 0)",
                             param=field) from None
        seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    if math.isnan(seconds):
        raise BadRequest(f"{field}: not a number", param=field)
    return FOREVER if seconds < 0 else seconds
