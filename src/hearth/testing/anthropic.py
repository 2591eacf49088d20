"""A stand-in for Anthropic's Messages API on a real loopback port, for tests of the `anthropic` provider and
of routers that escalate to it (run it with `hearth.testing.server.running(standin.app)`).

It speaks the wire format as Anthropic documents it, not as hearth writes it: `event:` lines before each
`data:`, `ping` events, `message_start` carrying the input tokens and `message_delta` the output tokens,
`tool_use` blocks whose `input` streams as `input_json_delta` fragments, errors as
`{"type": "error", "error": {...}}` with 401 for a wrong `x-api-key` and 529 when overloaded.

It answers by script: a request with tools whose last user text names a tool gets a call of that tool;
otherwise the reply is `reply` (default: "Claude here: " and the last user text). `fail` makes the next
requests fail: "overloaded" (529), "truncate" (a stream cut before `message_stop`), "error_event" (an
`error` event mid-stream).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class AnthropicStandIn:
    key: str = "sk-ant-test"
    reply: str | None = None
    fail: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies received, newest last
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        return app

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if self.fail == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        return None

    async def _models(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        return web.json_response({"data": [{"type": "model", "id": "claude-test", "display_name": "Claude Test"}],
                                  "has_more": False, "first_id": "claude-test", "last_id": "claude-test"})

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        last = body["messages"][-1]
        content = last["content"]
        text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content
                                                                   if b.get("type") == "text")
        blocks: list[dict[str, Any]] = []
        for tool in body.get("tools") or ():
            if last["role"] == "user" and tool["name"] in text:
                blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool["name"],
                               "input": {"city": "Paris"}})
                return blocks
        return [{"type": "text", "text": self.reply if self.reply is not None else f"Claude here: {text}"}]

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await request.json()
        self.requests.append(body)
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        blocks = self._answer(body)
        stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
        usage_in = sum(len(json.dumps(m)) for m in body["messages"]) // 4
        out_tokens = sum(len(json.dumps(b)) for b in blocks) // 4
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            return web.json_response({
                "id": mid, "type": "message", "role": "assistant", "model": body["model"], "content": blocks,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": out_tokens, "cache_read_input_tokens": 0},
            })
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(kind: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())

        started = {"id": mid, "type": "message", "role": "assistant", "model": body["model"], "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}
        await send("message_start", {"message": started})
        await send("ping", {})
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                await send("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                words = block["text"].split(" ")
                for n, word in enumerate(words):
                    piece = word if n == 0 else " " + word
                    await send("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": piece}})
                    await asyncio.sleep(0)
                    if self.fail == "error_event" and n == 1:
                        await send("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                        return resp
                    if self.fail == "truncate" and n == 1:
                        return resp
            else:
                start = {**block, "input": {}}
                await send("content_block_start", {"index": i, "content_block": start})
                args = json.dumps(block["input"])
                for cut in range(0, len(args), 5):  # Anthropic sends the input in small fragments
                    fragment = {"type": "input_json_delta", "partial_json": args[cut : cut + 5]}
                    await send("content_block_delta", {"index": i, "delta": fragment})
            await send("content_block_stop", {"index": i})
        await send("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": out_tokens}})
        await send("message_stop", {})
        return resp


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)
