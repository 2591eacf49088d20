"""The remote backends over `MockTransport`: request building, stream parsing and error mapping, in
milliseconds. A few tests at the end run the real `Http1Transport` against a raw socket in this process,
to check that its failures come out as the same errors the mock plays."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hearth.backends.http1 import Http1Transport
from hearth.backends.ollama import OllamaBackend
from hearth.backends.openai_compat import OpenAICompatBackend
from hearth.backends.transport import ConnectFailed, ConnectionBroken, TransportTimeout
from hearth.config import OllamaModel, OpenAIModel, Timeouts
from hearth.core.errors import BadRequest, ContextLengthExceeded, HearthError, UpstreamError, UpstreamTimeout
from hearth.core.types import ChatRequest, Chunk, Finish, Message, Sampling, TextDelta, ToolCallDelta, Usage
from hearth.testing import MockReply, MockRequest, MockTransport, ollama_ndjson, openai_completion, openai_sse, sse
from hearth.testing.transport import Handler

MSGS = [Message("user", "Say hello.")]
Played = tuple[list[Chunk], HearthError | None]  # the chunks streamed, and the error that ended the stream


def openai(handler: Handler, **cfg: Any) -> tuple[OpenAICompatBackend, MockTransport]:
    t = MockTransport(handler)
    return OpenAICompatBackend("gpt", OpenAIModel(kind="openai", base_url="http://mock/v1", **cfg), transport=t), t


def ollama(handler: Handler, **cfg: Any) -> tuple[OllamaBackend, MockTransport]:
    t = MockTransport(handler)
    return OllamaBackend("llama", OllamaModel(kind="ollama", base_url="http://mock", **cfg), transport=t), t


async def play(backend: OpenAICompatBackend | OllamaBackend, request: ChatRequest) -> Played:
    got: list[Chunk] = []
    try:
        async for c in backend.stream(request):
            got.append(c)
    except HearthError as e:
        return got, e
    finally:
        await backend.close()
    return got, None


def collect(backend: OpenAICompatBackend | OllamaBackend, request: ChatRequest) -> Played:
    return asyncio.run(play(backend, request))


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def fails(backend: OpenAICompatBackend | OllamaBackend, request: ChatRequest) -> HearthError:
    _, err = collect(backend, request)
    assert err is not None
    return err


def chat(stream: bool = True, **kw: Any) -> ChatRequest:
    return ChatRequest(model="gpt", messages=MSGS, stream=stream, **kw)


# --- OpenAI-compatible -------------------------------------------------------------------------------


def test_openai_stream_text_tool_calls_usage_and_finish() -> None:
    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

    body = sse(
        delta({"role": "assistant", "content": "Hel"}), delta({"content": "lo"}),
        delta({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        delta({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7,
                                  "prompt_tokens_details": {"cached_tokens": 4}}},
        "[DONE]",
    )
    b, _ = openai(lambda r: MockReply(body=body))
    chunks, err = collect(b, chat())
    assert err is None
    assert chunks == [
        TextDelta("Hel"), TextDelta("lo"),
        ToolCallDelta(0, "call_1", "get_weather", ""), ToolCallDelta(0, None, None, '{"city":'),
        ToolCallDelta(0, None, None, '"Paris"}'),
        Usage(11, 7, cached_tokens=4), Finish("tool_calls"),
    ]


def test_openai_stream_lines_split_anywhere_across_chunks() -> None:
    whole = b"".join(openai_sse(["Hel", "lo"], usage=(3, 2)).body)  # type: ignore[arg-type]
    pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    b, _ = openai(lambda r: MockReply(body=pieces))
    chunks, err = collect(b, chat())
    assert err is None and text(chunks) == "Hello" and chunks[-2:] == [Usage(3, 2), Finish("stop")]


def test_openai_non_streaming() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    b, _ = openai(lambda r: openai_completion("Hello", finish="length", usage=(5, 1), tool_calls=[call]))
    chunks, err = collect(b, chat(stream=False))
    assert err is None
    assert chunks == [TextDelta("Hello"), ToolCallDelta(0, "c1", "f", "{}"), Usage(5, 1), Finish("length")]


def test_openai_request_sent_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_KEY", "sk-mock")
    b, t = openai(lambda r: openai_sse(["ok"]), model="gpt-upstream", api_key_env="MOCK_KEY",
                  headers={"X-Team": "a"})
    s = Sampling(max_tokens=8, temperature=0.2, top_p=0.9, top_k=40, stop=["\n"], seed=1, logit_bias={5: -1.0})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    collect(b, chat(sampling=s, tools=tools, tool_choice="auto", response_format={"type": "json_object"}))
    # top_k is not an OpenAI parameter, so it is not sent
    (req,) = t.requests
    assert (req.method, req.url, req.path) == ("POST", "http://mock/v1/chat/completions", "/v1/chat/completions")
    assert req.headers["Authorization"] == "Bearer sk-mock" and req.headers["X-Team"] == "a"
    assert req.json == {
        "model": "gpt-upstream", "stream": True, "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8, "temperature": 0.2, "top_p": 0.9, "seed": 1, "stop": ["\n"], "logit_bias": {"5": -1.0},
        "tools": tools, "tool_choice": "auto", "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
    }
    assert t.closed, "closing the backend closes its transport"


def test_openai_embeddings() -> None:
    rows = [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]
    b, t = openai(lambda r: MockReply.json({"data": rows, "usage": {"prompt_tokens": 4}}))
    e = asyncio.run(b.embed(["a", "b"], dimensions=2))
    assert e.vectors.tolist() == [[1.0, 0.0], [0.0, 1.0]] and e.prompt_tokens == 4
    assert t.requests[0].path == "/v1/embeddings" and t.requests[0].json["dimensions"] == 2


# --- Ollama ----------------------------------------------------------------------------------------------


def test_ollama_chat_stream() -> None:
    b, t = ollama(lambda r: ollama_ndjson(["Hel", "lo"], usage=(3, 4)), model="llama3")
    chunks, err = collect(b, chat(sampling=Sampling(max_tokens=8, temperature=0.0, stop=["x"])))
    assert err is None and text(chunks) == "Hello"
    assert chunks[-2:] == [Usage(3, 4, prompt_seconds=0.001, completion_seconds=0.002), Finish("stop")]
    (req,) = t.requests
    assert req.path == "/api/chat"
    assert req.json == {"model": "llama3", "stream": True, "messages": [{"role": "user", "content": "Say hello."}],
                        "options": {"num_predict": 8, "temperature": 0.0, "stop": ["x"]}}


def test_ollama_raw_generate_and_length_finish() -> None:
    b, t = ollama(lambda r: ollama_ndjson(["a", "b"], generate=True, done_reason="length"))
    chunks, err = collect(b, ChatRequest(model="llama", prompt="hi", stream=True))
    assert err is None and text(chunks) == "ab" and chunks[-1] == Finish("length")
    assert t.requests[0].path == "/api/generate"
    assert t.requests[0].json == {"model": "llama", "stream": True, "prompt": "hi", "raw": True}


def test_ollama_stream_without_done_line_is_an_error() -> None:
    b, _ = ollama(lambda r: ollama_ndjson(["Hello", " from"], done=False))
    chunks, err = collect(b, chat())
    assert text(chunks) == "Hello from"
    assert isinstance(err, UpstreamError) and "closed the stream before it finished" in err.message


# --- HTTP error statuses -------------------------------------------------------------------------------


def test_429_keeps_status_and_retry_after() -> None:
    b, _ = openai(lambda r: MockReply.json({"error": {"message": "slow down"}}, 429, {"retry-after": "7"}))
    err = fails(b, chat())
    assert isinstance(err, UpstreamError) and err.status == 429 and err.code == "rate_limited"
    assert err.retry_after == 7.0
    assert err.message == "provider 'gpt' answered 429"


def test_500_names_the_provider_and_logs_its_words(caplog: pytest.LogCaptureFixture) -> None:
    """Tenants see the provider's name and status; its own words (which may echo the key hearth sent) and its
    address go to the operator's log only."""
    body = {"error": {"message": "internal failure for key sk-live-123", "type": "server_error"}}
    b, _ = openai(lambda r: MockReply.json(body, 500))
    with caplog.at_level(logging.WARNING, "hearth.providers"):
        err = fails(b, chat(stream=False))
    assert type(err) is UpstreamError and err.status == 502
    assert err.message == "provider 'gpt' answered 500 (server_error)"
    assert "sk-live-123" in caplog.text and "http://mock/v1" in caplog.text


