"""The seam between a remote backend and the network, after httpx's `MockTransport` pattern.

The backends speak HTTP through a `Transport` and read answers through a `Response`, so tests (and users
who want to try a gateway without a provider) swap the network for an in-process handler
(`hearth.testing.MockTransport`) and exercise the real parsing and error mapping in milliseconds.

A transport reports failures below HTTP with the typed errors here, never its library's own, so the
provider words them the same whichever transport is plugged in: `HttpProvider` turns a `ConnectFailed`
into "is unreachable", a `TransportTimeout` into "timed out", a `ConnectionBroken` into "broke the
connection" and any other `TransportError` into "failed". HTTP error statuses are not errors at this
level: the reply carries them and the provider maps them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class TransportError(Exception):
    """The exchange failed below HTTP (no status, or a body cut short). Its text is the cause's own."""


class ConnectFailed(TransportError):
    """No connection could be opened (refused, DNS failure, unreachable network).

    `reason` is the operating system's word for it when known ("Connect call failed ..."), which is
    what the provider's message quotes; the error's text is the full description.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class TransportTimeout(TransportError):
    """Connecting, waiting for the answer, a silence mid-stream or the whole exchange took too long."""


class ConnectionBroken(TransportError):
    """The connection dropped or the body was malformed after the exchange began."""


class Response(Protocol):
    """An answer whose headers arrived; the body is read once, whole or as it arrives."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive, as HTTP header names are."""
        ...

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, or with `limit` at most that many bytes of what has arrived (an error body
        worth quoting, without waiting on a provider that keeps the connection open)."""
        ...

    def lines(self) -> AsyncIterator[bytes]:
        """Each line (with its b"\\n") as soon as it is complete: SSE and NDJSON streams are parsed
        event by event, never collected."""
        ...

    async def drain(self) -> None:
        """Read to the end, so that a pooled connection can be reused instead of closed."""
        ...


class Transport(Protocol):
    """Sends requests to a provider. Each call is an async context manager: the reply is valid inside
    it, and leaving it releases the connection (back to the pool, or closed if the body was not read)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]: ...

    def get(self, url: str, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]: ...

    async def close(self) -> None: ...
