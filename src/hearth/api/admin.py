"""Liveness, readiness and metrics: `/`, `/health`, `/metrics`, `/admin/stats` (the console's dashboard)."""

from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from hearth.api.common import GATEWAY, SERVICES, json_response
from hearth.api.gate import Route, add_routes
from hearth.core.errors import HearthError


async def root(request: web.Request) -> web.Response:
    return web.Response(text="hearth is running")  # what Ollama clients probe for


async def health(request: web.Request) -> web.Response:
    """200 once nothing is loading and something can serve. A model whose engine cannot run on this machine
    (it crashed its start-up check) does not hold readiness back: the gateway serves its other models, and the
    body says which model is unavailable and why ("degraded")."""
    services = request.app[SERVICES]
    registry = request.app[GATEWAY].registry
    models = registry.states()
    loading = any(state == "loading" for state in models.values())
    down = {name: registry.unavailable(name) or "" for name, state in models.items() if state == "unavailable"}
    serving = any(state == "ready" for state in models.values())
    status = "loading" if loading else "degraded" if down else "ready"
    body: dict[str, object] = {"status": status, "models": models}
    if down:
        body["unavailable"] = down
    circuits = {name: b.state.name.lower().replace("_", "-") for name, b in services.breakers.items()}
    if circuits:
        body["circuits"] = circuits
    return json_response(body, status=200 if not loading and serving else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.registry.render()
    return web.Response(
        text=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )


async def stats(request: web.Request) -> web.Response:
    """Cumulative figures for the console's dashboard, which turns them into rates between two polls: the
    server keeps no window, so any number of dashboards cost nothing while nobody looks."""
    gw = request.app[GATEWAY]
    m, reg = gw.metrics, gw.registry
    kinds: dict[str, str] = {}

    def kind(backend: str) -> str:
        if backend not in kinds:
            try:
                kinds[backend] = "local" if reg.info(backend).kind == "llamacpp" else "remote"
            except HearthError:
                kinds[backend] = "cache" if backend == "cache" else "remote"
        return kinds[backend]

    served = {"local": 0.0, "remote": 0.0, "cache": 0.0}
    total = errors = 0.0
    for (_api, _model, backend, status), n in m.requests.values.items():
        total += n
        served[kind(backend)] += n
        if status not in ("ok", "cancelled"):
            errors += n
    ttft = [0.0] * (len(m.ttft.buckets) + 2)
    for series in m.ttft.series.values():
        ttft = [a + b for a, b in zip(ttft, series, strict=True)]
    engine: dict[str, dict[str, float]] = {}
    for (model, what), fn in m.engine.sources.items():
        if what in ("queue_depth", "active_sequences", "parked_sequences", "max_sequences", "queue_limit",
                    "decode_step_ms", "prefill_tokens_per_second", "voice_devices", "voice_devices_measured_width"):
            engine.setdefault(model, {})[what] = fn()
    circuits = {backend: fn() for (backend,), fn in m.circuit.sources.items()}
    cache = {result: n for (result,), n in m.cache.values.items()}
    return json_response({
        "time": time.time(), "requests": total, "errors": errors, "served": served, "cache": cache,
        "ttft": {"le": list(m.ttft.buckets), "counts": ttft[:-2], "count": ttft[-1]},
        "engine": engine, "circuits": circuits,
    })


async def cache_stats(request: web.Request) -> web.Response:
    cache = request.app[SERVICES].cache
    return json_response(cache.stats() if cache is not None else {"enabled": False})


async def cache_clear(request: web.Request) -> web.Response:
    cache = request.app[SERVICES].cache
    return json_response({"cleared": await cache.clear()} if cache is not None else {"enabled": False})


ROUTES = [
    Route("GET", "/admin/cache", cache_stats, "admin", "Cache statistics"),
    Route("DELETE", "/admin/cache", cache_clear, "admin", "Empty the cache"),
    Route("GET", "/", root, "public", "Ollama's liveness text", None, "text/plain"),
    Route("GET", "/health", health, "public", "Readiness: 200 when every model is ready, else 503"),
    Route("GET", "/metrics", metrics, "admin", "Prometheus metrics", None, "text/plain"),
    Route("GET", "/admin/stats", stats, "admin", "The console's counters"),
]


def setup(app: web.Application, *, public_metrics: bool = False) -> None:
    public = ("/metrics", "/admin/stats") if public_metrics else ()  # `keys.public_metrics`: scrapers without keys
    add_routes(app, [dataclasses.replace(r, guard="public") if r.path in public else r for r in ROUTES])
