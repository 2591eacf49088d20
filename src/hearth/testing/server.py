"""An aiohttp application served on a real loopback port from a background thread, for tests whose
clients are synchronous (the `openai` and `ollama` SDKs, urllib): the app keeps its own event loop,
so test doubles and the access layer run exactly as in `hearth serve`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from aiohttp import web


@contextlib.contextmanager
def running(make_app: Callable[[], web.Application], host: str = "127.0.0.1") -> Iterator[str]:
    """Build the app on the server's loop (its stores bind to that loop), serve it, yield its base URL."""
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        runner: web.AppRunner | None = None
        try:
            runner = web.AppRunner(make_app(), handler_cancellation=True, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        except BaseException as e:
            failure.append(e)
            started.set()
            return
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
