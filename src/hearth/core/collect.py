"""One way to gather a stream into a whole answer: text, tool calls merged by index, usage, finish.

Non-streaming responses in both dialects, the cache (which stores what it passes through), structured
output (which validates a remote answer) and the router (which judges an answer before committing to
it) all need the same merge; tool-call fragments in particular must be joined the same way everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.core.types import Chunk, Finish, TextDelta, ToolCallDelta, Usage


class Collected:
    """Feed it chunks with `add`; read the answer so far at any time."""

    __slots__ = ("_calls", "_parts", "finish", "usage")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._calls: dict[int, ToolCallDelta] = {}
        self.usage: Usage | None = None
        self.finish: Finish | None = None

    def add(self, c: Chunk) -> None:
        if isinstance(c, TextDelta):
            self._parts.append(c.text)
        elif isinstance(c, ToolCallDelta):
            have = self._calls.get(c.index)
            if have is None:
                self._calls[c.index] = ToolCallDelta(c.index, c.id, c.name, c.arguments)
            else:
                # Providers send the id and the name whole in a call's first fragment (some repeat them).
                have.id = have.id or c.id
                have.name = have.name or c.name
                have.arguments += c.arguments
        elif isinstance(c, Usage):
            self.usage = c
        elif isinstance(c, Finish):
            self.finish = c

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def tool_calls(self) -> list[ToolCallDelta]:
        """Whole calls, in index order."""
        return [self._calls[i] for i in sorted(self._calls)]

    @property
    def reason(self) -> str:
        return self.finish.reason if self.finish is not None else "stop"


async def collect(stream: AsyncIterator[Chunk]) -> Collected:
    out = Collected()
    async for c in stream:
        out.add(c)
    return out
