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
from hearth.access.keys import KeySpec
from hearth.api.anthropic import CountBody, MessagesBody
from hearth.api.common import json_response
from hearth.api.evaluate import EvaluateBody
from hearth.api.gate import add_route
from hearth.api.rag import DocumentsBody, SearchBody
from hearth.api.responses_items import ResponsesBody
from hearth.api.schemas import (
    AdapterBody,
    ChatCompletionBody,
    CompletionBody,
    CopyBody,
    DeleteBody,
    EmbeddingsBody,
    OllamaChatBody,
    OllamaEmbedBody,
    OllamaEmbeddingsBody,
    OllamaGenerateBody,
    OllamaShowBody,
    PullBody,
)

# (method, path) -> (summary, request body model, answer media type). Paths not listed here are left out
# of the document on purpose: the console's static files and the 404 catch-all.
OPERATIONS: dict[tuple[str, str], tuple[str, type[BaseModel] | None, str]] = {
    ("POST", "/v1/chat/completions"): ("OpenAI chat completion (stream: server-sent events)", ChatCompletionBody,
                                       "application/json"),
    ("POST", "/v1/completions"): ("OpenAI text completion", CompletionBody, "application/json"),
    ("POST", "/v1/responses"): ("OpenAI Responses API (stream: typed server-sent events)", ResponsesBody,
                                "application/json"),
    ("GET", "/v1/responses/{response_id}"): ("A stored response of this key", None, "application/json"),
    ("GET", "/v1/responses/{response_id}/input_items"): ("A stored response's input items", None,
                                                         "application/json"),
    ("DELETE", "/v1/responses/{response_id}"): ("Delete a stored response", None, "application/json"),
    ("POST", "/v1/messages"): ("Anthropic Messages API (stream: Anthropic's server-sent events)", MessagesBody,
                               "application/json"),
    ("POST", "/v1/messages/count_tokens"): ("Anthropic token count of a Messages request", CountBody,
                                            "application/json"),
    ("GET", "/v1/models"): ("Models this key may use", None, "application/json"),
    ("GET", "/v1/models/{id}"): ("One model", None, "application/json"),
    ("POST", "/v1/embeddings"): ("OpenAI embeddings", EmbeddingsBody, "application/json"),
    ("POST", "/v1/evaluate"): ("Score an answer to a question (heuristic or judge)", EvaluateBody,
                               "application/json"),
    ("GET", "/v1/rag"): ("Knowledge bases", None, "application/json"),
    ("GET", "/v1/rag/{kb}"): ("One knowledge base", None, "application/json"),
    ("DELETE", "/v1/rag/{kb}"): ("Drop a knowledge base", None, "application/json"),
    ("POST", "/v1/rag/{kb}/documents"): ("Add or replace documents", DocumentsBody, "application/json"),
    ("DELETE", "/v1/rag/{kb}/documents"): ("Remove documents (?source=...)", None, "application/json"),
    ("POST", "/v1/rag/{kb}/files"): ("Upload files (multipart/form-data)", None, "application/json"),
    ("POST", "/v1/rag/{kb}/search"): ("Search a knowledge base", SearchBody, "application/json"),
    ("POST", "/api/chat"): ("Ollama chat (stream: NDJSON)", OllamaChatBody, "application/x-ndjson"),
    ("POST", "/api/generate"): ("Ollama generate (stream: NDJSON)", OllamaGenerateBody, "application/x-ndjson"),
    ("GET", "/api/tags"): ("Ollama model list", None, "application/json"),
    ("POST", "/api/show"): ("Ollama model details", OllamaShowBody, "application/json"),
    ("GET", "/api/ps"): ("Ollama loaded models", None, "application/json"),
    ("POST", "/api/pull"): ("Pull a GGUF model from the Hugging Face Hub (stream: NDJSON progress)", PullBody,
                            "application/x-ndjson"),
    ("DELETE", "/api/delete"): ("Remove a pulled model", DeleteBody, "application/json"),
    ("POST", "/api/copy"): ("Serve a pulled model under a second name", CopyBody, "application/json"),
    ("POST", "/admin/adapters"): ("Serve a LoRA adapter (GGUF) on a local model as <base>+<name>", AdapterBody,
                                  "application/json"),
    ("GET", "/admin/adapters"): ("LoRA adapters served", None, "application/json"),
    ("DELETE", "/admin/adapters/{name}"): ("Stop serving a LoRA adapter", None, "application/json"),
    ("GET", "/api/version"): ("Ollama version", None, "application/json"),
    ("POST", "/api/embed"): ("Ollama embeddings", OllamaEmbedBody, "application/json"),
    ("POST", "/api/embeddings"): ("Ollama embeddings (deprecated form)", OllamaEmbeddingsBody, "application/json"),
    ("GET", "/"): ("Ollama's liveness text", None, "text/plain"),
    ("GET", "/health"): ("Readiness: 200 when every model is ready, else 503", None, "application/json"),
    ("GET", "/metrics"): ("Prometheus metrics", None, "text/plain"),
    ("GET", "/admin/stats"): ("The console's counters", None, "application/json"),
    ("GET", "/admin/cache"): ("Cache statistics", None, "application/json"),
    ("DELETE", "/admin/cache"): ("Empty the cache", None, "application/json"),
    ("POST", "/admin/keys"): ("Create an API key (the secret is shown once)", KeySpec, "application/json"),
    ("GET", "/admin/keys"): ("API keys", None, "application/json"),
    ("GET", "/admin/keys/{id}"): ("One API key and its spend", None, "application/json"),
    ("PATCH", "/admin/keys/{id}"): ("Change an API key's limits", None, "application/json"),
    ("POST", "/admin/keys/{id}"): ("Change an API key's limits (for clients without PATCH)", None,
                                   "application/json"),
    ("DELETE", "/admin/keys/{id}"): ("Revoke an API key", None, "application/json"),
    ("GET", "/admin/spend"): ("Spend per key (?key=...)", None, "application/json"),
    ("GET", "/openapi.json"): ("This document", None, "application/json"),
}  # fmt: skip

_OPENAI_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]}}}},
}  # fmt: skip
_OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _params(path: str) -> list[dict[str, Any]]:
    """Every `{name}` of the path, as OpenAPI requires each templated parameter to be declared."""
    return [{"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for p in re.findall(r"\{(\w+)\}", path)]  # fmt: skip


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
        }  # fmt: skip
        if params := _params(path):
            op["parameters"] = params
        if body is not None:
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[body.__name__] = schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}  # fmt: skip
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "hearth", "version": __version__,
                 "description": "A local-first LLM gateway: the OpenAI and Ollama APIs over local and remote models."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }  # fmt: skip


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/openapi.json", openapi, "public")
