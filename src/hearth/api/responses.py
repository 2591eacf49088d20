"""The OpenAI Responses dialect: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`,
`GET /v1/responses/{id}/input_items`, for newer `openai` code and the OpenAI Agents SDK.

A body becomes one `ChatRequest` (instructions first, then the stored conversation of
`previous_response_id`, then the input items) and goes through the same stages as chat completions. The
answer comes back as output items (a `message` with `output_text`, `function_call`s), whole or as the
documented event sequence: `response.created`, `response.in_progress`, per item `output_item.added`,
(`content_part.added`, `output_text.delta`..., `output_text.done`, `content_part.done`) or
(`function_call_arguments.delta`..., `.done`), `output_item.done`, then `response.completed`
(`response.incomplete` when max_output_tokens cut it; `error` and `response.failed` when it failed).

With `store` (the default, as OpenAI's) the response and the conversation that led to it are kept for the
key that made it (`response_store.py`), so a follow-up sends only its new input.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from hearth.api.common import as_hearth_error, guarded, json_response, openai_error, request_options, route_headers
from hearth.api.gate import EXCHANGE, Route, add_routes, open_stream
from hearth.api.options import options_of
from hearth.api.response_store import ResponseStore
from hearth.api.responses_items import (
    ResponsesBody,
    chat_tool_choice,
    chat_tools,
    dump_messages,
    load_messages,
    response_format,
    to_messages,
)
from hearth.api.schemas import read_parsed
from hearth.core.collect import collect
from hearth.core.errors import BadRequest, HearthError
from hearth.core.pipeline import Stream
from hearth.core.types import ChatRequest, Finish, Message, Sampling, TextDelta, ToolCall, ToolCallDelta, Usage

log = logging.getLogger("hearth")
STORE: web.AppKey[ResponseStore] = web.AppKey("responses", ResponseStore)
MAX_STORED: web.AppKey[int] = web.AppKey("responses_max_stored", int)


def _owner(request: web.Request) -> str:
    p = request[EXCHANGE].principal
    return f"key:{p.key.id}" if p.key is not None else p.name


def _store(request: web.Request) -> ResponseStore:
    store = request.app.get(STORE)
    if store is None:
        raise BadRequest("responses are not stored on this gateway (responses.store: off)", param="store")
    return store


def _not_found(rid: str) -> HearthError:
    return HearthError(f"response {rid!r} not found", status=404, code="not_found", param="response_id")


def _usage(u: Usage | None) -> dict[str, Any]:
    p, c = (u.prompt_tokens, u.completion_tokens) if u else (0, 0)
    return {"input_tokens": p, "input_tokens_details": {"cached_tokens": (u.cached_tokens or 0) if u else 0},
            "output_tokens": c, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": p + c}


class Turn:
    """One response being made: its request, the skeleton every event repeats, and its output items."""

    def __init__(self, body: ResponsesBody, req: ChatRequest, asked: list[Message]) -> None:
        self.body, self.req = body, req
        self.asked = asked  # the stored turns and this input, without the instructions
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.output: list[dict[str, Any]] = []

    def response(self, status: str, usage: Usage | None = None, error: HearthError | None = None) -> dict[str, Any]:
        b = self.body
        fmt = (b.text.format if b.text and b.text.format else None) or {"type": "text"}
        out: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "background": False,
            "error": {"code": error.code or error.type, "message": error.message} if error else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": b.instructions, "max_output_tokens": b.max_output_tokens, "model": b.model,
            "output": self.output, "parallel_tool_calls": b.parallel_tool_calls is not False,
            "previous_response_id": b.previous_response_id, "reasoning": {"effort": None, "summary": None},
            "store": b.store, "temperature": b.temperature, "text": {"format": fmt}, "top_p": b.top_p,
            "tool_choice": b.tool_choice or "auto", "truncation": b.truncation or "disabled",
            "tools": [t.model_dump(exclude_none=True) for t in b.tools or ()], "user": b.user,
            "metadata": b.metadata or {},
        }
        if status in ("completed", "incomplete"):
            out["usage"] = _usage(usage)
        return out

    def message_item(self, text: str, status: str, at: int = 0) -> dict[str, Any]:
        """The message at output index `at` (its id is unique per index: text may follow a call)."""
        return {"type": "message", "id": f"msg_{self.id[5:]}_{at}", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text or
                status == "completed" else []}

    def call_item(self, c: ToolCallDelta, status: str) -> dict[str, Any]:
        return {"type": "function_call", "id": f"fc_{self.id[5:21]}_{c.index}", "call_id": c.id or "",
                "name": c.name or "", "arguments": c.arguments, "status": status}

    def conversation(self) -> list[dict[str, Any]]:
        """What a follow-up reads: the earlier turns, this input and this answer (never the instructions,
        which OpenAI does not carry over either)."""
        text = "".join(p["text"] for it in self.output if it["type"] == "message" for p in it["content"])
        calls = [ToolCall(it["call_id"], it["name"], it["arguments"]) for it in self.output
                 if it["type"] == "function_call"]
        return dump_messages([*self.asked, Message("assistant", text, tool_calls=calls or None)])

    async def save(self, request: web.Request, final: dict[str, Any]) -> dict[str, Any]:
        """Keep the response for its key; a store that fails leaves the answer as it is, marked `store: false`."""
        if not self.body.store:
            return final
        if STORE not in request.app:  # responses.store: off; the answer says it was not kept
            final["store"] = False
            return final
        record = {"response": final, "history": self.conversation(),
                  "input": self.body.input if isinstance(self.body.input, str) else
                  [i.model_dump(exclude_none=True) for i in self.body.input]}
        try:
            await request.app[STORE].put(_owner(request), self.id, record)
        except HearthError as e:
            log.error("response %s was not stored: %s", self.id, e.message)
            final["store"] = False
        return final


async def _turn(request: web.Request, body: ResponsesBody) -> Turn:
    body.refuse_unsupported()
    history: list[Message] = []
    if body.previous_response_id:
        record = await _store(request).get(_owner(request), body.previous_response_id)
        if record is None:
            raise _not_found(body.previous_response_id)
        history = load_messages(record["history"])
    asked = [*history, *to_messages(body.input)]
    messages = [Message("system", body.instructions), *asked] if body.instructions else asked
    if body.store and STORE in request.app:
        size = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls or ()) + sum(map(len, m.images or ()))
                   for m in asked)
        if size > request.app[MAX_STORED]:
            raise BadRequest(f"the conversation ({size} characters) is longer than a stored response may be "
                             f"({request.app[MAX_STORED]}); start a new one or send store: false",
                             param="previous_response_id")
    req = ChatRequest(
        model=body.model, messages=messages, stream=body.stream,
        sampling=Sampling(max_tokens=body.max_output_tokens, temperature=body.temperature, top_p=body.top_p),
        tools=chat_tools(body.tools), tool_choice=chat_tool_choice(body.tool_choice),
        response_format=response_format(body.text), parallel_tool_calls=body.parallel_tool_calls,
        extensions=request_options(request, options_of(body.hearth)),
    )
    return Turn(body, req, asked)


@guarded(openai_error)
async def create(request: web.Request) -> web.StreamResponse:
    turn = await _turn(request, await read_parsed(request, ResponsesBody))
    stream = await open_stream(request, "responses", turn.req)
    try:
        if turn.req.stream:
            return await _sse(request, turn, stream)
        answer = await collect(stream)
        if answer.text:
            turn.output.append(turn.message_item(answer.text, "completed"))
        for c in answer.tool_calls:
            c.id = c.id or f"call_{uuid.uuid4().hex[:24]}"
            turn.output.append(turn.call_item(c, "completed"))
        status = "incomplete" if answer.reason == "length" else "completed"
        final = await turn.save(request, turn.response(status, stream.usage))
        return json_response(final, headers=route_headers(stream))
    finally:
        await stream.aclose()


class _Events:
    """Writes one response's events, numbering them (`sequence_number`) as the API does."""

    def __init__(self, resp: web.StreamResponse) -> None:
        self.resp = resp
        self.seq = 0

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        data = {"type": kind, "sequence_number": self.seq - 1, **data}
        await self.resp.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    async def text(self, pre: bytes, delta: str) -> None:
        """An output_text.delta from its pre-serialised head: one orjson call per token."""
        self.seq += 1
        await self.resp.write(pre + orjson.dumps(delta) + b',"logprobs":[],"sequence_number":'
                              + str(self.seq - 1).encode() + b"}\n\n")


