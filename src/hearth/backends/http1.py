"""HTTP/1.1 to providers over pooled asyncio connections: the default `Transport`.

Why not aiohttp's client: in front of a provider that answers in a quarter of a millisecond, aiohttp's
client was a seventh of a proxied request's wall time (about 100 µs of its ~230 per exchange at
concurrency 1; this module's exchange costs about half). A provider call is always the same small thing (a
POST or GET of JSON, an answer framed by Content-Length, chunks or the connection's end), so the client does
only that: no cookies, redirects, proxies or multipart. The answer is read as it arrives, so SSE and NDJSON
streams are parsed event by event.

Connections are pooled per (scheme, host, port), reused while the answer was read to its end and the server
keeps them open, and dropped after 30 s idle. A reused connection that the server closed just as the request
went out (its keep-alive expired: no byte of an answer came back) is retried once on a new connection, as Go's
client does; any other failure is reported, never retried, since a POST may have been acted on.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from hearth import __version__
from hearth.backends.transport import ConnectFailed, ConnectionBroken, Response, TransportError, TransportTimeout

LINE_LIMIT = 1 << 20  # a response head, an SSE line or a chunk-size line longer than this is a broken answer
KEEP_ALIVE = 30.0  # seconds an idle connection is kept: shorter than common upstream idle timeouts would waste it
_NO_BODY = frozenset((204, 304))
_URL_SAFE = "/?&=%:@!$'()*+,;~-._"
_Key = tuple[str, str, int]
_DEFAULT_HEADERS = (("user-agent", f"User-Agent: hearth/{__version__}\r\n".encode()), ("accept", b"Accept: */*\r\n"),
                    ("accept-encoding", b"Accept-Encoding: gzip, deflate\r\n"))
_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The system's trust store with verification, made once (building one reads the CA bundle: milliseconds)."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


class Closed(Exception):
    """The connection ended (or was reset) before the bytes a read needed arrived; `partial` is what did."""

    def __init__(self, partial: bytes, cause: BaseException | None) -> None:
        super().__init__(f"the connection closed ({cause})" if cause else "the connection closed")
        self.partial = partial


class _Conn(asyncio.Protocol):
    """One connection and its unread bytes. A read that finds what it needs in the buffer returns at once; only
    one that must wait sets a timer (a StreamReader under `asyncio.timeout` set one for every read)."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ended = False  # no more bytes will come
        self.error: BaseException | None = None
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > 2 * LINE_LIMIT and not self.paused and self.transport is not None:
            self.paused = True  # a reader slower than the server: stop reading until it catches up
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended, self.error = True, exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _more(self, timeout: float) -> None:
        """Wait for bytes (or the end) for at most `timeout` seconds."""
        if self.ended:
            raise Closed(bytes(self.buf), self.error)
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self.waiter = waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    async def until(self, sep: bytes, timeout: float) -> bytes:
        """The bytes up to and including `sep`."""
        start = 0
        while (i := self.buf.find(sep, start)) < 0:
            if len(self.buf) > LINE_LIMIT:
                raise ConnectionBroken(f"an answer head or chunk-size line longer than {LINE_LIMIT} bytes")
            start = max(0, len(self.buf) - len(sep) + 1)
            await self._more(timeout)
        out = bytes(self.buf[: i + len(sep)])
        del self.buf[: i + len(sep)]
        return out

    async def exactly(self, n: int, timeout: float) -> bytes:
        while len(self.buf) < n:
            await self._more(timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def some(self, most: int, timeout: float) -> bytes:
        """What has arrived (waiting for something if nothing has), at most `most` bytes; b"" at the end."""
        if not self.buf:
            try:
                await self._more(timeout)
            except Closed:
                if self.error is not None:
                    raise
                return b""
            if not self.buf:
                return b""
        out = bytes(self.buf[:most])
        del self.buf[:most]
        return out

    def usable(self, now: float) -> bool:
        return not (self.ended or self.buf or now - self.idle_since > KEEP_ALIVE)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.ended = True


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: the server had closed it while idle."""


class Http1Reply:
    """One answer on one connection, behind the `Response` protocol. The body is framed by Content-Length, by
    chunks, or by the end of the connection; `done` says it was read to its end (the connection may then serve
    the next request)."""

    def __init__(self, conn: _Conn, status: int, reason: str, headers: CIMultiDictProxy[str], deadline: float,
                 read_timeout: float, head_request: bool) -> None:
        self._conn = conn
        self.status, self.reason, self.headers = status, reason, headers
        self._deadline, self._read_timeout = deadline, read_timeout
        bodiless = head_request or status in _NO_BODY or 100 <= status < 200
        self.chunked = not bodiless and "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        # Bytes left: of the body (by length), of the current chunk (chunked: 0 after a chunk, -1 before the
        # first), or -1 while the connection's end frames the body.
        self._left = -1
        if bodiless:
            self._left = 0
        elif not self.chunked and length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise ConnectionBroken(f"malformed Content-Length {length!r}") from None
            if self._left < 0:
                raise ConnectionBroken(f"malformed Content-Length {length!r}")
        self.done = self._left == 0 and not self.chunked
        self.keep_alive = "close" not in headers.get("Connection", "").lower() and (self.chunked or self._left >= 0)
        encoding = headers.get("Content-Encoding", "").lower().strip()
        # gzip and zlib both by wbits=47 (header detected); raw deflate, which some servers send as "deflate", below.
        self._unzip: Any = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._raw_deflate = encoding == "deflate"

    def _timeout(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the whole answer took longer than allowed")
        return min(self._read_timeout, left)

    async def _next(self, most: int) -> bytes:
        """The next bytes of the body as they arrive (before decoding), b"" at its end."""
        # The one place the connection's failures become transport errors: a body that breaks or stalls mid-way
        # fails like a connection that never opened, in the provider's words.
        try:
            if self.done:
                return b""
            conn = self._conn
            if self.chunked and self._left <= 0:
                if self._left == 0 and await conn.exactly(2, self._timeout()) != b"\r\n":  # after a chunk's data
                    raise ConnectionBroken("a chunk did not end where its size said")
                size_line = await conn.until(b"\r\n", self._timeout())
                try:
                    self._left = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionBroken(f"malformed chunk size {size_line[:40]!r}") from None
                if self._left == 0:
                    while await conn.until(b"\r\n", self._timeout()) != b"\r\n":  # trailers end with a blank line
                        pass
                    self.done = True
                    return b""
            data = await conn.some(most if self._left < 0 else min(most, self._left), self._timeout())
            if not data:
                if self._left < 0:  # framed by the connection's end: this is it
                    self.done, self.keep_alive = True, False
                    return b""
                raise ConnectionBroken(f"the connection closed with {self._left} bytes of the answer unread")
            if self._left > 0:
                self._left -= len(data)
                self.done = self._left == 0 and not self.chunked  # chunked: the next call reads the CRLF and size
            return data
        except TransportError:
            raise
        except Exception as e:
            if (err := _typed(e)) is None:
                raise
            raise err from e

    def _decode(self, data: bytes) -> bytes:
        if self._unzip is None or not data:
            return data
        try:
            return bytes(self._unzip.decompress(data))
        except zlib.error:
            if not self._raw_deflate:
                raise ConnectionBroken("the compressed answer is malformed") from None
            self._unzip, self._raw_deflate = zlib.decompressobj(-15), False
            return self._decode(data)

    def _rest(self) -> bytes:
        """What the decompressor still holds once the body ended."""
        return bytes(self._unzip.flush()) if self._unzip is not None else b""

    async def read(self, limit: int | None = None) -> bytes:
        if limit is not None:
            return self._decode(await self._next(limit))
        parts = []
        while raw := await self._next(1 << 20):
            parts.append(self._decode(raw))
        parts.append(self._rest())
        return b"".join(parts)

    async def lines(self) -> AsyncIterator[bytes]:
        pending = b""
        while raw := await self._next(1 << 16):
            chunk = self._decode(raw)
            pending += chunk
            if b"\n" in chunk:
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line + b"\n"
            if len(pending) > LINE_LIMIT:
                raise ConnectionBroken(f"a stream line longer than {LINE_LIMIT} bytes")
        if pending := pending + self._rest():
            yield pending

    async def drain(self) -> None:
        while await self._next(1 << 20):
            pass


class Http1Transport:
    """Pooled HTTP/1.1 connections for one provider (see the module's text). Timeouts: `connect` bounds
    opening a connection (TLS included); `read` bounds the wait for the answer's head and any silence
    mid-body; `total` bounds the whole exchange."""

    def __init__(self, *, connect: float, read: float, total: float, limit: int = 256,
                 tls: ssl.SSLContext | None = None) -> None:
        self.connect_timeout, self.read_timeout, self.total = connect, read, total
        self._tls = tls  # None: the system's trust store
        self._idle: dict[_Key, list[_Conn]] = {}
        self._slots = asyncio.Semaphore(limit)  # exchanges in flight at most (so connections open at most)
        self._targets: dict[str, tuple[_Key, bytes]] = {}

    def _target(self, url: str) -> tuple[_Key, bytes]:
        """The pool key and the request line's target, parsed once per address (a provider has a handful)."""
        hit = self._targets.get(url)
        if hit is None:
            if len(self._targets) >= 1024:  # addresses that vary per request must not grow this without bound
                self._targets.clear()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportError(f"cannot send to {parts.scheme or 'a schemeless'} address; use http or https")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            default = port == (443 if parts.scheme == "https" else 80)
            host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            # Non-ASCII in the address is sent percent-encoded; what is already encoded stays as it is.
            target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
            line = f" {target} HTTP/1.1\r\nHost: {host if default else f'{host}:{port}'}\r\n".encode("ascii")
            hit = self._targets[url] = ((parts.scheme, parts.hostname, port), line)
        return hit

    async def _open(self, key: _Key) -> _Conn:
        scheme, host, port = key
        try:
            async with asyncio.timeout(self.connect_timeout):
                tls = (self._tls or _tls_context()) if scheme == "https" else None
                _, conn = await asyncio.get_running_loop().create_connection(lambda: _Conn(key), host, port, ssl=tls)
        except TimeoutError:
            raise TransportTimeout(f"connecting to {host}:{port} took over {self.connect_timeout:g} s") from None
        except OSError as e:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise ConnectFailed(f"cannot connect to {host}:{port}: {e}", str(e)) from e
        return conn

    def _pooled(self, key: _Key) -> _Conn | None:
        idle, now = self._idle.get(key), time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _exchange(self, method: bytes, url: str, body: bytes | None, headers: Mapping[str, str]) -> Http1Reply:
        key, line = self._target(url)
        head = [method, line]
        for k, v in headers.items():
            if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                raise TransportError(f"the header {k!r} holds a line break")  # never split a request in two
            try:
                head.append(f"{k}: {v}\r\n".encode("latin-1"))
            except UnicodeEncodeError:
                raise TransportError(f"the header {k!r} holds characters HTTP headers cannot carry") from None
        given = {k.lower() for k in headers}
        head.extend(v for k, v in _DEFAULT_HEADERS if k not in given)
        if body is not None:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        data = b"".join(head) + (body or b"")
        deadline = time.monotonic() + self.total
        conn = self._pooled(key)
        for attempt in (0, 1):
            if conn is None:
                conn = await self._open(key)
            try:
                return await self._send(conn, data, method == b"HEAD", deadline)
            except _Stale:
                conn.close()
                conn = None
                if attempt:
                    raise ConnectionBroken("the server closed the connection without answering") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def _send(self, conn: _Conn, data: bytes, head_request: bool, deadline: float) -> Http1Reply:
        timeout = min(self.read_timeout, max(deadline - time.monotonic(), 0.0))
        try:
            if conn.transport is None or conn.ended:
                raise Closed(b"", None)
            conn.transport.write(data)
            while True:
                status, reason, headers = _parse_head(await conn.until(b"\r\n\r\n", timeout))
                if not 100 <= status < 200 or status == 101:
                    break
        except Closed as e:
            if conn.reused and not e.partial:
                raise _Stale() from None
            raise ConnectionBroken(f"the server closed the connection before answering in full ({e})") from None
        except TimeoutError:
            raise TransportTimeout(f"no answer within {self.read_timeout:g} s") from None
        return Http1Reply(conn, status, reason, headers, deadline, self.read_timeout, head_request)

    def _release(self, reply: Http1Reply) -> None:
        conn = reply._conn
        if reply.done and reply.keep_alive and not conn.ended and not conn.buf:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()  # an answer left unread would be read as the next one's head

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]:
        return _Exchange(self, b"POST", url, body, headers)

    def get(self, url: str, headers: Mapping[str, str]) -> AbstractAsyncContextManager[Response]:
        return _Exchange(self, b"GET", url, None, headers)

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _Exchange:
    """One request's slot and connection, held for the `async with` (a class, not a generator: this runs on every
    proxied request)."""

    __slots__ = ("args", "reply", "transport")

    def __init__(self, transport: Http1Transport, *args: Any) -> None:
        self.transport, self.args = transport, args
        self.reply: Http1Reply | None = None

    async def __aenter__(self) -> Response:
        slots = self.transport._slots
        await slots.acquire()
        try:
            self.reply = await self.transport._exchange(*self.args)
        except BaseException:
            slots.release()
            raise
        return self.reply

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        reply = self.reply
        if reply is not None:
            if kind is not None:
                reply.done = False  # whatever failed, this connection's state is unknown
            self.transport._release(reply)
        self.transport._slots.release()


def _typed(e: Exception) -> TransportError | None:
    if isinstance(e, TimeoutError):
        return TransportTimeout(str(e) or "the answer stalled")
    if isinstance(e, Closed):
        return ConnectionBroken(f"{e} in the middle of the answer")
    if isinstance(e, OSError):
        return ConnectionBroken(str(e) or type(e).__name__)
    return None


def _parse_head(raw: bytes) -> tuple[int, str, CIMultiDictProxy[str]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ConnectionBroken(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ConnectionBroken(f"malformed header line {line[:60]!r}")
        headers.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
    if parts[0] == b"HTTP/1.0" and "keep-alive" not in headers.get("Connection", "").lower():
        headers["Connection"] = "close"  # HTTP/1.0 closes unless it says otherwise
    return int(parts[1]), parts[2].decode("latin-1") if len(parts) > 2 else "", CIMultiDictProxy(headers)
