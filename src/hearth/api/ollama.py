"""The Ollama dialect: `/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/version` (model management,
`/api/ps` included, is in models.py).

Ollama streams by default (NDJSON, one object per line) and reports durations in nanoseconds in
its final line; errors are `{"error": "..."}`, also as the last line of a broken stream.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from hearth import __version__
from hearth.api.common import (
    GATEWAY,
    SERVICES,
    as_hearth_error,
    guarded,
    json_response,
    ollama_error,
    request_options,
    route_headers,
)
from hearth.api.gate import Route, add_routes, open_stream, visible
from hearth.api.models import load_or_unload, model_details, tag
from hearth.api.options import options_of
from hearth.api.schemas import (
    OllamaChatBody,
    OllamaGenerateBody,
    OllamaShowBody,
    ollama_options,
    read_parsed,
)
from hearth.config.keep_alive import parse_keep_alive
from hearth.core.collect import Collected, collect
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
)

_NS = 1_000_000_000


render_error = ollama_error


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _sampling(raw_options: dict[str, Any] | None) -> Sampling:
    o = ollama_options(raw_options)
    stop = [o.stop] if isinstance(o.stop, str) else list(o.stop or [])
    # num_predict -1 (forever) and -2 (fill the context) both mean "until the context ends" here.
    max_tokens = o.num_predict if o.num_predict and o.num_predict > 0 else None
    return Sampling(
        max_tokens=max_tokens, temperature=o.temperature, top_p=o.top_p,
        top_k=o.top_k, min_p=o.min_p, stop=stop, seed=o.seed, presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty, repeat_penalty=o.repeat_penalty,
    )


def _format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt, "strict": True}}
    raise BadRequest(f'format: must be "json" or a JSON schema object, got {fmt!r}', param="format")


def _args_text(args: dict[str, Any] | str) -> str:
    if isinstance(args, str):
        return args
    try:
        return orjson.dumps(args).decode()
    except TypeError:  # integers beyond 64 bits, which orjson refuses and JSON allows
        return json.dumps(args, ensure_ascii=False)


def _final_fields(stream: Stream, reason: str) -> dict[str, Any]:
    total = time.perf_counter() - stream.t0
    u = stream.usage
    evaluated = (u.prompt_tokens - (u.cached_tokens or 0)) if u else 0
    out: dict[str, Any] = {
        "done": True, "done_reason": reason, "total_duration": int(total * _NS), "load_duration": 0,
        "prompt_eval_count": evaluated, "prompt_eval_duration": int(((u and u.prompt_seconds) or 0) * _NS),
        "eval_count": u.completion_tokens if u else 0,
        "eval_duration": int(((u and u.completion_seconds) or 0) * _NS),
    }
    if stream.sources is not None:
        out["sources"] = stream.sources  # RAG: the passages the answer cites as [1], [2], ...
    return out


def _done_reason(f: Finish | None) -> str:
    return "length" if f is not None and f.reason == "length" else "stop"


def _tool_calls(calls: list[ToolCallDelta]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        try:
            args = orjson.loads(c.arguments or "{}")
        except orjson.JSONDecodeError:
            args = c.arguments
        out.append({"function": {"name": c.name or "", "arguments": args}})
    return out


@guarded(render_error)
async def chat(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, OllamaChatBody)
    if not body.messages:  # Ollama loads the model (unloads it with keep_alive 0) and answers at once
        return await load_or_unload(request, body.model, body.keep_alive, "message")
    msgs = []
    for m in body.messages:
        calls = None
        if m.tool_calls:
            calls = [
                ToolCall(f"call_{i}", c.function.name, _args_text(c.function.arguments))
                for i, c in enumerate(m.tool_calls)
            ]
        msgs.append(Message(m.role, m.content, images=m.images, tool_calls=calls, name=m.tool_name))
    req = ChatRequest(model=body.model, messages=msgs, sampling=_sampling(body.options), stream=body.stream,
                      tools=body.tools, response_format=_format(body.format), extensions=options_of(body.hearth),
                      keep_alive=parse_keep_alive(body.keep_alive), thinking=_think(body.think))
    return await _respond(request, req, chat=True)


def _think(think: bool | str | None) -> bool | None:
    """Ollama's `think`: a boolean, or a level ("low", "medium", "high") for models that take one (on)."""
    if think is None or isinstance(think, bool):
        return think
    if think not in ("low", "medium", "high"):
        raise BadRequest(f"think must be true, false, low, medium or high, not {think!r}", param="think")
    return True