async def _sse(request: web.Request, turn: Turn, stream: Stream) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       **route_headers(stream)})
    await resp.prepare(request)
    ev = _Events(resp)
    await ev.send("response.created", {"response": turn.response("in_progress")})
    await ev.send("response.in_progress", {"response": turn.response("in_progress")})
    parts: list[str] = []  # the open message's text
    calls: dict[int, tuple[ToolCallDelta, int]] = {}  # call index -> the call so far and its output index
    open_call: int | None = None  # the call whose item is open
    text_pre = b""  # the open message's delta head; empty when no message is open
    reason = "stop"

    async def close_open() -> None:
        nonlocal parts, open_call, text_pre
        if text_pre:
            i, text = len(turn.output) - 1, "".join(parts)
            item = turn.message_item(text, "completed", i)
            at = {"item_id": item["id"], "output_index": i, "content_index": 0}
            await ev.send("response.output_text.done", {**at, "text": text, "logprobs": []})
            await ev.send("response.content_part.done", {**at, "part": item["content"][0]})
            await ev.send("response.output_item.done", {"output_index": i, "item": item})
            turn.output[i], parts, text_pre = item, [], b""
        elif open_call is not None:
            call, i = calls[open_call]
            item = turn.call_item(call, "completed")
            await ev.send("response.function_call_arguments.done", {"item_id": item["id"], "output_index": i,
                                                                    "name": item["name"], "arguments": call.arguments})
            await ev.send("response.output_item.done", {"output_index": i, "item": item})
            turn.output[i], open_call = item, None

    try:
        async for c in stream:
            if isinstance(c, TextDelta):
                if not text_pre:
                    await close_open()
                    i = len(turn.output)
                    item = turn.message_item("", "in_progress", i)
                    turn.output.append(item)
                    at = {"item_id": item["id"], "output_index": i, "content_index": 0}
                    await ev.send("response.output_item.added", {"output_index": i, "item": item})
                    await ev.send("response.content_part.added", {**at, "part": {"type": "output_text", "text": "",
                                                                                 "annotations": [], "logprobs": []}})
                    text_pre = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                                + orjson.dumps(at)[1:-1] + b',"delta":')
                parts.append(c.text)
                await ev.text(text_pre, c.text)
            elif isinstance(c, ToolCallDelta):
                if c.index not in calls:
                    await close_open()
                    call = ToolCallDelta(c.index, c.id or f"call_{uuid.uuid4().hex[:24]}", c.name, "")
                    calls[c.index], open_call = (call, len(turn.output)), c.index
                    turn.output.append(turn.call_item(call, "in_progress"))
                    await ev.send("response.output_item.added", {"output_index": len(turn.output) - 1,
                                                                 "item": turn.output[-1]})
                call, i = calls[c.index]
                call.name = call.name or c.name
                if c.arguments:
                    call.arguments += c.arguments
                    await ev.send("response.function_call_arguments.delta", {
                        "item_id": turn.output[i]["id"], "output_index": i, "delta": c.arguments})
            elif isinstance(c, Finish):
                reason = c.reason
        await close_open()
        status = "incomplete" if reason == "length" else "completed"
        final = await turn.save(request, turn.response(status, stream.usage))
        await ev.send(f"response.{status}", {"response": final})
    except (ConnectionResetError, ConnectionError):
        return resp
    except Exception as e:
        err = as_hearth_error(e)
        try:
            await ev.send("error", {"code": err.code or err.type, "message": err.message, "param": err.param})
            await ev.send("response.failed", {"response": turn.response("failed", error=err)})
        except ConnectionError:
            return resp
    await resp.write_eof()
    return resp


