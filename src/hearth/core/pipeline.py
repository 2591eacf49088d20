"""From a parsed request to a stream of chunks, with metrics, and errors surfaced early.

`Gateway.open()` pulls the first chunk before the dialect sends any HTTP header: a provider that is
down, an unknown model or an overlong prompt then gets a proper status code (404, 400, 502...)
rather than a 200 followed by an error event. After that, failures arrive as exceptions from the
iterator, and the dialect ends the stream with its own error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from hearth.core.errors import HearthError
from hearth.core.registry import ModelRegistry
from hearth.core.types import (
    CacheInfo,
    ChatRequest,
    Chunk,
    ErrorChunk,
    Finish,
    Intent,
    Note,
    RouteInfo,
    SourcesInfo,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from hearth.metrics import GatewayMetrics

log = logging.getLogger("hearth")

# Reads a request before it is resolved and fills in what stages decide by (the intent of its latest turn).
Annotator = Callable[[ChatRequest], None]


class AnswerObserver(Protocol):
    """Looks at finished answers off the request path (the online quality score, drift windows)."""

    def wants(self, request: ChatRequest) -> bool:
        """Asked when the stream opens: keep this answer's text for `observe`? (sampling decides)."""
        ...

    def observe(self, request: ChatRequest, stream: Stream, text: str) -> None:
        """Called once when the stream closes; must not block (schedule the work)."""
        ...


class Stream:
    """An open generation: iterate it for chunks; always `aclose()` it (dialects use try/finally)."""

    __slots__ = (
        "_done",
        "_it",
        "_labels",
        "_metrics",
        "_pending",
        "_texts",
        "api",
        "finish",
        "intent",
        "model",
        "notes",
        "observers",
        "on_close",
        "outputs",
        "quality",
        "served_by",
        "status",
        "t0",
        "t_last",
        "ttft",
        "usage",
    )

    def __init__(self, api: str, model: str, served_by: str, it: AsyncIterator[Chunk], metrics: GatewayMetrics):
        # `served_by`: the model that produced the answer: the requested one, the router's pick, or "cache".
        self.api, self.model, self.served_by = api, model, served_by
        self._it = it
        self._metrics = metrics
        self._labels = (model, served_by)
        self._pending: Chunk | None = None
        self._done = False
        self.t0 = time.perf_counter()
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self.notes: dict[str, Note] = {}  # by stage: what each stage did
        self.status = "ok"
        self.outputs = 0  # text and tool-call deltas: the output size where a broken stream reports no usage
        self.t_last = 0.0  # when the Finish arrived; 0: the stream did not finish
        # Run once when the stream closes, however it ends (the access layer settles its reservation here).
        self.on_close: Callable[[Stream], Awaitable[None]] | None = None
        self.intent: Intent | None = None
        self.quality: float | None = None  # the answer's quality score, where an observer already has it
        self.observers: list[tuple[AnswerObserver, ChatRequest]] = []
        self._texts: list[str] | None = None  # the answer's text, kept only while an observer wants it

    async def prime(self) -> None:
        """Wait for the first chunk, so that early failures raise before any byte is sent."""
        try:
            c = await self._it.__anext__()
            while isinstance(c, Note):  # what the stages did: for headers, the log, the span
                self.notes[c.stage] = c
                if (who := c.answered_by()) is not None:
                    self.served_by = who
                    self._labels = (self.model, who)
                c = await self._it.__anext__()
            self._pending = c
        except StopAsyncIteration:
            self._done = True
        except BaseException as e:
            self._failed(e)
            await self.aclose()
            raise

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Chunk:
        if self._pending is not None:
            c, self._pending = self._pending, None
        else:
            if self._done:
                raise StopAsyncIteration
            try:
                c = await self._it.__anext__()
            except StopAsyncIteration:
                self._done = True
                raise
            except BaseException as e:
                self._failed(e)
                raise
        if isinstance(c, TextDelta | ToolCallDelta):
            self.outputs += 1
            if self._texts is not None and isinstance(c, TextDelta):
                self._texts.append(c.text)
            if self.ttft is None:
                self.ttft = time.perf_counter() - self.t0
                self._metrics.ttft.observe(self._labels, self.ttft)
        elif isinstance(c, Usage):
            self.usage = c
        elif isinstance(c, Finish):
            self.finish = c
            self.t_last = time.perf_counter()  # right after the last token: one clock read per stream, not per token
        elif isinstance(c, ErrorChunk):
            self._failed(c.error)
            raise c.error
        return c

    @property
    def route(self) -> RouteInfo | None:
        """The router's note, if a router answered (its own tests and the console read it)."""
        note = self.notes.get(RouteInfo.stage)
        return note if isinstance(note, RouteInfo) else None

    @property
    def cache(self) -> CacheInfo | None:
        note = self.notes.get(CacheInfo.stage)
        return note if isinstance(note, CacheInfo) else None

    @property
    def sources(self) -> list[dict[str, Any]] | None:
        """RAG's passages: the dialects put them in the answer's body."""
        note = self.notes.get(SourcesInfo.stage)
        return note.sources if isinstance(note, SourcesInfo) else None

    def _failed(self, e: BaseException) -> None:
        if isinstance(e, HearthError):
            code = e.code or e.type
        elif isinstance(e, Exception):
            code = "internal_error"
            log.error("internal error in %s backend %s: %r", self.api, self.served_by, e, exc_info=e)
        else:
            code = "cancelled"
        self.status = code
        self._metrics.errors.inc((self.model, self.served_by, code))

    async def aclose(self) -> None:
        try:
            if isinstance(self._it, AsyncGenerator):
                await self._it.aclose()
        finally:
            if self._labels is not None:
                m = self._metrics
                m.latency.observe(self._labels, time.perf_counter() - self.t0)
                m.requests.inc((self.api, self.model, self.served_by, self.status))
                if self.usage is not None:
                    m.tokens_in.inc(self._labels, self.usage.prompt_tokens)
                    m.tokens_out.inc(self._labels, self.usage.completion_tokens)
                if self.outputs > 1 and self.ttft is not None and self.t_last:
                    gaps = self.t_last - self.t0 - self.ttft
                    m.time_per_output_token.observe(self._labels, gaps / (self.outputs - 1))
                self._labels = None  # type: ignore[assignment]
                if self.observers and self.status == "ok" and self.finish is not None and self._texts:
                    text = "".join(self._texts or ())
                    for observer, request in self.observers:
                        try:
                            observer.observe(request, self, text)
                        except Exception:
                            log.exception("answer observer failed")
                if self.on_close is not None:
                    # Shielded: a client that disconnects cancels its handler, and the settlement must still run.
                    await asyncio.shield(self.on_close(self))


class Gateway:
    def __init__(self, registry: ModelRegistry, metrics: GatewayMetrics | None = None, *,
                 annotators: Sequence[Annotator] = (), observers: Sequence[AnswerObserver] = ()) -> None:
        self.registry = registry
        self.metrics = metrics or GatewayMetrics()
        self.annotators = list(annotators)
        self.observers = list(observers)

    async def open(self, api: str, request: ChatRequest) -> Stream:
        for annotate in self.annotators:
            annotate(request)
        name, backend = self.registry.resolve(request)
        stream = Stream(api, name, backend.name, backend.stream(request), self.metrics)
        if request.intent is not None:
            stream.intent = request.intent
            self.metrics.intents.inc((name, request.intent.label))  # the resolved name: no label per typo
        stream.observers = [(o, request) for o in self.observers if o.wants(request)]
        if stream.observers:
            stream._texts = []
        await stream.prime()
        return stream