def test_500_without_body_names_the_status(caplog: pytest.LogCaptureFixture) -> None:
    b, _ = ollama(lambda r: MockReply(503))
    with caplog.at_level(logging.WARNING, "hearth.providers"):
        assert fails(b, chat()).message == "provider 'llama' answered 503"
    assert "Service Unavailable" in caplog.text


def test_401_is_the_gateways_problem() -> None:
    b, _ = openai(lambda r: MockReply.json({"error": {"message": "invalid api key"}}, 401))
    err = fails(b, chat())
    assert type(err) is UpstreamError and err.status == 502 and err.code == "upstream_auth_failed"


def test_400_context_length_and_other_rejections() -> None:
    too_long = {"error": {"message": "too many tokens", "code": "context_length_exceeded"}}
    b, _ = openai(lambda r: MockReply.json(too_long, 400))
    assert isinstance(fails(b, chat()), ContextLengthExceeded)
    b, _ = openai(lambda r: MockReply.json({"error": {"message": "bad tool"}}, 422))
    err = fails(b, chat())
    assert type(err) is BadRequest and err.status == 422 and err.code == "upstream_rejected"


# --- transport failures -----------------------------------------------------------------------------------


def raising(exc: Exception) -> Callable[[MockRequest], MockReply]:
    def handler(request: MockRequest) -> MockReply:
        raise exc

    return handler


