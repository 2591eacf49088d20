"""The default transport against real sockets in this process: framing (length, chunks, the connection's
end), compression, keep-alive and its stale connections, timeouts, TLS, and what it refuses to send."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from hearth.backends import http1
from hearth.backends.http1 import Http1Transport
from hearth.backends.transport import ConnectFailed, ConnectionBroken, TransportError, TransportTimeout

# Called once per request with the request's head and body; returns the bytes to send back (an HTTP/1.0 or a
# `Connection: close` answer then ends the connection), or None to close the connection without answering. Its `conn` argument counts the connections the server accepted (from 1).
Reply = Callable[[int, bytes, bytes], Awaitable[bytes | None]]


class Server:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = next((int(h[15:]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")), 0)
                body = await reader.readexactly(size)
                self.requests.append(head)
                out = await self.reply(conn, head, body)
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                if out.startswith(b"HTTP/1.0") or b"Connection: close" in out:
                    return  # what such an answer promises
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def serving(reply: Reply, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Server]]:
    s = Server(reply)
    server = await asyncio.start_server(s.handle, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x", s
    finally:
        server.close()


def transport(**kw: Any) -> Http1Transport:
    return Http1Transport(**{"connect": 1.0, "read": 1.0, "total": 5.0, **kw})


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = "".join(h + "\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def fixed(out: bytes | None) -> Reply:
    async def reply(conn: int, head: bytes, body: bytes) -> bytes | None:
        return out

    return reply


async def post(t: Http1Transport, url: str, body: bytes = b"{}", **headers: str) -> tuple[int, bytes]:
    async with t.post(url, body, headers) as resp:
        return resp.status, await resp.read()


def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    async def go() -> None:
        async with serving(fixed(answer(b'{"ok":1}'))) as (url, server):
            t = transport()
            for _ in range(3):
                assert await post(t, url + "?a=1", b'{"q":2}', Authorization="Bearer k") == (200, b'{"ok":1}')
            await t.close()
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("POST /v1/x?a=1 HTTP/1.1\r\n") and f"Host: 127.0.0.1:{url.split(':')[2].split('/')[0]}" in head
        assert "Authorization: Bearer k" in head and "Content-Length: 7" in head and "User-Agent: hearth/" in head

    asyncio.run(go())


def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    async def reply(conn: int, head: bytes, body: bytes) -> bytes | None:
        # The first connection answers once, then closes when the next request arrives on it (its
        # keep-alive expired just then); the second connection answers.
        return answer(b"one") if len(server.requests) == 1 else None if conn == 1 else answer(b"two")

    async def go() -> None:
        nonlocal server
        async with serving(reply) as (url, server):
            t = transport()
            assert await post(t, url) == (200, b"one")
            assert await post(t, url) == (200, b"two")
            await t.close()
        assert server.connections == 2

    server: Server = Server(reply)
    asyncio.run(go())


def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def go() -> None:
        async with serving(fixed(None)) as (url, server):
            with pytest.raises(ConnectionBroken):
                await post(transport(), url)
        assert server.connections == 1, "a POST that may have been acted on is never sent twice"

    asyncio.run(go())


def test_chunks_with_extensions_and_trailers_then_the_connection_is_reused() -> None:
    body = b"4;ext=1\r\ndata\r\n3\r\n: x\r\n0\r\nX-Trailer: t\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def go() -> None:
        async with serving(fixed(head + body)) as (url, server):
            t = transport()
            async with t.post(url, b"{}", {}) as resp:
                assert [line async for line in resp.lines()] == [b"data: x"]
            assert await post(t, url) == (200, b"data: x")
            await t.close()
        assert server.connections == 1

    asyncio.run(go())


def test_sse_lines_split_anywhere_arrive_whole() -> None:
    events = b"data: one\n\ndata: two\n\n"

    async def reply(conn: int, head: bytes, body: bytes) -> bytes | None:
        chunks = b"".join(b"%x\r\n%s\r\n" % (1, events[i : i + 1]) for i in range(len(events)))
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"

    async def go() -> None:
        async with serving(reply) as (url, _), transport().post(url, b"{}", {}) as resp:
            assert [line async for line in resp.lines()] == [b"data: one\n", b"\n", b"data: two\n", b"\n"]

    asyncio.run(go())


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_decoded(encoding: str) -> None:
    text = b'{"choices": []}' * 50
    if encoding == "gzip":
        packed = gzip.compress(text)
    elif encoding == "deflate":
        packed = zlib.compress(text)
    else:
        c = zlib.compressobj(wbits=-15)
        packed, encoding = c.compress(text) + c.flush(), "deflate"

    async def go() -> None:
        async with serving(fixed(answer(packed, f"Content-Encoding: {encoding}"))) as (url, server):
            assert await post(transport(), url) == (200, text)
        assert b"Accept-Encoding: gzip, deflate" in server.requests[0]

    asyncio.run(go())


def test_http10_and_connection_close_answers_end_with_their_connection() -> None:
    async def go() -> None:
        async with serving(fixed(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")) as (url, server):
            t = transport()
            assert await post(t, url) == (200, b"until the end")
            assert await post(t, url) == (200, b"until the end")
        assert server.connections == 2
        async with serving(fixed(answer(b"x", "Connection: close"))) as (url, server):
            t = transport()
            for _ in range(2):
                assert await post(t, url) == (200, b"x")
        assert server.connections == 2

    asyncio.run(go())


def test_an_answer_left_unread_closes_its_connection_and_204_has_no_body() -> None:
    async def go() -> None:
        async with serving(fixed(answer(b"e" * 100_000, status="500 Oops"))) as (url, server):
            t = transport()
            for _ in range(2):
                async with t.post(url, b"{}", {}) as resp:
                    assert resp.status == 500 and resp.reason == "Oops" and len(await resp.read(10)) == 10
        assert server.connections == 2, "the unread rest would have been read as the next answer"
        async with serving(fixed(b"HTTP/1.1 204 No Content\r\n\r\n")) as (url, server):
            t = transport()
            assert await post(t, url) == (204, b"") and await post(t, url) == (204, b"")
        assert server.connections == 1

    asyncio.run(go())


def test_timeouts_for_the_answer_a_stall_and_the_whole_exchange() -> None:
    async def silent(conn: int, head: bytes, body: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return None

    async def go() -> None:
        async with serving(silent) as (url, _):
            with pytest.raises(TransportTimeout):
                await post(transport(read=0.2), url)

    asyncio.run(go())

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):  # a byte every 50 ms: never silent for the read timeout, slower than the total
            writer.write(b"x")
            await asyncio.sleep(0.05)

    async def slow() -> None:
        server = await asyncio.start_server(trickle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        with pytest.raises(TransportTimeout):
            await post(transport(read=0.5, total=0.6), url)
        server.close()

    asyncio.run(slow())


def test_refused_and_unresolvable_addresses_fail_to_connect() -> None:
    async def go() -> None:
        async with serving(fixed(None)) as (url, _):
            pass
        with pytest.raises(ConnectFailed):
            await post(transport(), url)
        with pytest.raises(ConnectFailed):
            await post(transport(), "http://no-such-host.invalid/v1")

    asyncio.run(go())


def test_what_it_will_not_send() -> None:
    async def go() -> None:
        t = transport()
        with pytest.raises(TransportError, match="line break"):
            await post(t, "http://127.0.0.1:9/v1", **{"X-Injected": "a\r\nHost: evil"})
        with pytest.raises(TransportError, match="http or https"):
            await post(t, "ftp://127.0.0.1/v1")
        with pytest.raises(TransportError, match="cannot carry"):
            await post(t, "http://127.0.0.1:9/v1", **{"X-Name": "模型"})

    asyncio.run(go())


def test_a_stream_line_past_the_limit_is_a_broken_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "LINE_LIMIT", 1000)

    async def go() -> None:
        async with serving(fixed(answer(b"data: " + b"x" * 5000))) as (url, _), transport().post(url, b"{}", {}) as resp:
            with pytest.raises(ConnectionBroken, match="longer than 1000"):
                async for _ in resp.lines():
                    pass

    asyncio.run(go())


def test_tls_is_verified_against_the_trust_store() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def go() -> None:
        async with serving(fixed(answer(b"secure")), tls=server_ctx) as (url, _):
            assert await post(transport(tls=client_ctx), url) == (200, b"secure")
            with pytest.raises(ConnectFailed, match="certificate"):
                await post(transport(), url)  # the system's store does not know this CA

    asyncio.run(go())


def test_a_chunk_longer_than_its_size_is_a_broken_answer_and_addresses_are_percent_encoded() -> None:
    async def go() -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        async with serving(fixed(head + b"2\r\nabcd\r\n0\r\n\r\n")) as (url, server):
            with pytest.raises(ConnectionBroken, match="did not end where its size said"):
                await post(transport(), url + "/模型?q=a%20b")
        assert server.requests[0].startswith(b"POST /v1/x/%E6%A8%A1%E5%9E%8B?q=a%20b HTTP/1.1\r\n")

    asyncio.run(go())
