"""Keep a long system prompt's KV prefix reusable when a few of its lines change between requests.

Why: voice servers put live context in the system prompt. xiaozhi-esp32-server's ends with
`- Current time: 17:27`, the date, the lunar date and the weather, and chat templates (Qwen's) render the tool
block after the system text. So every new minute the first changed token sits ~1,800 tokens before the
user's question, and the whole system prompt, tool block and few-shot turns are prefilled again: 18-20 s on
a 2-core CPU, against 0.3 s when the prefix is reused.

For local models with `stable_prefix` (on for paced models such as `voice`), the lines that change are taken out of the
system prompt and given to the model as a short system message just before the latest user message, so the
long part of the prompt is the same from one request to the next. The block a turn got is remembered (by
the conversation up to that user message), and later turns render it again before that message: the prompt
grows like a log (09:01 before the first question, 09:02 before the second), so the previous turn's question
and answer stay in the reusable prefix too and only the new block and question are prefilled.

It pays most where a few new tokens after a long prefix are cheap: with llama.cpp's flash attention off
(`flash_attn: off`, which examples/voice.yaml sets). With it on (the default), a CPU prefills 30 tokens at
position 2,000 not much faster than 300 (benchmarks/xiaozhi_real.py, xiaozhi's first segment p50: 3.5 s
without this, 1.6 s with it, 0.53 s with it and flash attention off).

Which lines change is learnt: each long system prompt is compared with the recent ones that share most of its
lines, and a line that differs is remembered (digits masked, so `17:27` and `17:28` are the same line) as
volatile from then on. Clock times and dates are known to be volatile from the first request. A volatile line
stays volatile: the layout of a client's prompt must not flip between requests, or the cache would miss on the
flip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections import OrderedDict, deque

from hearth.core.types import Message

MIN_SYSTEM_CHARS = 400  # shorter system prompts cost little to prefill: left as they are
# Longer ones are left as they are too: what is learnt and remembered per turn is kept in memory for every
# client of the model, so a tenant's megabyte prompts must not fill it (voice prompts are 2-6 KB).
MAX_SYSTEM_CHARS = 32 * 1024
_RECENT = 16  # recent system prompts kept (as line sets) to learn from
_SIMILAR = 0.8  # share of lines two prompts must have in common to be versions of one prompt
_MAX_VOLATILE = 256  # learnt line keys kept
_MAX_PLACED = 4096  # context blocks remembered, one per (conversation, user turn)
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
        self._placed: OrderedDict[bytes, str] = OrderedDict()  # conversation up to a user turn -> its block
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
        """The messages with the system prompt's volatile lines moved next to the latest user message (and
        earlier turns' blocks where they were); the same list when there is nothing to move."""
        if not messages or messages[0].role not in ("system", "developer"):
            return messages
        if not MIN_SYSTEM_CHARS <= len(messages[0].content) <= MAX_SYSTEM_CHARS:
            return messages
        users = [i for i in range(1, len(messages)) if messages[i].role == "user"]
        if not users:
            return messages
        system = messages[0].content
        self.learn(system)
        stable, moved = self.split(system)
        if not moved:
            return messages
        h = hashlib.blake2b(stable.encode(), digest_size=16)
        keys: dict[int, bytes] = {}
        for i in range(1, users[-1] + 1):
            m = messages[i]
            h.update(f"\x00{m.role}\x00{m.content}\x00{m.tool_calls!r}\x00{m.tool_call_id}".encode())
            if m.role == "user":
                keys[i] = h.copy().digest()
        blocks: dict[int, str] = {}
        with self._lock:
            for i, key in keys.items():
                block = self._placed.get(key)
                if block is None and i == users[-1]:
                    # Only what changed since the blocks this conversation already has (the time, not today's
                    # date again): fewer tokens to prefill per turn; "" (nothing new) adds no block.
                    said = {ln for b in blocks.values() for ln in b.split("\n")}
                    block = "\n".join(ln for ln in moved.split("\n") if ln not in said)
                    self._placed[key] = block
                    while len(self._placed) > _MAX_PLACED:
                        self._placed.popitem(last=False)
                if block is not None:
                    self._placed.move_to_end(key)
                    blocks[i] = block
        out = [dataclasses.replace(messages[0], content=stable)]
        for i in range(1, len(messages)):
            if blocks.get(i):
                # Framed as context, not said bare: a bare line right before the question is what a 0.5B model
                # tends to read out (seen with xiaozhi's lunar-date line).
                out.append(Message("system", f"<context>\n{blocks[i]}\n</context>"))
            out.append(messages[i])
        return out
