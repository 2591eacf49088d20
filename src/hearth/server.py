"""Assembles the aiohttp application and runs it.

Models load in the background after the socket is open, so `/health` can say "loading" (503) and
remote-only models answer at once; a local model that fails to load stops the server with a clear
message rather than leaving a gateway that can never become ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from hearth.api import admin, embeddings, ollama, openai, rag
from hearth.api.common import ASSEMBLY, GATEWAY, MAX_BODY, json_response
from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core.pipeline import Gateway

log = logging.getLogger("hearth")


async def _not_found(request: web.Request) -> web.Response:
    msg = f"no route for {request.method} {request.path}"
    if request.path.startswith("/api/"):
        return json_response({"error": msg}, status=404)
    return json_response({"error": {"message": msg, "type": "invalid_request_error", "param": None,
                                    "code": "not_found"}}, status=404)  # fmt: skip


def create_app(cfg: Config, assembly: Assembly | None = None) -> web.Application:
    assembly = assembly or assemble(cfg)
    gateway = Gateway(assembly.registry, assembly.metrics)
    # aiohttp's own limit is set above ours so that our handler, not aiohttp, words the 413.
    app = web.Application(client_max_size=cfg.server.max_body_bytes + 1)
    app[GATEWAY] = gateway
    app[ASSEMBLY] = assembly
    app[MAX_BODY] = cfg.server.max_body_bytes
    openai.setup(app)
    ollama.setup(app)
    admin.setup(app)
    embeddings.setup(app)
    rag.setup(app)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def serve(cfg: Config, *, ready_event: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    app = create_app(cfg)
    assembly = app[ASSEMBLY]
    registry = assembly.registry
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
    await assembly.close()
    return code
