"""The Anthropic dialect: `POST /v1/messages` and `/v1/messages/count_tokens`, for the `anthropic` SDK and
the coding agents built on it.

A body becomes one `ChatRequest` (system text, `tool_use` blocks as tool calls, `tool_result` blocks as tool
messages), goes through the same stages as chat completions, and the chunks come back as Anthropic's content
blocks: whole in a `message`, or as its SSE events (`message_start`, `content_block_start`, `text_delta` /
`input_json_delta`, `content_block_stop`, `message_delta`, `message_stop`). Errors are in Anthropic's shape
(`{"type": "error", "error": {"type": "invalid_request_error", ...}}`), before and after the stream began.
"""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hearth.api.common import (
    GATEWAY,
    anthropic_error,
    anthropic_error_body,
    as_hearth_error,
    guarded,
    json_response,
    request_options,
    route_headers,
)
from hearth.api.gate import ACCESS, EXCHANGE, Route, add_routes, hold, names_of, open_stream
from hearth.api.options import HearthOptions, options_of
from hearth.api.schemas import MAX_MESSAGES, Stop, _Body, read_parsed
from hearth.core.collect import collect
from hearth.core.errors import BadRequest
from hearth.core.types import ChatRequest, Finish, Message, Sampling, TextDelta, ToolCall, ToolCallDelta, Usage
from hearth.core.work import offload

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


# --- the body -------------------------------------------------------------------------------------


