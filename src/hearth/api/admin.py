"""Liveness, readiness and metrics: `/`, `/health`, `/metrics`."""

from __future__ import annotations

from aiohttp import web

from hearth.api.common import ASSEMBLY, GATEWAY, json_response
from hearth.api.gate import add_route


async def root(request: web.Request) -> web.Response:
    return web.Response(text="hearth is running")  # what Ollama clients probe for


async def health(request: web.Request) -> web.Response:
    assembly = request.app[ASSEMBLY]
    models = {name: ("ready" if ready else "loading") for name, ready in assembly.registry.states().items()}
    ready = all(state == "ready" for state in models.values())
    circuits = {name: b.state.name.lower().replace("_", "-") for name, b in assembly.breakers.items()}
    if circuits:
        return json_response({"status": "ready" if ready else "loading", "models": models, "circuits": circuits},
                             status=200 if ready else 503)  # fmt: skip
    return json_response({"status": "ready" if ready else "loading", "models": models}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.registry.render()
    return web.Response(
        text=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )


async def cache_stats(request: web.Request) -> web.Response:
    cache = request.app[ASSEMBLY].cache
    return json_response(cache.stats() if cache is not None else {"enabled": False})


async def cache_clear(request: web.Request) -> web.Response:
    cache = request.app[ASSEMBLY].cache
    return json_response({"cleared": await cache.clear()} if cache is not None else {"enabled": False})


def setup(app: web.Application, *, public_metrics: bool = False) -> None:
    add_route(app, "GET", "/admin/cache", cache_stats, "admin")
    add_route(app, "DELETE", "/admin/cache", cache_clear, "admin")
    add_route(app, "GET", "/", root, "public")
    add_route(app, "GET", "/health", health, "public")
    add_route(app, "GET", "/metrics", metrics, "public" if public_metrics else "admin")
