"""Assembles the aiohttp application and runs it.

Models load in the background after the socket is open, so `/health` can say "loading" (503) and
remote-only models answer at once; a local model that fails to load stops the server with a clear
message rather than leaving a gateway that can never become ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hearth.api import admin, embeddings, ollama, openai, rag
from hearth.api.common import GATEWAY, MAX_BODY, json_response
from hearth.config import Config
from hearth.core.pipeline import Gateway
from hearth.core.registry import ModelRegistry
from hearth.metrics import GatewayMetrics

log = logging.getLogger("hearth")


async def _not_found(request: web.Request) -> web.Response:
    msg = f"no route for {request.method} {request.path}"
    if request.path.startswith("/api/"):
        return json_response({"error": msg}, status=404)
    return json_response({"error": {"message": msg, "type": "invalid_request_error", "param": None,
                                    "code": "not_found"}}, status=404)  # fmt: skip


def create_app(cfg: Config, registry: ModelRegistry | None = None) -> web.Application:
    registry = registry or ModelRegistry.from_config(cfg)
    gateway = Gateway(registry)
    # aiohttp's own limit is set above ours so that our handler, not aiohttp, words the 413.
    app = web.Application(client_max_size=cfg.server.max_body_bytes + 1)
    app[GATEWAY] = gateway
    app[MAX_BODY] = cfg.server.max_body_bytes
    openai.setup(app)
    ollama.setup(app)
    admin.setup(app)
    embeddings.setup(app)
    rag.setup(app)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    for name, backend in registry.backends.items():
        stats = getattr(backend, "stats", None)
        if stats is not None:
            for key in ENGINE_STATS:
                gateway.metrics.engine.set_function((name, key), functools.partial(_stat, stats, key))
    for name, backend in registry.backends.items():
        if getattr(backend, "kind", "") == "embedding":
            for what in ("batches", "texts"):
                gateway.metrics.embedder.set_function((name, what), functools.partial(_attr, backend, what))
    for name, backend in registry.backends.items():
        if hasattr(backend, "on_route"):
            backend.on_route = functools.partial(_on_route, gateway.metrics, name)
    registry.on_rag_search = functools.partial(_on_rag_search, gateway.metrics)
    if registry.cache is not None:
        m = gateway.metrics
        registry.cache.on_event = functools.partial(_on_cache, m)
        for what in ("memory_entries", "memory_bytes", "memory_evictions", "redis_errors"):
            m.cache_size.set_function((what,), functools.partial(_cache_stat, registry.cache, what))
        if registry.cache.semantic is not None:
            m.cache_size.set_function(("semantic_entries",), registry.cache.semantic.size)
    for bname, breaker in registry.breakers.items():
        gateway.metrics.circuit.set_function((bname,), functools.partial(lambda b: float(b.state), breaker))
    return app


def _on_rag_search(metrics: GatewayMetrics, kb: str, mode: str, seconds: float) -> None:
    metrics.rag_searches.inc((kb, mode))
    metrics.rag_search.observe((), seconds)


def _attr(obj: Any, what: str) -> float:
    return float(getattr(obj, what))


def _cache_stat(cache: Any, what: str) -> float:
    return float(cache.stats()[what])


def _on_cache(metrics: GatewayMetrics, kind: str, value: Any) -> None:
    if kind == "lookup":
        metrics.cache_lookup.observe((), value)
    elif kind == "guard":
        metrics.cache_guard.inc((value,))
    else:
        metrics.cache.inc((kind,))


def _on_route(metrics: GatewayMetrics, router: str, target: str, reason: str, frm: str) -> None:
    if frm:
        metrics.fallbacks.inc((router, frm, target, reason))
    else:
        metrics.routes.inc((router, target, reason))


ENGINE_STATS = (
    "queue_depth", "active_sequences", "prefix_hits", "prefix_misses", "reused_tokens",
    "prefilled_tokens", "generated_tokens", "evictions", "cached_prefix_tokens",
)  # fmt: skip


def _stat(stats: Callable[[], dict[str, float]], key: str) -> float:
    return float(stats().get(key, 0))


async def serve(cfg: Config, *, ready_event: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    app = create_app(cfg)
    registry = app[GATEWAY].registry
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port, backlog=1024)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", cfg.server.host, cfg.server.port, e.strerror or e)
        await runner.cleanup()
        return 1
    print(f"hearth listening on http://{cfg.server.host}:{cfg.server.port} "
          f"(models: {', '.join(registry.names())})", file=sys.stderr, flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    code = 0

    async def load() -> None:
        nonlocal code
        try:
            await registry.start()
            print("hearth ready", file=sys.stderr, flush=True)
            if ready_event:
                ready_event.set()
            await registry.warm_rag()
        except Exception as e:
            log.error("failed to start models: %s", e)
            code = 1
            stop.set()

    loader = asyncio.create_task(load())
    await stop.wait()
    loader.cancel()
    await runner.cleanup()
    await registry.close()
    return code