class Block(BaseModel):
    """A content block; which fields it needs depends on its type, checked when it is read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    source: dict[str, Any] | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    is_error: bool | None = None


class AnthropicMessage(_Body):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, and fields of tool types refused below
    name: str = Field(max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class OutputConfig(_Body):
    format: dict[str, Any] | None = None  # {"type": "json_schema", "schema": {...}}: structured output
    effort: str | None = None


class MessagesBody(_Body):
    model: str
    messages: Annotated[list[AnthropicMessage], Field(max_length=MAX_MESSAGES)]
    max_tokens: int = Field(ge=1)
    system: str | list[Block] | None = None
    stop_sequences: Stop | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    # Accepted and not acted on: what they select (a tier, a region, prompt caching, the user) is the provider's
    # business, and hearth's own cache and keys do that job here.
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None
    cache_control: dict[str, Any] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None
    diagnostics: Any = None
    hearth: HearthOptions | None = None


class CountBody(_Body):
    model: str
    messages: Annotated[list[AnthropicMessage], Field(max_length=MAX_MESSAGES)]
    system: str | list[Block] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None


def _response_format(c: OutputConfig | None) -> dict[str, Any] | None:
    fmt = c.format if c is not None else None
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise BadRequest("output_config.format: {\"type\": \"json_schema\", \"schema\": {...}}",
                         param="output_config.format")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}


def _text(content: str | list[Block] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for b in content:
        if b.type != "text":
            raise BadRequest(f"{where}: only text blocks are supported here, not {b.type!r}", param=where)
        parts.append(b.text or "")
    return "\n".join(parts)


def _image(b: Block, where: str) -> str:
    src = b.source or {}
    if src.get("type") == "base64":
        return f"data:{src.get('media_type') or 'image/png'};base64,{src.get('data') or ''}"
    if src.get("type") == "url" and isinstance(src.get("url"), str):
        return str(src["url"])
    raise BadRequest(f"{where}.source: an image needs a base64 or url source", param=where)


def _messages(system: str | list[Block] | None, turns: list[AnthropicMessage]) -> list[Message]:
    out = [Message("system", _text(system, "system"))] if system else []
    for i, m in enumerate(turns):
        if isinstance(m.content, str):
            out.append(Message(m.role, m.content))
            continue
        texts: list[str] = []
        images: list[str] = []
        calls: list[ToolCall] = []
        for j, b in enumerate(m.content):
            where = f"messages.{i}.content.{j}"
            if b.type == "text":
                texts.append(b.text or "")
            elif b.type == "image":
                images.append(_image(b, where))
            elif b.type == "tool_use" and m.role == "assistant":
                if not b.id or not b.name:
                    raise BadRequest(f"{where}: a tool_use block needs an id and a name", param=where)
                calls.append(ToolCall(b.id, b.name, orjson.dumps(b.input if b.input is not None else {}).decode()))
            elif b.type == "tool_result" and m.role == "user":
                result = _text(b.content, f"{where}.content")
                out.append(Message("tool", f"Error: {result}" if b.is_error else result, tool_call_id=b.tool_use_id))
            elif b.type in ("thinking", "redacted_thinking"):
                continue  # an earlier answer's reasoning: not part of what the model reads back
            else:
                raise BadRequest(f"{where}: content block type {b.type!r} is not supported in a {m.role} turn",
                                 param=where)
        if texts or images or calls:
            out.append(Message(m.role, "\n".join(texts), tool_calls=calls or None, images=images or None))
    return out


def _tools(tools: list[AnthropicTool] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.type not in (None, "custom"):
            raise BadRequest(f"tools.{i}: server tool {t.type!r} is not supported; define a client tool with "
                             "input_schema", param=f"tools.{i}")
        fn: dict[str, Any] = {"name": t.name, "parameters": t.input_schema or {"type": "object", "properties": {}}}
        if t.description:
            fn["description"] = t.description
        out.append({"type": "function", "function": fn})
    return out


def _choice(c: ToolChoice | None) -> tuple[Any, bool | None]:
    if c is None:
        return None, None
    parallel = None if c.disable_parallel_tool_use is None else not c.disable_parallel_tool_use
    if c.type == "tool":
        if not c.name:
            raise BadRequest("tool_choice.name: required when type is tool", param="tool_choice.name")
        return {"type": "function", "function": {"name": c.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[c.type], parallel


def _thinking(t: dict[str, Any] | None) -> bool | None:
    if t is None:
        return None
    if t.get("type") not in ("enabled", "disabled", "adaptive"):
        raise BadRequest("thinking.type must be enabled, disabled or adaptive", param="thinking.type")
    return {"enabled": True, "disabled": False}.get(str(t.get("type")))


def chat_request(b: MessagesBody) -> ChatRequest:
    choice, parallel = _choice(b.tool_choice)
    stop = [b.stop_sequences] if isinstance(b.stop_sequences, str) else list(b.stop_sequences or [])
    sampling = Sampling(max_tokens=b.max_tokens, temperature=b.temperature, top_p=b.top_p, top_k=b.top_k, stop=stop)
    return ChatRequest(
        model=b.model, messages=_messages(b.system, b.messages), sampling=sampling, stream=b.stream,
        tools=_tools(b.tools), tool_choice=choice, parallel_tool_calls=parallel, extensions=options_of(b.hearth),
        thinking=_thinking(b.thinking), response_format=_response_format(b.output_config),
    )


# --- the answer -----------------------------------------------------------------------------------


def _input(arguments: str) -> Any:
    """A call's arguments as the object Anthropic's `input` is; text that is not one is kept under `_raw`."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _usage(u: Usage | None) -> dict[str, Any]:
    out = {"input_tokens": u.prompt_tokens if u else 0, "output_tokens": u.completion_tokens if u else 0}
    if u is not None and u.cached_tokens is not None:
        out["cache_read_input_tokens"] = u.cached_tokens
        out["input_tokens"] = max(0, u.prompt_tokens - u.cached_tokens)
    return out


def _stop(reason: str, had_calls: bool) -> str:
    return "tool_use" if had_calls and reason in ("stop", "tool_calls") else _STOP_REASONS.get(reason, "end_turn")


def _call_id(c: ToolCallDelta) -> str:
    return c.id if c.id and c.id.startswith("toolu_") else f"toolu_{(c.id or uuid.uuid4().hex)[-24:]}"


@guarded(anthropic_error)
async def messages(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, MessagesBody)
    req = chat_request(body)
    req.extensions = request_options(request, req.extensions)
    stream = await open_stream(request, "anthropic", req)
    try:
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        if not req.stream:
            answer = await collect(stream)
            content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}] if answer.text else []
            content += [{"type": "tool_use", "id": _call_id(c), "name": c.name or "", "input": _input(c.arguments)}
                        for c in answer.tool_calls]
            out = {
                "id": mid, "type": "message", "role": "assistant", "model": req.model, "content": content,
                "stop_reason": _stop(answer.reason, bool(answer.tool_calls)), "stop_sequence": None,
                "usage": _usage(stream.usage),
            }
            return json_response(out, headers=route_headers(stream))
        return await _sse(request, stream, mid, req.model)
    finally:
        await stream.aclose()


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