def test_connect_failure_and_timeout_name_the_provider_only() -> None:
    refused = ConnectFailed("Cannot connect to host mock:80", "[Errno 111] Connect call failed")
    err = fails(openai(raising(refused))[0], chat())
    assert type(err) is UpstreamError and err.status == 502
    assert err.message == "provider 'gpt' is unreachable"  # the reason (which names the host) is logged only
    err = fails(openai(raising(TransportTimeout("Timeout on reading data from socket")))[0], chat())
    assert type(err) is UpstreamTimeout and err.status == 504
    assert err.message == "provider 'gpt' timed out"
    err = fails(openai(raising(TransportTimeout()))[0], chat())
    assert err.message.endswith("timed out")


def test_stream_broken_midway() -> None:
    reply = openai_sse(["Hello", " from"], finish=None, done=False)
    reply.error = ConnectionBroken("Response payload is not completed")
    b, _ = openai(lambda r: reply)
    chunks, err = collect(b, chat())
    assert text(chunks) == "Hello from"
    assert type(err) is UpstreamError and err.message == "provider 'gpt' broke the connection"


def test_stream_that_ends_without_finishing() -> None:
    b, _ = openai(lambda r: openai_sse(["Hello", " from"], finish=None, done=True))
    chunks, err = collect(b, chat())
    assert text(chunks) == "Hello from"
    assert type(err) is UpstreamError and "ended the stream before it finished" in err.message


def test_async_handler_and_delays() -> None:
    async def handler(request: MockRequest) -> MockReply:
        await asyncio.sleep(0)
        return MockReply(body=openai_sse(["a", "b"]).body, delay=0.01, chunk_delay=0.001)

    chunks, err = collect(openai(handler)[0], chat())
    assert err is None and text(chunks) == "ab"


# --- health -------------------------------------------------------------------------------------------------


def test_check_health_lists_models_and_raises_on_500() -> None:
    b, t = openai(lambda r: MockReply.json({"data": [{"id": "gpt-upstream"}]}))
    assert b.local is None
    asyncio.run(b.check_health())
    assert (t.requests[0].method, t.requests[0].path) == ("GET", "/v1/models")
    b, _ = openai(lambda r: MockReply.json({"error": {"message": "down"}}, 500))
    with pytest.raises(UpstreamError, match="answered 500"):
        asyncio.run(b.check_health())
    o, t = ollama(lambda r: MockReply.json({"models": [{"name": "llama3"}]}))
    asyncio.run(o.check_health())
    assert t.requests[0].path == "/api/tags"


# --- the real transport against a raw socket in this process ---------------------------------------------------

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
HI = sse({"choices": [{"delta": {"content": "Hi"}}]})


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[str]:
    """A socket that reads the request and runs `answer`: a server that misbehaves exactly as told."""
    handlers: set[asyncio.Task[Any]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        head = await reader.readuntil(b"\r\n\r\n")
        sizes = [int(h[15:]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")]
        await reader.readexactly(sizes[0] if sizes else 0)  # unread bytes would make closing the socket a reset
        try:
            await answer(writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        for task in handlers:
            task.cancel()
        server.close()
        await server.wait_closed()


def real(url: str) -> OpenAICompatBackend:
    cfg = OpenAIModel(kind="openai", base_url=url, timeouts=Timeouts(connect=0.5, first_token=0.2, total=2.0))
    return OpenAICompatBackend("gpt", cfg)


def over_socket(answer: Answer) -> Played:
    async def go() -> Played:
        async with serving(answer) as url:
            return await play(real(url), chat())

    return asyncio.run(go())


def trickle(events: list[bytes], then: Callable[[], Awaitable[None]]) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events))
        await writer.drain()
        await then()

    return answer


async def forever() -> None:
    await asyncio.sleep(30)


async def nothing() -> None:
    return None


def test_real_transport_streams_and_drains() -> None:
    events = openai_sse(["Hel", "lo"], usage=(3, 2)).body
    chunks, err = over_socket(trickle([*events, b""], nothing))  # an empty chunk ends a chunked body
    assert err is None and text(chunks) == "Hello" and chunks[-1] == Finish("stop")
    assert isinstance(real("http://mock/v1").http.transport, Http1Transport), "HTTP/1.1 pool unless told otherwise"


def test_real_transport_refused() -> None:
    async def closed_port() -> str:
        async with serving(lambda w: nothing()) as url:
            return url

    url = asyncio.run(closed_port())
    err = fails(real(url), chat())
    assert type(err) is UpstreamError and err.status == 502 and isinstance(err.__cause__, ConnectFailed)
    assert err.message == "provider 'gpt' is unreachable" and url not in err.message


def test_real_transport_no_answer_times_out() -> None:
    _, err = over_socket(lambda w: forever())
    assert type(err) is UpstreamTimeout and err.message.endswith(" timed out")


def test_real_transport_stall_mid_stream_times_out() -> None:
    chunks, err = over_socket(trickle(HI, forever))
    assert text(chunks) == "Hi" and isinstance(err, UpstreamTimeout) and isinstance(err.__cause__, TransportTimeout)
    assert err.message.endswith(" timed out")


def test_real_transport_connection_dropped_mid_stream() -> None:
    chunks, err = over_socket(trickle(HI, nothing))
    assert text(chunks) == "Hi"
    assert type(err) is UpstreamError and "broke the connection" in err.message