@guarded(openai_error)
async def retrieve(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    record = await _store(request).get(_owner(request), rid)
    if record is None:
        raise _not_found(rid)
    return json_response(record["response"])


@guarded(openai_error)
async def input_items(request: web.Request) -> web.Response:
    """The items this response was asked with (newest first unless `order=asc`, as OpenAI lists them)."""
    rid = request.match_info["response_id"]
    record = await _store(request).get(_owner(request), rid)
    if record is None:
        raise _not_found(rid)
    raw = record["input"]
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}] \
        if isinstance(raw, str) else list(raw)
    items = [{"id": it.get("id") or f"item_{rid[5:21]}_{n}", **it} for n, it in enumerate(items)]
    if request.query.get("order", "desc") != "asc":
        items.reverse()
    return json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                          "last_id": items[-1]["id"] if items else None, "has_more": False})


@guarded(openai_error)
async def delete(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    if not await _store(request).delete(_owner(request), rid):
        raise _not_found(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})


ROUTES = [
    Route("POST", "/v1/responses", create, "chat",
          "OpenAI Responses API (stream: typed server-sent events)", ResponsesBody),
    Route("GET", "/v1/responses/{response_id}", retrieve, "chat", "A stored response of this key"),
    Route("GET", "/v1/responses/{response_id}/input_items", input_items, "chat", "A stored response's input items"),
    Route("DELETE", "/v1/responses/{response_id}", delete, "chat", "Delete a stored response"),
]


def setup(app: web.Application, store: ResponseStore | None, max_stored: int) -> None:
    if store is not None:
        app[STORE] = store

        async def close(_: web.Application) -> None:
            await store.close()

        app.on_cleanup.append(close)
    app[MAX_STORED] = max_stored
    add_routes(app, ROUTES)

