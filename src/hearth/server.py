"""Assembles the aiohttp application and runs it.

Models load in the background after the socket is open, so `/health` can say "loading" (503) and
remote-only models answer at once; a local model that fails to load stops the server with a clear
message rather than leaving a gateway that can never become ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys

from aiohttp import web

from hearth import request_log
from hearth.access import Access, open_access
from hearth.api import (
    admin,
    anthropic,
    embeddings,
    evaluate,
    gate,
    keys,
    models,
    ollama,
    openai,
    openapi,
    rag,
    responses,
    ui,
)
from hearth.api.common import BODY_TIMEOUT, GATEWAY, MAX_BODY, SERVICES, Services, json_response
from hearth.api.response_store import RedisResponses, ResponseStore, SqliteResponses
from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core import work
from hearth.core.errors import HearthError
from hearth.core.pipeline import Gateway
from hearth.tracing import Tracer

ASSEMBLY: web.AppKey[Assembly] = web.AppKey("assembly", Assembly)  # the server's own: start, warm, close

log = logging.getLogger("hearth")


async def _not_found(request: web.Request) -> web.Response:
    msg = f"no route for {request.method} {request.path}"
    if request.path.startswith("/api/"):
        return json_response({"error": msg}, status=404)
    return json_response({"error": {"message": msg, "type": "invalid_request_error", "param": None,
                                    "code": "not_found"}}, status=404)


def _tracer(cfg: Config) -> Tracer | None:
    if not cfg.observe.otel:
        return None
    try:
        return Tracer()
    except ImportError:
        log.error("observe.otel is on but OpenTelemetry is not installed: pip install 'hearth[otel]'; no spans")
        return None


def _response_store(cfg: Config) -> ResponseStore | None:
    """Responses live where the deployment keeps its other state: Redis for replicas, else SQLite."""
    r = cfg.responses
    if r.store == "off":
        return None
    retention = r.retention_days * 86400
    url = cfg.replicas.redis_url or (cfg.keys.redis_url if cfg.keys.store == "redis" else None) or \
        (cfg.cache.redis_url if cfg.keys.store == "redis" or r.store == "redis" else None)
    if r.store == "redis" or (r.store == "auto" and url):
        if not url:
            raise ValueError("responses.store: redis needs replicas.redis_url or cache.redis_url")
        return RedisResponses(url, retention)
    return SqliteResponses(r.sqlite_path(), retention)


def create_app(cfg: Config, assembly: Assembly | None = None, access: Access | None = None,
               tracer: Tracer | None = None) -> web.Application:
    assembly = assembly or assemble(cfg)
    gateway = Gateway(assembly.registry, assembly.metrics, annotators=assembly.annotators,
                      observers=assembly.observers)
    # aiohttp's own limit is set above ours so that our handler, not aiohttp, words the 413.
    app = web.Application(client_max_size=cfg.server.max_body_bytes + 1)
    app[GATEWAY] = gateway
    app[ASSEMBLY] = assembly
    app[SERVICES] = Services(refresh=assembly.refresh, breakers=assembly.breakers, cache=assembly.cache,
                             convo=assembly.convo, rag=assembly.rag, residency=assembly.residency,
                             pulled=assembly.pulled, adapters=assembly.adapters)
    app[MAX_BODY] = cfg.server.max_body_bytes
    app[BODY_TIMEOUT] = cfg.server.body_timeout
    app[gate.GUARDS] = {}
    gate.setup(app, access or open_access(cfg, on_event=assembly.metrics.access_event),
               log_payloads=cfg.observe.log_payloads, tracer=tracer or _tracer(cfg))
    openai.setup(app)
    ollama.setup(app)
    anthropic.setup(app)
    responses.setup(app, _response_store(cfg), cfg.responses.max_stored_chars)
    models.setup(app)
    admin.setup(app, public_metrics=cfg.keys.public_metrics)
    embeddings.setup(app)
    evaluate.setup(app)
    rag.setup(app)
    keys.setup(app)
    ui.setup(app)
    openapi.setup(app)
    gate.add_route(app, "*", "/{tail:[\\s\\S]*}", _not_found, "public")
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(cfg: Config, *, ready_event: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    # Threads doing a tenant's heavy work (rendering a long prompt, parsing a large body) hold the GIL for up to
    # this long at a time while the event loop and the engine's token loop wait for it: 1 ms, not Python's 5.
    sys.setswitchinterval(0.001)
    app = create_app(cfg)
    assembly = app[ASSEMBLY]
    registry = assembly.registry
    access = app[gate.ACCESS]
    request_log.setup(cfg.observe.request_log)
    try:
        keyed = await access.required()
    except HearthError as e:
        log.error("cannot read the API keys: %s", e.message)
        await access.close()
        return 1
    if not keyed and not is_loopback(cfg.server.host) and not cfg.server.insecure:
        log.error("refusing to serve %s with no API key: anyone who can reach the port could use every model. "
                  "Create a key (hearth keys create --name NAME), set HEARTH_ADMIN_KEY, or pass --insecure.",
                  cfg.server.host)
        await access.close()
        return 2
    if not keyed:
        print("hearth: no API keys exist, so requests need none (loopback only)", file=sys.stderr, flush=True)
    # Idle keep-alive connections are closed after keepalive_timeout (aiohttp's default is an hour). A client
    # that dribbles its headers is not timed out here (aiohttp has no header timeout): nginx in front does
    # that (client_header_timeout; deploy/nginx/hearth.conf).
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           keepalive_timeout=cfg.server.keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", cfg.server.host, cfg.server.port, e.strerror or e)
        await runner.cleanup()
        await access.close()
        return 1
    base = f"http://{cfg.server.host}:{cfg.server.port}"
    if cfg.server.host in ("0.0.0.0", "::", ""):
        base = f"http://127.0.0.1:{cfg.server.port}"
    print(f"hearth listening on http://{cfg.server.host}:{cfg.server.port} "
          f"(models: {', '.join(registry.names())})\nconsole: {base}/ui/", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    code = 0

    async def load() -> None:
        nonlocal code
        try:
            await assembly.start()
            print("hearth ready", file=sys.stderr, flush=True)
            if ready_event:
                ready_event.set()
            await assembly.warm()
        except Exception as e:
            log.error("failed to start models: %s", e)
            code = 1
            stop.set()

    loader = asyncio.create_task(load())
    await stop.wait()
    loader.cancel()
    await runner.cleanup()
    work.close()  # a PDF still being parsed must not hold up the exit
    await assembly.close()
    await access.close()
    if (tracer := app.get(gate.TRACER)) is not None:
        tracer.close()
    return code
