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

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Protocol

import aiohttp
import orjson
import yarl


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


# --- the real one ---------------------------------------------------------------------------------


@contextmanager
def _typed_errors() -> Iterator[None]:
    """aiohttp's exceptions as transport errors. The order matters: aiohttp's socket-read timeout is
    also a connection error, and its connect error is also an OS error."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as e:
        raise TransportTimeout(str(e)) from e
    except aiohttp.ClientConnectorError as e:
        raise ConnectFailed(str(e), str(e.os_error or e)) from e
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
        raise ConnectionBroken(str(e)) from e
    except aiohttp.ClientError as e:
        raise TransportError(str(e)) from e


class AiohttpReply:
    """An aiohttp response behind the `Response` protocol; every read converts aiohttp's errors, so a
    stream that breaks or stalls mid-way fails with a transport error too."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def reason(self) -> str | None:
        return self._resp.reason

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self, limit: int | None = None) -> bytes:
        with _typed_errors():
            return await (self._resp.read() if limit is None else self._resp.content.read(limit))

    async def lines(self) -> AsyncIterator[bytes]:
        while True:
            # Only the read is converted: whatever the consumer raises at the yield is its own.
            with _typed_errors():
                try:
                    line = await self._resp.content.readline()
                except ValueError as e:  # aiohttp: "Chunk too big", one line past its buffer limit
                    raise ConnectionBroken(f"a stream line too long to read ({e})") from e
            if not line:
                return
            yield line

    async def drain(self) -> None:
        with _typed_errors():
            while await self._resp.content.readany():
                pass


class AiohttpTransport:
    """The network: one pooled aiohttp session per provider, opened on first use (so constructing a
    backend never needs a running event loop) and opened again if used after `close`.

    Timeouts: `connect` bounds opening a connection; `read` bounds the wait for the first byte of the
    answer and also any silence mid-stream (a stalled stream fails instead of hanging); `total` bounds
    the whole exchange.
    """

    def __init__(self, *, connect: float, read: float, total: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # keep-alive shorter than common upstream idle timeouts would be wasteful; longer risks reusing
            # sockets the server already closed, which aiohttp retries once for idempotent requests only.
            conn = aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=conn,
                timeout=self.timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),  # a provider's cookies are nobody's state here
            )
        return self._session

    def _url(self, url: str) -> yarl.URL:
        """Parsed once per address (a provider has a handful), not on every request."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = yarl.URL(url)
        return parsed

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AsyncIterator[Response]:
        with _typed_errors():
            async with self.session.post(self._url(url), data=body, headers=headers) as resp:
                yield AiohttpReply(resp)

    @asynccontextmanager
    async def get(self, url: str, headers: Mapping[str, str]) -> AsyncIterator[Response]:
        with _typed_errors():
            async with self.session.get(url, headers=headers) as resp:
                yield AiohttpReply(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