@guarded(render_error)
async def generate(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, OllamaGenerateBody)
    if not body.prompt and not body.images:
        return await load_or_unload(request, body.model, body.keep_alive, "response")
    if body.template:
        raise BadRequest("template: custom prompt templates are not supported; use raw: true", param="template")
    if body.raw:
        req = ChatRequest(model=body.model, prompt=body.prompt, sampling=_sampling(body.options), stream=body.stream,
                          extensions=options_of(body.hearth))
    else:
        msgs = [Message("system", body.system)] if body.system else []
        msgs.append(Message("user", body.prompt, images=body.images))
        req = ChatRequest(model=body.model, messages=msgs, sampling=_sampling(body.options), stream=body.stream,
                          response_format=_format(body.format), extensions=options_of(body.hearth))
    req.keep_alive = parse_keep_alive(body.keep_alive)
    req.thinking = _think(body.think)
    return await _respond(request, req, chat=False)


async def _respond(request: web.Request, req: ChatRequest, *, chat: bool) -> web.StreamResponse:
    req.extensions = request_options(request, req.extensions)
    stream = await open_stream(request, "ollama", req)
    headers = route_headers(stream)
    try:
        if not req.stream:
            answer = await collect(stream)
            out: dict[str, Any] = {"model": req.model, "created_at": _now()}
            if chat:
                out["message"] = {"role": "assistant", "content": answer.text}
                if answer.tool_calls:
                    out["message"]["tool_calls"] = _tool_calls(answer.tool_calls)
            else:
                out["response"] = answer.text
            out.update(_final_fields(stream, _done_reason(stream.finish)))
            return json_response(out, headers=headers)
        return await _ndjson(request, stream, req, chat, headers)
    finally:
        await stream.aclose()


async def _ndjson(
    request: web.Request, stream: Stream, req: ChatRequest, chat: bool, headers: dict[str, str]
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", **headers})
    await resp.prepare(request)
    write = resp.write
    model = orjson.dumps(req.model)
    created = orjson.dumps(_now())
    if chat:
        pre = b'{"model":' + model + b',"created_at":' + created + b',"message":{"role":"assistant","content":'
        post = b'},"done":false}\n'
    else:
        pre = b'{"model":' + model + b',"created_at":' + created + b',"response":'
        post = b',"done":false}\n'
    calls = Collected()  # Ollama sends tool calls whole, at the end, not as fragments
    try:
        async for c in stream:
            if type(c) is TextDelta:
                await write(pre + orjson.dumps(c.text) + post)
            elif type(c) is ToolCallDelta:
                calls.add(c)
        final: dict[str, Any] = {"model": req.model, "created_at": _now()}
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
            if calls.tool_calls:
                final["message"]["tool_calls"] = _tool_calls(calls.tool_calls)
        else:
            final["response"] = ""
            final["context"] = []
        final.update(_final_fields(stream, _done_reason(stream.finish)))
        await write(orjson.dumps(final) + b"\n")
    except ConnectionError:
        return resp
    except Exception as e:
        msg = as_hearth_error(e).message
        try:
            await write(orjson.dumps({"error": msg}) + b"\n")
        except ConnectionError:
            return resp
    await resp.write_eof()
    return resp


async def tags(request: web.Request) -> web.Response:
    await request.app[SERVICES].refresh()  # a model pulled from the command line or by another replica is listed
    reg = request.app[GATEWAY].registry
    return json_response({"models": [tag(n, reg.info(n)) for n in visible(request, reg.names())]})


@guarded(render_error)
async def show(request: web.Request) -> web.Response:
    body = await read_parsed(request, OllamaShowBody)
    name = body.model or body.name
    if not name:
        raise BadRequest("model: field required", param="model")
    if not visible(request, [name]):
        raise ModelNotFound(f"model {name!r} not found")
    info = request.app[GATEWAY].registry.info(name)
    model_info: dict[str, Any] = {"general.architecture": info.family or info.kind}
    if info.context_length:
        model_info[f"{info.family or info.kind}.context_length"] = info.context_length
    source = info.extra.get("path") or info.extra.get("upstream_model", name)
    return json_response({
        "modelfile": f"# served by hearth ({info.kind})\nFROM {source}\n",
        "parameters": "", "template": info.template, "details": model_details(info), "model_info": model_info,
        "capabilities": ["embedding"] if info.kind == "embedding" else ["completion", "tools"],
        "modified_at": "2025-01-01T00:00:00Z",
    })


async def version(request: web.Request) -> web.Response:
    return json_response({"version": __version__})


ROUTES = [
    Route("POST", "/api/chat", chat, "chat", "Ollama chat (stream: NDJSON)", OllamaChatBody, "application/x-ndjson"),
    Route("POST", "/api/generate", generate, "chat",
          "Ollama generate (stream: NDJSON)", OllamaGenerateBody, "application/x-ndjson"),
    Route("GET", "/api/tags", tags, "key", "Ollama model list"),
    Route("POST", "/api/show", show, "key", "Ollama model details", OllamaShowBody),
    Route("GET", "/api/version", version, "public", "Ollama version"),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
