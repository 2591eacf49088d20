"""Embeddings in both dialects: OpenAI `/v1/embeddings`, Ollama `/api/embed` and `/api/embeddings`.

Both parse into one call, `ModelRegistry.embed(model, texts)`, served by the local embedding model
(micro-batched) or a remote provider's embedding endpoint.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from hearth.api import ollama, openai
from hearth.api.common import GATEWAY, guarded, json_response
from hearth.api.gate import Route, add_routes, admit_embeddings, settle_embeddings
from hearth.api.schemas import EmbeddingsBody, OllamaEmbedBody, OllamaEmbeddingsBody, read_parsed
from hearth.core.errors import BadRequest, HearthError
from hearth.core.types import Embeddings

MAX_INPUTS = 2048  # OpenAI's limit per request


async def _embed(request: web.Request, api: str, model: str, texts: list[str], **kw: Any) -> Embeddings:
    gw = request.app[GATEWAY]
    name = model
    status = "ok"
    ticket = await admit_embeddings(request, model, texts)
    t0 = time.perf_counter()
    try:
        name = gw.registry.canonical(model)
        result = await gw.registry.embed(name, texts, **kw)
        gw.metrics.embedded_texts.inc((name,), len(texts))
        await settle_embeddings(request, ticket, model, name, result.prompt_tokens, time.perf_counter() - t0)
        return result
    except HearthError as e:
        status = e.code or e.type
        raise
    finally:
        gw.metrics.embeddings.inc((api, name, status))


def _texts(value: str | list[str] | list[int] | list[list[int]], param: str = "input") -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise BadRequest(f"{param}: must not be empty", param=param)
    if len(texts) > MAX_INPUTS:
        raise BadRequest(f"{param}: at most {MAX_INPUTS} inputs per request, got {len(texts)}", param=param)
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest(f"{param}: token-id input is not supported; send text", param=param)
    return texts  # type: ignore[return-value]


@guarded(openai.render_error)
async def openai_embeddings(request: web.Request) -> web.Response:
    body = await read_parsed(request, EmbeddingsBody)
    texts = _texts(body.input)
    for i, t in enumerate(texts):
        if not t:
            raise BadRequest(f"input[{i}]: empty string; every input must hold text", param="input")
    res = await _embed(request, "openai", body.model, texts, dimensions=body.dimensions, input_type=body.input_type)
    data = []
    for i, row in enumerate(res.vectors):
        vec: Any = base64.b64encode(row.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else (
            row.tolist())
        data.append({"object": "embedding", "index": i, "embedding": vec})
    usage = {"prompt_tokens": res.prompt_tokens, "total_tokens": res.prompt_tokens}
    return json_response({"object": "list", "data": data, "model": body.model, "usage": usage})


@guarded(ollama.render_error)
async def ollama_embed(request: web.Request) -> web.Response:
    t0 = time.perf_counter_ns()
    body = await read_parsed(request, OllamaEmbedBody)
    texts = _texts(body.input)
    res = await _embed(request, "ollama", body.model, texts, truncate=body.truncate, dimensions=body.dimensions)
    took = time.perf_counter_ns() - t0
    return json_response({"model": body.model, "embeddings": res.vectors.tolist(), "total_duration": took,
                          "load_duration": 0, "prompt_eval_count": res.prompt_tokens})


@guarded(ollama.render_error)
async def ollama_embeddings(request: web.Request) -> web.Response:
    body = await read_parsed(request, OllamaEmbeddingsBody)
    res = await _embed(request, "ollama", body.model, [body.prompt])
    return json_response({"embedding": res.vectors[0].tolist()})


ROUTES = [
    Route("POST", "/v1/embeddings", openai_embeddings, "embeddings", "OpenAI embeddings", EmbeddingsBody),
    Route("POST", "/api/embed", ollama_embed, "embeddings", "Ollama embeddings", OllamaEmbedBody),
    Route("POST", "/api/embeddings", ollama_embeddings, "embeddings",
          "Ollama embeddings (deprecated form)", OllamaEmbeddingsBody),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
