"""Anthropic's Messages API as a remote provider (`kind: anthropic`), built as a third-party plugin is built.

It reaches hearth only through public names: its config subclasses `hearth.config.RemoteModel`, its
backend subclasses `RemoteBackend`, and `register()` (the `hearth.providers` entry point named
`anthropic` in pyproject.toml) calls `hearth.providers.register_provider` with both. Nothing in hearth names
this module.

Wire format (https://docs.anthropic.com/en/api/messages): system prompts go in `system`, tool results are
`tool_result` blocks of a user turn, tool calls are `tool_use` blocks with a JSON object as `input`, and
`max_tokens` is required. Streams are passed on event by event; a stream that ends before `message_stop`
is a truncation and fails, never ends in silence.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import Field

from hearth.backends.http import RemoteBackend
from hearth.config import RemoteModel
from hearth.core.errors import BadRequest
from hearth.core.types import ChatRequest, Chunk, Finish, FinishReason, Message, TextDelta, ToolCallDelta, Usage

API_VERSION = "2023-06-01"
_STOP: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}
_DATA_URL = re.compile(r"^data:(image/[\w.+-]+);base64,(.*)$", re.S)


class AnthropicModel(RemoteModel):
    kind: Literal["anthropic"]
    base_url: str = Field("https://api.anthropic.com", description="with or without /v1")
    api_key_env: str | None = Field("ANTHROPIC_API_KEY", description="name of the environment variable holding the key")
    version: str = Field(API_VERSION, description="the anthropic-version header")
    default_max_tokens: int = Field(
        4096, ge=1, description="max_tokens for requests that set none (Anthropic requires one)"
    )


class AnthropicBackend(RemoteBackend):
    kind = "anthropic"
    key_header = ("x-api-key", "")
    cfg: AnthropicModel

    def __init__(self, name: str, cfg: AnthropicModel, **kw: Any) -> None:
        super().__init__(name, cfg, **kw)
        self.http.headers.setdefault("anthropic-version", cfg.version)
        self._prefix = "" if self.http.base_url.endswith("/v1") else "/v1"

    def body(self, req: ChatRequest) -> dict[str, Any]:
        s = req.sampling
        system, messages = to_anthropic(req.messages if req.prompt is None else [Message("user", req.prompt)])
        body: dict[str, Any] = {
            "model": self.http.upstream_model, "messages": messages, "stream": req.stream,
            "max_tokens": s.max_tokens or self.cfg.default_max_tokens,
        }
        if system:
            body["system"] = system
        for key in ("temperature", "top_p", "top_k"):
            if (v := getattr(s, key)) is not None:
                body[key] = v
        if s.stop:
            body["stop_sequences"] = s.stop
        if req.tools:
            body["tools"] = [tool_to_anthropic(t) for t in req.tools]
            if (choice := choice_to_anthropic(req.tool_choice, req.parallel_tool_calls)) is not None:
                body["tool_choice"] = choice
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        async with self.http.post(self._prefix + "/messages", self.body(request)) as resp:
            if not request.stream:
                try:
                    data = orjson.loads(await resp.read())
                    blocks = list(data["content"])
                    usage = data.get("usage") or {}
                except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                    raise self.http.fail("sent an invalid message", e) from e
                calls = 0
                for block in blocks:
                    if block.get("type") == "text" and block.get("text"):
                        yield TextDelta(block["text"])
                    elif block.get("type") == "tool_use":
                        args = orjson.dumps(block.get("input") or {}).decode()
                        yield ToolCallDelta(calls, block.get("id"), block.get("name"), args)
                        calls += 1
                yield _usage(usage)
                yield Finish(_STOP.get(str(data.get("stop_reason")), "stop"))
                return
            async for chunk in self._events(resp):
                yield chunk

    async def _events(self, resp: Any) -> AsyncIterator[Chunk]:
        calls: dict[int, int] = {}  # content block index -> tool call index
        usage: dict[str, Any] = {}
        reason: FinishReason | None = None
        async for raw in resp.lines():
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue  # `event:` lines repeat the data's type; blank separators
            try:
                event = orjson.loads(line[5:])
                kind = event["type"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                raise self.http.fail("sent broken stream data", repr(line[:200])) from e
            if kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(delta["text"])
                elif delta.get("type") == "input_json_delta" and event.get("index") in calls:
                    yield ToolCallDelta(calls[event["index"]], arguments=delta.get("partial_json") or "")
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "tool_use":
                    calls[event.get("index", 0)] = n = len(calls)
                    yield ToolCallDelta(n, block.get("id"), block.get("name"), "")
            elif kind == "message_start":
                usage.update((event.get("message") or {}).get("usage") or {})
            elif kind == "message_delta":
                usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                if stop := (event.get("delta") or {}).get("stop_reason"):
                    reason = _STOP.get(stop, "stop")
            elif kind == "message_stop":
                yield _usage(usage)
                yield Finish(reason or "stop")
                await resp.drain()
                return
            elif kind == "error":
                err = event.get("error") or {}
                raise self.http.fail("failed mid-stream", err.get("message") or err)
        raise self.http.fail("ended the stream before it finished")

    async def list_models(self) -> list[str]:
        data = await self.http.get_json(self._prefix + "/models")
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """hearth's messages as Anthropic's: the system text apart, tool results as blocks of a user turn, and
    consecutive turns of one role merged (Anthropic requires user and assistant to alternate)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            system.append(m.content)
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            blocks.append({"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content})
        else:
            blocks.extend(_image(url) for url in m.images or ())
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            for c in m.tool_calls or ():
                blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)})
        if not blocks:
            continue  # an empty turn (a cut answer): Anthropic refuses empty content
        role = "assistant" if m.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise BadRequest(f"tool call arguments are not JSON: {text[:100]!r}", param="messages") from None
    return value if isinstance(value, dict) else {"value": value}


def _image(url: str) -> dict[str, Any]:
    if m := _DATA_URL.match(url):
        return {"type": "image", "source": {"type": "base64", "media_type": m.group(1), "data": m.group(2)}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": url}}


def tool_to_anthropic(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out = {"name": fn.get("name", ""), "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def choice_to_anthropic(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None or choice == "auto":
        out = {"type": "auto"} if parallel is False else None
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name", "")}
    else:
        out = None
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _usage(u: dict[str, Any]) -> Usage:
    cached = u.get("cache_read_input_tokens")
    prompt = int(u.get("input_tokens") or 0) + int(cached or 0) + int(u.get("cache_creation_input_tokens") or 0)
    return Usage(prompt, int(u.get("output_tokens") or 0), cached_tokens=cached)


def _factory(name: str, cfg: AnthropicModel, services: Any) -> Any:
    from hearth.providers import Made

    return Made(chat=AnthropicBackend(name, cfg))


def register() -> None:
    """The entry point: `anthropic` entries are read as `AnthropicModel` and served by `AnthropicBackend`."""
    from hearth.providers import register_provider

    register_provider("anthropic", _factory, config=AnthropicModel)
