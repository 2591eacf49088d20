"""An in-process `Transport` for the remote backends: a handler function plays the provider.

    transport = MockTransport(lambda req: openai_sse(["Hel", "lo"], usage=(3, 2)))
    backend = OpenAICompatBackend("gpt", cfg, transport=transport)

The backend's own request building, stream parsing and error mapping run unchanged; only the socket is
gone. Failures are played the way a network produces them: a handler that raises a transport error
(`ConnectFailed`, `TransportTimeout`) fails before any answer, a `MockReply` with `error` fails after its
body, and `delay` / `chunk_delay` make a slow or trickling provider for deadline and cancellation tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import orjson
from multidict import CIMultiDict

from hearth.backends.transport import Response, TransportError


@dataclass(slots=True)
class MockRequest:
    """What the backend sent: `json` is the decoded body (None for a GET), `path` the URL's path."""

    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass(slots=True)
class MockReply:
    """What the mock provider answers.

    `body` is the whole body, or a list of chunks delivered one at a time (an SSE event or NDJSON line
    each, or any split: lines are reassembled across chunks as a socket would deliver them). `delay`
    passes before the status line (a slow provider), `chunk_delay` between chunks (a trickling stream).
    `error`, when set, is raised after the last chunk instead of a clean end: a connection that breaks
    or stalls mid-stream.
    """

    status: int = 200
    body: bytes | Sequence[bytes] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None  # default: the status's standard phrase
    delay: float = 0.0
    chunk_delay: float = 0.0
    error: TransportError | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> MockReply:
        return cls(status, orjson.dumps(data), {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[MockRequest], MockReply | Awaitable[MockReply]]


class _PlayedReply:
    """A MockReply behind the `Response` protocol; like a socket, its body can be consumed only once."""

    def __init__(self, spec: MockReply) -> None:
        self.spec = spec
        self._chunks = [spec.body] if isinstance(spec.body, bytes) else list(spec.body)
        self._sent = 0
        self._buffer = b""  # read from the "socket" but not yet handed out as a line
        self.headers: Mapping[str, str] = CIMultiDict(spec.headers)

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def reason(self) -> str | None:
        if self.spec.reason is not None:
            return self.spec.reason
        try:
            return HTTPStatus(self.spec.status).phrase
        except ValueError:
            return None

    async def _next_chunk(self) -> bytes | None:
        """The next chunk, None at a clean end; raises the reply's error where the body ends."""
        if self._sent >= len(self._chunks):
            if self.spec.error is not None:
                raise self.spec.error
            return None
        if self._sent and self.spec.chunk_delay:
            await asyncio.sleep(self.spec.chunk_delay)
        chunk = self._chunks[self._sent]
        self._sent += 1
        return chunk

    async def read(self, limit: int | None = None) -> bytes:
        data, self._buffer = self._buffer, b""
        while limit is None or len(data) < limit:
            chunk = await self._next_chunk()
            if chunk is None:
                break
            data += chunk
        if limit is not None:
            data, self._buffer = data[:limit], data[limit:]
        return data

    async def lines(self) -> AsyncIterator[bytes]:
        while True:
            if (end := self._buffer.find(b"\n")) >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                yield line
                continue
            chunk = await self._next_chunk()
            if chunk is None:
                break
            self._buffer += chunk
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            yield rest

    async def drain(self) -> None:
        self._buffer = b""
        while await self._next_chunk() is not None:
            pass


class MockTransport:
    """Answers every request with `handler(request)` (sync or async) and records the requests in
    `requests`, so a test can check what went upstream."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]:
        return self._exchange("POST", url, body, headers)

    def get(self, url: str, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]:
        return self._exchange("GET", url, b"", headers)

    async def close(self) -> None:
        self.closed = True

    @asynccontextmanager
    async def _exchange(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[Response]:
        payload = orjson.loads(body) if body else None
        request = MockRequest(method, url, urlsplit(url).path, dict(headers), body, payload)
        self.requests.append(request)
        answer = self.handler(request)
        spec = answer if isinstance(answer, MockReply) else await answer
        if spec.delay:
            await asyncio.sleep(spec.delay)
        yield _PlayedReply(spec)


# --- wire-format helpers ----------------------------------------------------------------------------


def sse(*events: Mapping[str, Any] | str) -> list[bytes]:
    """Server-sent events, one chunk each: a mapping is sent as JSON, a string as is (e.g. "[DONE]")."""
    return [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events]


def openai_sse(
    pieces: Sequence[str],
    *,
    finish: str | None = "stop",
    usage: tuple[int, int] | None = None,
    done: bool = True,
    model: str = "mock",
) -> MockReply:
    """A streamed chat completion: one delta per piece, then the finish reason, usage and [DONE].
    `finish=None` and `done=False` leave them out, as a provider that cuts the stream short does."""

    def event(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        return {"id": "mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}

    events: list[Mapping[str, Any] | str] = [event({"role": "assistant", "content": p}) for p in pieces]
    if finish is not None:
        events.append(event({}, finish))
    if usage is not None:
        events.append({"id": "mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [], "usage": _openai_usage(usage)})
    if done:
        events.append("[DONE]")
    return MockReply(body=sse(*events), headers={"Content-Type": "text/event-stream"})


def openai_completion(
    text: str, *, finish: str = "stop", usage: tuple[int, int] = (3, 2), tool_calls: list[dict[str, Any]] | None = None
) -> MockReply:
    """A non-streamed chat completion (`tool_calls` in OpenAI's shape, if any)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return MockReply.json({
        "id": "mock", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": _openai_usage(usage),
    })


def ollama_ndjson(
    pieces: Sequence[str],
    *,
    done: bool = True,
    done_reason: str = "stop",
    usage: tuple[int, int] = (3, 2),
    generate: bool = False,
) -> MockReply:
    """A streamed Ollama answer: one line per piece, then the final `done` line with the token counts.
    `generate=True` is `/api/generate`'s shape (`response`) instead of `/api/chat`'s (`message`);
    `done=False` leaves the final line out, as a server that dies mid-answer does."""

    def line(text: str, final: bool = False) -> bytes:
        d: dict[str, Any] = {"model": "mock", "created_at": "2025-01-01T00:00:00Z", "done": final}
        if generate:
            d["response"] = text
        else:
            d["message"] = {"role": "assistant", "content": text}
        if final:
            d.update(done_reason=done_reason, prompt_eval_count=usage[0], eval_count=usage[1],
                     prompt_eval_duration=1_000_000, eval_duration=2_000_000)
        return orjson.dumps(d) + b"\n"

    body = [line(p) for p in pieces] + ([line("", final=True)] if done else [])
    return MockReply(body=body, headers={"Content-Type": "application/x-ndjson"})


def _openai_usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}
