"""The API edge of access control: every route declares who may call it, one middleware enforces it.

Each API module declares its endpoints once, as `ROUTES` (a `Route`: method, path, handler, guard, and what
`/openapi.json` says of it), and its `setup` adds them with `add_routes`, so the guard of an endpoint sits
next to its path: `public` (health, version), `key` (any valid key: model listings), a scope (`chat`,
`embeddings`, `rag:read`, `rag:write`, `admin`). The middleware authenticates, checks the scope, gives
every request an `x-request-id`, and writes the one-line JSON request log; handlers then admit the
model-level part (allow-list, limits, budget) through `open_stream` / `admit_*`, where the model is known.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel

from hearth import request_log
from hearth.access import OPEN, Access, Principal, Ticket, rate_headers
from hearth.access.keys import Scope
from hearth.api.common import GATEWAY, REQUEST_ID, anthropic_error, ollama_error, openai_error
from hearth.core.errors import HearthError
from hearth.core.pipeline import Stream
from hearth.core.registry import ModelRegistry
from hearth.core.types import ChatRequest
from hearth.tracing import Tracer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Guard = Literal["public", "key"] | Scope
ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
GUARDS: web.AppKey[dict[web.AbstractRoute, Guard]] = web.AppKey("guards", dict)
LOG_PAYLOADS: web.AppKey[bool] = web.AppKey("log_payloads", bool)
TRACER: web.AppKey[Tracer] = web.AppKey("tracer", Tracer)  # only set when observe.otel is on

log = logging.getLogger("hearth")
_REQUEST_ID = re.compile(r"^[\w.:/+=-]{1,128}$")


@dataclass(slots=True)
class Exchange:
    """What one HTTP request did, for the request log and the response headers."""

    id: str
    principal: Principal = OPEN
    tickets: list[Ticket] = field(default_factory=list)
    rate: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None
    model: str | None = None
    tokens_in: int | None = None
    payload: Any = None  # the prompt, when the debug switch asks for payloads


EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("exchange", Exchange)


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint, declared once: aiohttp's route and its guard come from it, and so does its operation in
    `/openapi.json` (`api/openapi.py` reads every module's `ROUTES`). `path` is aiohttp's (it may hold a regex,
    `{id:.+}`); `summary` None leaves the route out of the document (the console's files, the 404 catch-all);
    `body` is the pydantic model the handler parses the request with."""

    method: str
    path: str
    handler: Handler
    guard: Guard
    summary: str | None = None
    body: type[BaseModel] | None = None
    media: str = "application/json"  # of the answer

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: `{id:.+}` is `{id}`."""
        return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", self.path)


def add_route(app: web.Application, method: str, path: str, handler: Handler, guard: Guard) -> None:
    app[GUARDS][app.router.add_route(method, path, handler)] = guard


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for r in routes:
        add_route(app, r.method, r.path, r.handler, r.guard)


def _secret(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else auth  # Ollama clients may send it bare
    return request.headers.get("x-api-key") or None


def render_error(request: web.Request, e: HearthError) -> web.Response:
    """Refusals made here (no key, wrong scope) in the format of the API the client speaks."""
    if request.path.startswith("/api/"):
        return ollama_error(e)
    if request.path.startswith("/v1/messages"):
        return anthropic_error(e)
    return openai_error(e)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    rid = request.headers.get("x-request-id", "")
    ex = request[EXCHANGE] = Exchange(rid if _REQUEST_ID.match(rid) else os.urandom(16).hex())
    request[REQUEST_ID] = ex.id
    access = request.app[ACCESS]
    response: web.StreamResponse | None = None
    try:
        guard = request.app[GUARDS].get(request.match_info.route, "admin")  # a route without a guard: admins only
        if guard != "public":
            ex.principal = await access.authenticate(_secret(request))
            if guard != "key":
                access.check_scope(ex.principal, guard)
        response = await handler(request)
        return response
    except HearthError as e:
        response = render_error(request, e)
        return response
    finally:
        for t in ex.tickets:
            if not t.settled:
                try:
                    await access.release(t)
                except HearthError as e:
                    log.error("could not release request %s of key %s: %s", ex.id, ex.principal.name, e.message)
        if request_log.requests_log.isEnabledFor(logging.INFO) and request.path not in ("/health", "/metrics"):
            _log(request, ex, response, time.perf_counter() - t0)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    ex = request.get(EXCHANGE)
    if ex is not None:
        response.headers["x-request-id"] = ex.id
        for k, v in ex.rate.items():
            response.headers.setdefault(k, v)


def _log(request: web.Request, ex: Exchange, response: web.StreamResponse | None, took: float) -> None:
    s = ex.stream
    line: dict[str, Any] = {
        "ts": round(time.time(), 3), "request_id": ex.id, "key": ex.principal.name, "method": request.method,
        "path": request.path, "status": response.status if response is not None else 499,
        "model": s.model if s else ex.model, "duration_ms": round(took * 1000, 1),
    }
    if s is not None:
        line.update(backend=s.served_by, outcome=s.status, ttft_ms=round(s.ttft * 1000, 1) if s.ttft else None)
        if s.intent is not None:
            line["intent"] = s.intent.label
        for note in s.notes.values():
            line.update(note.log_fields())
        if s.usage is not None:
            line.update(prompt_tokens=s.usage.prompt_tokens, completion_tokens=s.usage.completion_tokens)
    elif ex.tokens_in is not None:
        line["prompt_tokens"] = ex.tokens_in
    if ex.payload is not None and request.app[LOG_PAYLOADS]:
        line["prompt"] = ex.payload
    request_log.line(orjson.dumps(line, default=str).decode())  # a tenth of json.dumps' time, on every request


def hold(ex: Exchange, ticket: Ticket | None) -> None:
    """Keep an admitted request's ticket (the middleware releases it if nothing settles it) and its headers."""
    if ticket is not None:
        ex.tickets.append(ticket)
        ex.rate = rate_headers(ticket.key, ticket.verdict)