async def _sse(request: web.Request, stream: Any, mid: str, model: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       **route_headers(stream)})
    await resp.prepare(request)
    write = resp.write
    message: dict[str, Any] = {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    await write(_event("message_start", {"message": message}))
    block = -1  # the open content block's index
    is_text = False
    calls: dict[int, int] = {}  # tool call index -> block index
    text_pre = b""
    reason = "stop"

    async def start(content_block: dict[str, Any]) -> int:
        if block >= 0:
            await write(_event("content_block_stop", {"index": block}))
        await write(_event("content_block_start", {"index": block + 1, "content_block": content_block}))
        return block + 1

    try:
        async for c in stream:
            if isinstance(c, TextDelta):
                if not is_text:
                    block, is_text = await start({"type": "text", "text": ""}), True
                    text_pre = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                                + str(block).encode() + b',"delta":{"type":"text_delta","text":')
                await write(text_pre + orjson.dumps(c.text) + b"}}\n\n")
            elif isinstance(c, ToolCallDelta):
                if c.index not in calls:
                    block = await start({"type": "tool_use", "id": _call_id(c), "name": c.name or "", "input": {}})
                    calls[c.index], is_text = block, False
                if c.arguments:
                    delta = {"type": "input_json_delta", "partial_json": c.arguments}
                    await write(_event("content_block_delta", {"index": calls[c.index], "delta": delta}))
            elif isinstance(c, Finish):
                reason = c.reason
        # After the stream ended: the usage chunk may come after the finish.
        if block >= 0:
            await write(_event("content_block_stop", {"index": block}))
        end = {"stop_reason": _stop(reason, bool(calls)), "stop_sequence": None}
        await write(_event("message_delta", {"delta": end, "usage": _usage(stream.usage)}))
        await write(_event("message_stop", {}))
    except (ConnectionResetError, ConnectionError):
        return resp
    except Exception as e:
        err = as_hearth_error(e)
        try:
            await write(_event("error", {"error": anthropic_error_body(err)["error"]}))
        except ConnectionError:
            return resp
    await resp.write_eof()
    return resp


@guarded(anthropic_error)
async def count_tokens(request: web.Request) -> web.Response:
    """The prompt's tokens in the model's own vocabulary where the model runs here, else an estimate (about four
    bytes a token, as a provider's tokenizer would count roughly); admitted as a request of the key, unbilled."""
    body = await read_parsed(request, CountBody)
    b = MessagesBody(model=body.model, messages=body.messages, max_tokens=1, system=body.system, tools=body.tools,
                     tool_choice=body.tool_choice, thinking=body.thinking)
    req = chat_request(b)
    gateway, ex = request.app[GATEWAY], request[EXCHANGE]
    names = names_of(gateway.registry, req.model)
    ex.model = req.model
    text = "\n".join(m.content + "".join(c.arguments for c in m.tool_calls or ()) for m in req.messages)
    text += orjson.dumps(req.tools).decode() if req.tools else ""
    size = len(text.encode())
    hold(ex, await request.app[ACCESS].admit_plain(ex.principal, names, size))
    _, backend = gateway.registry.resolve(req)
    engine = backend.local
    if engine is not None and engine.unavailable is None and backend.ready:
        tokens = await offload(functools.partial(engine.count_tokens, text), size=size)
    else:
        tokens = max(1, size // 4)
    return json_response({"input_tokens": tokens + 4 * len(req.messages)})


ROUTES = [
    Route("POST", "/v1/messages", messages, "chat",
          "Anthropic Messages API (stream: Anthropic's server-sent events)", MessagesBody),
    Route("POST", "/v1/messages/count_tokens", count_tokens, "chat",
          "Anthropic token count of a Messages request", CountBody),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
