"""The OpenAI dialect: `/v1/chat/completions`, `/v1/completions`, `/v1/models`.

Stream events are assembled from pre-serialised byte templates, so a token costs one `orjson.dumps`
of its text and one socket write, not a dict build and a full serialisation.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from hearth.api.common import (
    GATEWAY,
    SERVICES,
    as_hearth_error,
    guarded,
    json_response,
    openai_error,
    request_options,
    route_headers,
)
from hearth.api.gate import Route, add_routes, open_stream, visible
from hearth.api.options import options_of
from hearth.api.schemas import ChatCompletionBody, CompletionBody, OpenAIMessage, _OpenAISampling, read_parsed
from hearth.core.collect import collect
from hearth.core.errors import BadRequest, ModelNotFound
from hearth.core.pipeline import Stream
from hearth.core.types import (
    ChatRequest,
    Finish,
    Message,
    Sampling,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

_DONE = b"data: [DONE]\n\n"


render_error = openai_error


def _error_event(e: BaseException) -> bytes:
    h = as_hearth_error(e)
    err = {"message": h.message, "type": h.type, "param": h.param, "code": h.code}
    return b"data: " + orjson.dumps({"error": err}) + b"\n\n"


def _sampling(b: _OpenAISampling, max_tokens: int | None) -> Sampling:
    if b.n is not None and b.n > 1:
        raise BadRequest("n: only n=1 is supported", param="n")
    if b.logprobs:
        raise BadRequest("logprobs: not supported", param="logprobs")
    bias: dict[int, float] | None = None
    if b.logit_bias:
        try:
            bias = {int(k): v for k, v in b.logit_bias.items()}
        except ValueError:
            raise BadRequest("logit_bias: keys must be token ids", param="logit_bias") from None
    stop = [b.stop] if isinstance(b.stop, str) else list(b.stop or [])
    return Sampling(
        max_tokens=max_tokens, temperature=b.temperature, top_p=b.top_p, top_k=b.top_k, min_p=b.min_p,
        stop=stop, seed=b.seed, presence_penalty=b.presence_penalty, frequency_penalty=b.frequency_penalty,
        repeat_penalty=b.repeat_penalty, logit_bias=bias,
    )


def _message(m: OpenAIMessage) -> Message:
    images: list[str] | None = None
    if isinstance(m.content, list):
        texts = []
        for part in m.content:
            if part.type == "text":
                texts.append(part.text or "")
            elif part.type == "image_url":
                url = part.image_url.get("url") if isinstance(part.image_url, dict) else part.image_url
                images = [*(images or []), str(url)]
        content = "".join(texts)
    else:
        content = m.content or ""
    calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls] if m.tool_calls else None
    role = "tool" if m.role == "function" else m.role
    return Message(role, content, name=m.name, tool_calls=calls, tool_call_id=m.tool_call_id, images=images)


def chat_request(b: ChatCompletionBody) -> ChatRequest:
    fields, thinking = provider_fields(b)
    return ChatRequest(
        model=b.model, messages=[_message(m) for m in b.messages],
        sampling=_sampling(b, b.max_completion_tokens or b.max_tokens), stream=b.stream,
        tools=b.tools, tool_choice=b.tool_choice, response_format=b.response_format,
        parallel_tool_calls=b.parallel_tool_calls, extensions=options_of(b.hearth), provider_fields=fields,
        thinking=thinking,
    )


def provider_fields(b: ChatCompletionBody) -> tuple[dict[str, Any], bool | None]:
    """The provider extension fields as sent, and the thinking switch they amount to. `enable_thinking`
    (Qwen) wins over `chat_template_kwargs.enable_thinking` (vLLM), which wins over `thinking` (DeepSeek, GLM,
    Moonshot, Doubao: {"type": "enabled" | "disabled" | "auto"})."""
    fields = {k: v for k in ("enable_thinking", "thinking", "chat_template_kwargs") if (v := getattr(b, k)) is not None}
    thinking: bool | None = None
    if isinstance(b.thinking, bool):
        thinking = b.thinking
    elif isinstance(b.thinking, dict):
        kind = b.thinking.get("type")
        if kind not in ("enabled", "disabled", "auto", None):
            raise BadRequest(f"thinking.type must be enabled, disabled or auto, not {kind!r}", param="thinking")
        thinking = {"enabled": True, "disabled": False}.get(str(kind))
    kwargs = b.chat_template_kwargs or {}
    if "enable_thinking" in kwargs:
        if not isinstance(kwargs["enable_thinking"], bool):
            raise BadRequest("chat_template_kwargs.enable_thinking must be a boolean", param="chat_template_kwargs")
        thinking = kwargs["enable_thinking"]
    if b.enable_thinking is not None:
        thinking = b.enable_thinking
    return fields, thinking


def _usage_json(u: Usage | None) -> dict[str, Any]:
    if u is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }
    if u.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": u.cached_tokens}
    return out


def _openai_calls(calls: list[ToolCallDelta]) -> list[dict[str, Any]]:
    return [{"id": c.id or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c.name or "", "arguments": c.arguments}} for c in calls]


def _headers(stream: Stream) -> dict[str, str]:
    return route_headers(stream)


async def _open(request: web.Request, req: ChatRequest) -> Stream:
    return await open_stream(request, "openai", req)


@guarded(render_error)
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, ChatCompletionBody)
    req = chat_request(body)
    req.extensions = request_options(request, req.extensions)
    stream = await _open(request, req)
    try:
        cid = f"chatcmpl-{os.urandom(12).hex()}"
        created = int(time.time())
        if not req.stream:
            answer = await collect(stream)
            text, calls, reason = answer.text, _openai_calls(answer.tool_calls), answer.reason
            msg: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
            if calls:
                msg["tool_calls"] = calls
            out = {
                "id": cid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": reason}],
                "usage": _usage_json(stream.usage), "system_fingerprint": None,
            }
            if stream.sources is not None:
                out["sources"] = stream.sources  # RAG: the passages the answer cites as [1], [2], ...
            return json_response(out, headers=_headers(stream))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        head = orjson.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                             "system_fingerprint": None})[:-1]
        return await _sse(request, stream, head, include_usage, chat=True)
    finally:
        await stream.aclose()


@guarded(render_error)
async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, CompletionBody)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequest("prompt: only a single prompt per request is supported", param="prompt")
        prompt = prompt[0]
    req = ChatRequest(model=body.model, prompt=prompt, sampling=_sampling(body, body.max_tokens or 16),
                      stream=body.stream, extensions=request_options(request, options_of(body.hearth)))
    stream = await _open(request, req)
    try:
        cid = f"cmpl-{os.urandom(12).hex()}"
        created = int(time.time())
        if not req.stream:
            answer = await collect(stream)
            text, reason = answer.text, answer.reason
            if body.echo:
                text = prompt + text
            out = {
                "id": cid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
                "usage": _usage_json(stream.usage),
            }
            if stream.sources is not None:
                out["sources"] = stream.sources
            return json_response(out, headers=_headers(stream))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        head = orjson.dumps({"id": cid, "object": "text_completion", "created": created, "model": req.model})[:-1]
        return await _sse(request, stream, head, include_usage, chat=False, echo=prompt if body.echo else None)
    finally:
        await stream.aclose()


async def _sse(
    request: web.Request,
    stream: Stream,
    head: bytes,
    include_usage: bool,
    *,
    chat: bool,
    echo: str | None = None,
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       **_headers(stream)})
    await resp.prepare(request)
    write = resp.write
    if chat:
        pre = b"data: " + head + b',"choices":[{"index":0,"delta":{"content":'
        post = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        await write(b"data: " + head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                    b'"logprobs":null,"finish_reason":null}]}\n\n')
    else:
        pre = b"data: " + head + b',"choices":[{"index":0,"text":'
        post = b',"logprobs":null,"finish_reason":null}]}\n\n'
        if echo:
            await write(pre + orjson.dumps(echo) + post)
    try:
        async for c in stream:
            if isinstance(c, TextDelta):
                await write(pre + orjson.dumps(c.text) + post)
            elif isinstance(c, ToolCallDelta) and chat:
                fn: dict[str, Any] = {"arguments": c.arguments}
                d: dict[str, Any] = {"index": c.index, "function": fn}
                if c.id:
                    d["id"], d["type"] = c.id, "function"
                if c.name:
                    fn["name"] = c.name
                await write(b"data: " + head + b',"choices":[{"index":0,"delta":{"tool_calls":'
                            + orjson.dumps([d]) + b'},"logprobs":null,"finish_reason":null}]}\n\n')
            elif isinstance(c, Finish):
                reason = orjson.dumps(c.reason)
                if chat:
                    await write(b"data: " + head + b',"choices":[{"index":0,"delta":{},"logprobs":null,'
                                b'"finish_reason":' + reason + b"}]}\n\n")
                else:
                    await write(b"data: " + head + b',"choices":[{"index":0,"text":"","logprobs":null,'
                                b'"finish_reason":' + reason + b"}]}\n\n")
        if include_usage:
            await write(b"data: " + head + b',"choices":[],"usage":' + orjson.dumps(_usage_json(stream.usage))
                        + b"}\n\n")
        if stream.sources is not None:  # RAG: a last chunk with no choices, as usage chunks are
            await write(b"data: " + head + b',"choices":[],"sources":' + orjson.dumps(stream.sources) + b"}\n\n")
        await write(_DONE)
    except (ConnectionResetError, ConnectionError):
        return resp  # the client left; closing the stream (caller's finally) stops generation
    except Exception as e:
        # Failed after the 200 went out: end with an error event, never a silent truncation.
        try:
            await write(_error_event(e))
        except ConnectionError:
            return resp
    await resp.write_eof()
    return resp


def _model_entry(name: str, owned_by: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owned_by}


async def list_models(request: web.Request) -> web.Response:
    await request.app[SERVICES].refresh()
    reg = request.app[GATEWAY].registry
    data = []
    for name in visible(request, reg.names()):
        info = reg.info(name)
        data.append(_model_entry(name, info.owned_by))
    return json_response({"object": "list", "data": data})


@guarded(render_error)
async def get_model(request: web.Request) -> web.Response:
    reg = request.app[GATEWAY].registry
    name = request.match_info["id"]
    if not visible(request, [name]):
        raise ModelNotFound(f"model {name!r} not found")
    info = reg.info(name)
    return json_response(_model_entry(name, info.owned_by))


ROUTES = [
    Route("POST", "/v1/chat/completions", chat_completions, "chat",
          "OpenAI chat completion (stream: server-sent events)", ChatCompletionBody),
    Route("POST", "/v1/completions", completions, "chat", "OpenAI text completion", CompletionBody),
    Route("GET", "/v1/models", list_models, "key", "Models this key may use"),
    Route("GET", "/v1/models/{id:.+}", get_model, "key", "One model"),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