def names_of(registry: ModelRegistry, model: str) -> tuple[str, ...]:
    """The names a model goes by, for allow-lists: as asked, and canonical when it is an alias."""
    try:
        canonical = registry.canonical(model)
    except HearthError:
        return (model,)
    return (model,) if canonical == model else (model, canonical)


def visible(request: web.Request, names: list[str]) -> list[str]:
    """The model names the caller's key may use (listings show no others)."""
    p = request[EXCHANGE].principal
    return names if p.key is None else [n for n in names if p.key.allows((n,))]


async def open_stream(request: web.Request, api: str, req: ChatRequest) -> Stream:
    """Admit the request for its key, open the pipeline, and settle what it used when the stream closes."""
    access, gateway, ex = request.app[ACCESS], request.app[GATEWAY], request[EXCHANGE]
    ex.model = req.model
    if request.app[LOG_PAYLOADS]:
        ex.payload = req.prompt if req.prompt is not None else [[m.role, m.content] for m in req.messages]
    ticket = await access.admit_chat(ex.principal, req, names_of(gateway.registry, req.model))
    # Every request gets its key's namespace, whatever the body said of the cache: the namespace also scopes
    # the conversation turns remembered for routing (convo.memory).
    cache = req.extensions.get("cache") or {}
    namespace = access.cache_namespace(ex.principal, str(cache.get("namespace") or ""))
    req.extensions["cache"] = {**cache, "namespace": namespace} if namespace else cache
    hold(ex, ticket)
    stream = await gateway.open(api, req)  # a failure here: the middleware releases the ticket, charging nothing
    ex.stream = stream
    tracer = request.app.get(TRACER)
    if ticket is not None or tracer is not None:

        async def closed(s: Stream) -> None:
            if tracer is not None:
                local, provider = _provider(gateway.registry, s.served_by)
                try:
                    tracer.generation(request.headers, req, s, local=local, provider=provider, key=ex.principal.name)
                except Exception as e:  # telemetry must never fail an answer
                    log.warning("could not record the span of request %s: %r", ex.id, e)
            if ticket is not None:
                u = s.usage
                try:
                    await access.settle(ticket, s.served_by, u.prompt_tokens if u else None,
                                        u.completion_tokens if u else s.outputs)
                except HearthError as e:  # the answer is made; its reservation lapses after the lease instead
                    log.error("could not settle request %s of key %s: %s", ex.id, ex.principal.name, e.message)

        stream.on_close = closed
    return stream


def _provider(registry: ModelRegistry, served_by: str) -> tuple[bool, str]:
    """Whether the answer was made in-process, and the GenAI conventions' provider name for who made it."""
    try:
        kind = registry.info(served_by).kind
    except HearthError:  # "cache", or a name only a router knew
        return True, "hearth"
    return kind == "llamacpp", {"llamacpp": "llama.cpp", "openai": "openai", "ollama": "ollama"}.get(kind, kind)


async def admit_embeddings(request: web.Request, model: str, texts: list[str]) -> Ticket | None:
    access, gateway, ex = request.app[ACCESS], request.app[GATEWAY], request[EXCHANGE]
    ex.model = model
    ticket = await access.admit_embeddings(ex.principal, model, names_of(gateway.registry, model), texts)
    hold(ex, ticket)
    return ticket


async def settle_embeddings(request: web.Request, ticket: Ticket | None, model: str, served_by: str, tokens: int,
                            seconds: float) -> None:
    ex = request[EXCHANGE]
    ex.tokens_in = tokens
    if (tracer := request.app.get(TRACER)) is not None:
        local, provider = _provider(request.app[GATEWAY].registry, served_by)
        tracer.embeddings(request.headers, model, served_by, tokens, seconds, local=local, provider=provider,
                          key=ex.principal.name)
    if ticket is not None:
        await request.app[ACCESS].settle(ticket, served_by, tokens, 0)


async def admit_kb(request: web.Request, kb: str, size: int = 0) -> Ticket | None:
    """Knowledge-base endpoints: the key must allow `rag:<kb>`; the call counts toward its request limits, and
    the `size` bytes it ingests (embedded: CPU or a provider's tokens) toward its token rate."""
    access, ex = request.app[ACCESS], request[EXCHANGE]
    ex.model = f"rag:{kb}"
    ticket = await access.admit_plain(ex.principal, (ex.model,), size)
    hold(ex, ticket)
    return ticket


def setup(app: web.Application, access: Access, *, log_payloads: bool = False, tracer: Tracer | None = None) -> None:
    app[ACCESS] = access
    app[LOG_PAYLOADS] = log_payloads
    if tracer is not None:
        app[TRACER] = tracer
    app.middlewares.append(access_middleware)
    app.on_response_prepare.append(_headers)
