"""Backends that answer from a script or a function, with the whole `Backend` protocol.

Every stage (router, cache, structured output, RAG) can be exercised in-process with them in
milliseconds, through the real composition root (`hearth.assemble.assemble(cfg, leaves={...})`):
fallback on a failing provider is a `Reply(error=...)`, a missed first-token deadline a
`Reply(first_delay=...)`, a busy local engine `local=True` with a `queue_depth`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from hearth.core.errors import UpstreamError
from hearth.core.types import (
    ChatRequest,
    Chunk,
    Finish,
    FinishReason,
    LocalEngine,
    ModelInfo,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_WORDS = re.compile(r"\S+\s*|\s+")


@dataclass
class Reply:
    """One scripted answer. `error` fails before the first chunk; `error_after` fails after that many
    text pieces (mid-stream, once the client has seen some)."""

    text: str = ""
    pieces: Sequence[str] | None = None  # how the text streams; default: word by word
    tool_calls: Sequence[tuple[str, Any]] = ()  # (function name, arguments as a dict or JSON text)
    finish: FinishReason | None = None  # default: tool_calls when there are calls, else stop
    usage: tuple[int, int] | None = None  # default: (words in the prompt, pieces sent)
    logprob: float | None = None  # attached to every piece when the request asks for log-probabilities
    first_delay: float = 0.0  # seconds before the first chunk
    delay: float = 0.0  # seconds between chunks
    error: Exception | None = None
    error_after: int | None = None

    def chunks(self, request: ChatRequest) -> list[Chunk | Exception]:
        pieces = list(self.pieces) if self.pieces is not None else _WORDS.findall(self.text)
        out: list[Chunk | Exception] = []
        for i, p in enumerate(pieces):
            if self.error_after is not None and i == self.error_after:
                out.append(self.error or UpstreamError("scripted failure mid-stream"))
                return out
            out.append(TextDelta(p, self.logprob if request.logprobs else None))
        for i, (fn, args) in enumerate(self.tool_calls):
            text = args if isinstance(args, str) else orjson.dumps(args).decode()
            out.append(ToolCallDelta(i, f"call_{i}", fn, text))
        prompt = request.prompt or " ".join(m.content for m in request.messages)
        out.append(Usage(*(self.usage or (len(prompt.split()), len(pieces)))))
        out.append(Finish(self.finish or ("tool_calls" if self.tool_calls else "stop")))
        return out


Answer = Reply | Exception | Sequence[Chunk | Exception]
AnswerFn = Callable[[ChatRequest], Answer]


@dataclass
class _Load:
    """The `LocalEngine` of a double that plays a local model: its queue depth is set by the test."""

    depth: int = 0
    counters: dict[str, float] = field(default_factory=dict)

    def queue_depth(self) -> int:
        return self.depth

    def stats(self) -> dict[str, float]:
        return {"queue_depth": float(self.depth), **self.counters}

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + sum(not c.isalnum() and not c.isspace() for c in text)  # words and marks

    unavailable: str | None = None  # set by a test to play an engine whose build failed its check


class FunctionBackend:
    """A Backend whose every answer is `fn(request)`: a `Reply`, an exception to raise before the first
    chunk, or a list of chunks (an exception in the list is raised at that point)."""

    def __init__(self, name: str, fn: AnswerFn, *, local: bool = False, queue_depth: int = 0,
                 ready: bool = True) -> None:
        self.name = name
        self.fn = fn
        self.load = _Load(queue_depth) if local else None
        self._ready = ready
        self.healthy = True  # False: check_health raises, as a provider whose /models fails
        self.requests: list[ChatRequest] = []  # every request, in arrival order
        self.started = 0  # streams begun
        self.closed = 0  # streams finished or closed early (cancelled hedges, disconnects)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def local(self) -> LocalEngine | None:
        return self.load

    async def check_health(self) -> None:
        if not self.healthy:
            raise UpstreamError(f"backend {self.name!r} is down (scripted)")

    async def start(self) -> None:
        self._ready = True

    async def close(self) -> None:
        return None

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, kind="llamacpp" if self.load else "scripted", context_length=4096)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        self.started += 1
        try:
            answer = self.fn(request)
            if isinstance(answer, Exception):
                raise answer
            if isinstance(answer, Reply):
                if answer.first_delay:
                    await asyncio.sleep(answer.first_delay)
                if answer.error is not None and answer.error_after is None:
                    raise answer.error
                items, delay = answer.chunks(request), answer.delay
            else:
                items, delay = list(answer), 0.0
            for i, item in enumerate(items):
                if i and delay:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)  # a real stream yields to the loop between chunks
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1


class ScriptedBackend(FunctionBackend):
    """Answers with the given replies in order; the last one repeats."""

    def __init__(self, name: str, *answers: Answer, local: bool = False, queue_depth: int = 0) -> None:
        if not answers:
            answers = (Reply("ok"),)
        self.script = list(answers)
        super().__init__(name, self._next, local=local, queue_depth=queue_depth)

    def _next(self, request: ChatRequest) -> Answer:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]
