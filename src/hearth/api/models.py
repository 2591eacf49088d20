"""Ollama's model management: `/api/pull` (NDJSON progress), `/api/delete`, `/api/copy`, `/api/ps`, and the
load and unload requests (`/api/chat` or `/api/generate` with no prompt); hearth's LoRA adapters under
`/admin/adapters`.

Pull, copy and delete change what every client of the gateway can use, so with keys they need the
`admin` scope; listing what is loaded needs a key, as listing models does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from hearth.api.common import GATEWAY, SERVICES, guarded, json_response, ollama_error, openai_error
from hearth.api.gate import ACCESS, EXCHANGE, Route, add_routes, hold, names_of, visible
from hearth.api.schemas import AdapterBody, CopyBody, DeleteBody, PullBody, read_parsed
from hearth.config.keep_alive import parse_keep_alive
from hearth.core.errors import BadRequest, HearthError
from hearth.core.types import ModelInfo
from hearth.lifecycle.adapters import Adapters
from hearth.lifecycle.service import LocalModels

_FOREVER = "2318-02-27T00:00:00Z"  # what Ollama shows for keep_alive < 0


def model_details(info: ModelInfo) -> dict[str, Any]:
    return {
        "parent_model": "", "format": "gguf" if info.kind == "llamacpp" else info.kind,
        "family": info.family, "families": [info.family] if info.family else None,
        "parameter_size": info.parameter_size, "quantization_level": info.quantization,
    }


def tag(name: str, info: ModelInfo) -> dict[str, Any]:
    return {
        "name": name, "model": name, "modified_at": info.extra.get("modified_at") or "2025-01-01T00:00:00Z",
        "size": info.size_bytes, "digest": info.digest, "details": model_details(info),
    }


def _pulled(request: web.Request) -> LocalModels:
    pulled = request.app[SERVICES].pulled
    if pulled is None:
        raise HearthError("model management is not available in this gateway", status=501)
    return pulled


def _name(model: str | None, name: str | None) -> str:
    value = model or name
    if not value:
        raise BadRequest("model: field required", param="model")
    return value


@guarded(ollama_error)
async def pull(request: web.Request) -> web.StreamResponse:
    body = await read_parsed(request, PullBody)
    progress = _pulled(request).pull(_name(body.model, body.name))
    # The lines up to the first transfer are read before answering, so a bad name or a missing repository
    # is an HTTP error (404, 400) rather than a 200 whose stream fails.
    first = [await anext(progress)]
    while first[-1].status == "pulling manifest":
        nxt = await anext(progress, None)
        if nxt is None:
            break
        first.append(nxt)
    if not body.stream:
        async for _ in progress:
            pass
        return json_response({"status": "success"})
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        await resp.write(b"".join(orjson.dumps(p.ollama()) + b"\n" for p in first))
        async for p in progress:
            await resp.write(orjson.dumps(p.ollama()) + b"\n")
    except HearthError as e:  # after the stream started: the last line carries the error, as Ollama's does
        await resp.write(orjson.dumps({"error": e.message}) + b"\n")
    except ConnectionError:
        return resp  # the client left; the pull goes on and a later pull of the name follows it
    await resp.write_eof()
    return resp


@guarded(ollama_error)
async def delete(request: web.Request) -> web.Response:
    body = await read_parsed(request, DeleteBody)
    await _pulled(request).remove(_name(body.model, body.name))
    return web.Response(status=200)


@guarded(ollama_error)
async def copy(request: web.Request) -> web.Response:
    body = await read_parsed(request, CopyBody)
    await _pulled(request).copy(body.source, body.destination)
    return web.Response(status=200)


async def ps(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    reg = request.app[GATEWAY].registry
    await services.refresh()
    residency = services.residency
    models: list[dict[str, Any]] = []
    for loaded in residency.listing() if residency is not None else []:
        if not visible(request, [loaded.name]) or loaded.name not in reg.chat:
            continue
        info = reg.info(loaded.name)
        expires = _FOREVER if loaded.expires_at is None else _iso(loaded.expires_at)
        entry = {**tag(loaded.name, info), "size": loaded.size, "size_vram": 0, "expires_at": expires,
                 "context_length": info.context_length, "state": loaded.state}
        engine = reg.chat[loaded.name].local
        if engine is not None:  # hearth's own: what this machine's engine holds (engine/costs.py)
            figures = engine.stats()
            entry["voice_devices"] = int(figures.get("voice_devices", 0))
            entry["voice_devices_measured_width"] = int(figures.get("voice_devices_measured_width", 0))
            entry["decode_step_ms"] = round(float(figures.get("decode_step_ms", 0.0)), 1)
        models.append(entry)
    for name in reg.served_names():  # a model this machine cannot run is listed with the reason, never silently
        why = reg.unavailable(name)
        if why and visible(request, [name]) and name in reg.chat:
            info = reg.info(name)
            models.append({**tag(name, info), "size": 0, "size_vram": 0, "expires_at": _FOREVER,
                           "context_length": info.context_length, "state": "unavailable", "reason": why})
    return json_response({"models": models})


async def load_or_unload(request: web.Request, model: str, keep_alive: object, key: str) -> web.Response:
    """A chat or generate request with nothing to answer: Ollama loads the model, or unloads it with
    keep_alive 0; `key` is where the empty answer goes ("message" or "response")."""
    keep = parse_keep_alive(keep_alive)
    registry = request.app[GATEWAY].registry
    access, ex = request.app[ACCESS], request[EXCHANGE]
    access.check_keep_alive(ex.principal, keep)
    hold(ex, await access.admit_plain(ex.principal, names_of(registry, model)))  # counts toward rpm and parallel
    name = registry.canonical(model)
    residency = request.app[SERVICES].residency
    reason = "load"
    if residency is not None and residency.manages(name):
        if keep == 0:
            await residency.unload(name)
            reason = "unload"
        else:
            await residency.load(name, keep)
    empty: Any = {"role": "assistant", "content": ""} if key == "message" else ""
    return json_response({"model": model, "created_at": _iso(None), key: empty, "done": True, "done_reason": reason})


def _iso(ts: float | None) -> str:
    t = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return t.isoformat().replace("+00:00", "Z")


def _adapter_json(e: Any) -> dict[str, Any]:
    return {"name": e.name, "model": f"{e.base}+{e.name}", "base": e.base, "scale": e.scale, "digest": e.digest,
            "aliases": list(e.aliases), "configured": e.configured}


def _adapters(request: web.Request) -> Adapters:
    adapters = request.app[SERVICES].adapters
    if adapters is None:
        raise HearthError("adapters are not available in this gateway", status=501)
    return adapters


@guarded(openai_error)
async def add_adapter(request: web.Request) -> web.Response:
    body = await read_parsed(request, AdapterBody)
    adapters = _adapters(request)
    path = Path(body.path).expanduser()
    if not path.is_file():
        raise BadRequest(f"path: no file {body.path} on the gateway's machine", param="path")
    entry = await adapters.add(body.name, path, body.base, body.scale)
    return json_response(_adapter_json(entry), status=201)


async def list_adapters(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    await services.refresh()
    entries = services.adapters.entries.values() if services.adapters is not None else []
    return json_response({"adapters": [_adapter_json(e) for e in entries]})


@guarded(openai_error)
async def remove_adapter(request: web.Request) -> web.Response:
    await _adapters(request).remove(request.match_info["name"])
    return json_response({"deleted": request.match_info["name"]})


ROUTES = [
    Route("POST", "/api/pull", pull, "admin",
          "Pull a GGUF model from the Hugging Face Hub (stream: NDJSON progress)", PullBody, "application/x-ndjson"),
    Route("DELETE", "/api/delete", delete, "admin", "Remove a pulled model", DeleteBody),
    Route("POST", "/api/copy", copy, "admin", "Serve a pulled model under a second name", CopyBody),
    Route("GET", "/api/ps", ps, "key", "Ollama loaded models"),
    Route("POST", "/admin/adapters", add_adapter, "admin",
          "Serve a LoRA adapter (GGUF) on a local model as <base>+<name>", AdapterBody),
    Route("GET", "/admin/adapters", list_adapters, "admin", "LoRA adapters served"),
    Route("DELETE", "/admin/adapters/{name}", remove_adapter, "admin", "Stop serving a LoRA adapter"),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
