"""Keep a long system prompt's KV prefix reusable when a few of its lines change between requests.

Why: voice servers put live context in the system prompt. xiaozhi-esp32-server's ends with
`- Current time: 17:27`, the date, the lunar date and the weather, and chat templates (Qwen's) render the tool
block after the system text. So every new minute the first changed token sits ~1,800 tokens before the
user's question, and the whole system prompt, tool block and few-shot turns are prefilled again: 18-20 s on
a 2-core CPU, against 0.3 s when the prefix is reused.

For local models that opt in (`stable_prefix`, on for `voice`), the lines that change are taken out of the
system prompt and given to the model as a short system message just before the latest user message, so the
long part of the prompt is the same from one request to the next. Which lines change is learnt: each long
system prompt is compared with the recent ones that share most of its lines, and a line that differs is
remembered (digits masked, so `17:27` and `17:28` are the same line) as volatile from then on. Clock times and
dates are known to be volatile from the first request. A volatile line stays volatile: the layout of a
client's prompt must not flip between requests, or the cache would miss on the flip.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import deque

from hearth.core.types import Message

MIN_SYSTEM_CHARS = 400  # shorter system prompts cost little to prefill: left as they are
_RECENT = 16  # recent system prompts kept (as line sets) to learn from
_SIMILAR = 0.8  # share of lines two prompts must have in common to be versions of one prompt
_MAX_VOLATILE = 256  # learnt line keys kept
# Clock times, dates (2026-12-07, 2026/12/07, 12月7日), weekdays in the same line as a date.
_KNOWN = re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b|\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b|\d{1,2}月\d{1,2}[日号]")
_DIGITS = re.compile(r"\d+")


def _key(line: str) -> str:
    return _DIGITS.sub("#", line.strip())


class VolatileLines:
    """Per local model: which system-prompt lines change between requests. Thread-safe (prompts are
    rendered in worker threads)."""

    def __init__(self) -> None:
        self._recent: deque[frozenset[str]] = deque(maxlen=_RECENT)
        self._volatile: dict[str, None] = {}  # learnt keys, oldest first
        self._lock = threading.Lock()

    def volatile_keys(self) -> list[str]:
        with self._lock:
            return list(self._volatile)

    def learn(self, system: str) -> None:
        lines = frozenset(ln for ln in system.splitlines() if ln.strip())
        with self._lock:
            best: frozenset[str] | None = None
            best_share = 0.0
            for seen in self._recent:
                if seen == lines:
                    return  # the same prompt again: nothing to learn, nothing to add
                share = len(lines & seen) / max(len(lines), len(seen), 1)
                if share > best_share:
                    best, best_share = seen, share
            if best is not None and best_share >= _SIMILAR:
                for line in lines - best:
                    self._volatile[_key(line)] = None
                while len(self._volatile) > _MAX_VOLATILE:
                    self._volatile.pop(next(iter(self._volatile)))
            self._recent.append(lines)

    def split(self, system: str) -> tuple[str, str]:
        """(the stable text, the volatile lines) of a system prompt."""
        with self._lock:
            volatile = self._volatile
            stable_lines: list[str] = []
            moved: list[str] = []
            for line in system.split("\n"):
                if line.strip() and (_key(line) in volatile or _KNOWN.search(line)):
                    moved.append(line.strip())
                else:
                    stable_lines.append(line)
        return "\n".join(stable_lines), "\n".join(moved)

    def arrange(self, messages: list[Message]) -> list[Message]:
        """The messages with the system prompt's volatile lines moved next to the latest user message; the
        same list when there is nothing to move."""
        if not messages or messages[0].role not in ("system", "developer"):
            return messages
        if len(messages[0].content) < MIN_SYSTEM_CHARS:
            return messages
        last_user = next((i for i in range(len(messages) - 1, 0, -1) if messages[i].role == "user"), None)
        if last_user is None:
            return messages
        system = messages[0].content
        self.learn(system)
        stable, moved = self.split(system)
        if not moved:
            return messages
        first = dataclasses.replace(messages[0], content=stable)
        context = Message("system", moved)
        return [first, *messages[1:last_user], context, *messages[last_user:]]
