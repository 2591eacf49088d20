"""`GET /openapi.json`: an OpenAPI 3.1 document of everything hearth serves, built from the request models.

The request bodies are the pydantic models the handlers parse with, so the document cannot drift from what
is accepted; `tests/api/test_openapi.py` checks that every registered route is described, and fuzzes the
whole document with schemathesis (no 5xx; every 4xx in the API's own error format). Answers are described
by their shape in each dialect, not field by field: they follow the OpenAI and Ollama references.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from hearth import __version__
from hearth.api import admin, anthropic, embeddings, evaluate, keys, models, ollama, openai, rag, responses
from hearth.api.common import json_response
from hearth.api.gate import Route, add_routes

_OPENAI_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}}}},
}
_OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _params(path: str) -> list[dict[str, Any]]:
    """Every `{name}` of the path, as OpenAPI requires each templated parameter to be declared."""
    return [{"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for p in re.findall(r"\{(\w+)\}", path)]


@cache
def document() -> dict[str, Any]:
    components: dict[str, Any] = {"OpenAIError": _OPENAI_ERROR, "OllamaError": _OLLAMA_ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), (summary, body, media) in OPERATIONS.items():
        error = "OllamaError" if path.startswith("/api/") else "OpenAIError"
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {media: {"schema": {} if media != "application/json"
                                                                  else {"type": ["object", "array"]}}}},
                "4XX": {"description": "The request was refused; the body names the problem",
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}}},
            },
        }
        if params := _params(path):
            op["parameters"] = params
        if body is not None:
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[body.__name__] = schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "hearth", "version": __version__,
                 "description": "A local-first LLM gateway: the OpenAI and Ollama APIs over local and remote models."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())


ROUTES = [Route("GET", "/openapi.json", openapi, "public", "This document")]
# (method, path) -> (summary, request body model, answer media type), from each API module's `ROUTES`: a route is
# declared once, beside its handler. Those without a summary are left out on purpose: the console's static files
# and the 404 catch-all.
OPERATIONS: dict[tuple[str, str], tuple[str, type[BaseModel] | None, str]] = {
    (r.method, r.template): (r.summary, r.body, r.media)
    for r in [*(r for m in (openai, responses, anthropic, models, embeddings, evaluate, rag, ollama, admin, keys)
                for r in m.ROUTES), *ROUTES]
    if r.summary is not None
}


ROUTES = [
    Route("GET", "/openapi.json", openapi, "public", "This document"),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
