"""Plumbing both dialects share: bounded body reads, JSON responses, error wrapping."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from hearth.api.options import check_namespace
from hearth.core.errors import BadRequest, HearthError, PayloadTooLarge, RequestTimeout
from hearth.core.pipeline import Gateway, Stream

if TYPE_CHECKING:
    from hearth.cache.backend import ResponseCache
    from hearth.convo.stage import Conversation
    from hearth.lifecycle.adapters import Adapters
    from hearth.lifecycle.residency import Residency
    from hearth.lifecycle.service import LocalModels
    from hearth.rag.stage import RagStage
    from hearth.routing.breaker import CircuitBreaker

log = logging.getLogger("hearth")


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers use of the gateway, each typed (the server fills it from the assembly; handlers never
    reach into the assembly itself)."""

    refresh: Callable[[], Awaitable[None]]  # follow the model store before a listing (pulls, adapters)
    breakers: Mapping[str, CircuitBreaker]
    cache: ResponseCache | None
    convo: Conversation
    rag: RagStage
    residency: Residency | None
    pulled: LocalModels | None
    adapters: Adapters | None


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)  # set by the access middleware
# Headers that carry the client's conversation id (the first one present wins).
CONVERSATION_HEADERS = ("x-hearth-conversation-id", "x-conversation-id")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorRenderer = Callable[[HearthError], web.Response]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


async def read_body(request: web.Request) -> bytes:
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    timeout = request.app.get(BODY_TIMEOUT, 30.0)
    try:
        if request.content.is_eof():  # all of it came with the head (most requests): no timer to set and cancel
            body = await request.read()
        else:
            async with asyncio.timeout(timeout):
                body = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    if not body:
        raise BadRequest("the request body is empty; send a JSON object")
    return body


def as_hearth_error(e: BaseException) -> HearthError:
    """What a client is told of a failure: a HearthError as it is, anything else (a bug) as an internal error."""
    return e if isinstance(e, HearthError) else HearthError(f"internal error: {type(e).__name__}: {e}")


def guarded(render_error: ErrorRenderer) -> Callable[[Handler], Handler]:
    """Turn HearthErrors (and bugs) raised before a response started into the dialect's error body."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except HearthError as e:
                return render_error(e)
            except (ConnectionResetError, web.HTTPException):
                raise
            except Exception as e:
                log.exception("unhandled error on %s %s", request.method, request.path)
                return render_error(as_hearth_error(e))

        run.__name__ = handler.__name__
        return run

    return wrap


def request_options(request: web.Request, ext: dict[str, Any] | None) -> dict[str, Any]:
    """Per-request options from headers, merged into the body extension `"hearth": {...}` (for clients that
    cannot set headers): cache control (`Cache-Control: no-cache | no-store | max-age=N`,
    `x-hearth-cache-namespace`), speech (`x-hearth-pace`, `x-hearth-segments`) and the conversation id
    (`x-hearth-conversation-id`)."""
    ext = dict(ext or {})
    c = dict(ext.get("cache") or {}) if isinstance(ext.get("cache"), dict) else {}
    cc = request.headers.get("Cache-Control", "").lower()
    if "no-cache" in cc:
        c["no_cache"] = True
    if "no-store" in cc:
        c["no_store"] = True
    for part in cc.split(","):
        if part.strip().startswith("max-age="):
            try:
                c["ttl"] = float(part.split("=", 1)[1])
                c["enabled"] = True
            except ValueError:
                pass
    if (ns := request.headers.get("x-hearth-cache-namespace")) is not None:
        c["namespace"] = check_namespace(ns)
    if c:
        ext["cache"] = c
    # Speech options (validated by the speech stage, which names the field): headers win over the body.
    if (pace := request.headers.get("x-hearth-pace")) is not None:
        ext["pace"] = pace
    if (segments := request.headers.get("x-hearth-segments")) is not None:
        ext["segments"] = segments
    for h in CONVERSATION_HEADERS:
        if conversation := request.headers.get(h, "").strip()[:200]:
            ext["conversation"] = conversation
            break
    if rid := request.get(REQUEST_ID):
        ext["request_id"] = rid
    return ext


def route_headers(stream: Stream) -> dict[str, str]:
    """How the response was produced: the backend, the turn's intent, and what each stage says of itself in its
    note (the route and its reason, the cache's result, RAG's sources, or a new stage's own headers)."""
    h = {"x-hearth-backend": stream.served_by}
    if stream.intent is not None:
        h["x-hearth-intent"] = stream.intent.label
    for note in stream.notes.values():
        h.update(note.headers())
    return h


def openai_error(e: HearthError) -> web.Response:
    body = {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
    return _closing(e, json_response(body, status=e.status, headers=error_headers(e)))


def ollama_error(e: HearthError) -> web.Response:
    return _closing(e, json_response({"error": e.message}, status=e.status, headers=error_headers(e)))


# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error_body(e: HearthError) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(e.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": e.message}}


def anthropic_error(e: HearthError) -> web.Response:
    return _closing(e, json_response(anthropic_error_body(e), status=e.status, headers=error_headers(e)))


def _closing(e: HearthError, response: web.Response) -> web.Response:
    """A client that timed out sending its body has an unread rest in the connection: close it."""
    if isinstance(e, RequestTimeout):
        response.force_close()
    return response


def error_headers(e: HearthError) -> dict[str, str] | None:
    h = dict(e.headers) if e.headers else {}
    if e.retry_after is not None:
        h["Retry-After"] = str(max(1, math.ceil(e.retry_after)))
    return h or None
