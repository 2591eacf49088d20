"""Request-driven CPU work, off the event loop, in its own small pool.

Fitting a schema, compiling a grammar, rendering a chat template and tokenizing a prompt all cost more the
more a tenant sends. Each is bounded before it starts (the callers check sizes first); this pool makes sure
that what remains never runs on the event loop (where it would stall every other request and `/health`) and
never queues behind, or in front of, the default executor's file and DNS work.

Two pools: `bulk` work (a body of more than BULK bytes) gets one worker of its own, so that a tenant sending
megabytes at a time queues behind itself, never in front of another tenant's short request, which the two
workers of the ordinary pool take at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

BULK = 256 * 1024  # bytes of input from which work goes to the bulk pool

_pools: dict[bool, ThreadPoolExecutor] = {}


def _executor(bulk: bool) -> ThreadPoolExecutor:
    if bulk not in _pools:
        _pools[bulk] = ThreadPoolExecutor(max_workers=1 if bulk else 2,
                                          thread_name_prefix="hearth-bulk" if bulk else "hearth-work")  # fmt: skip
    return _pools[bulk]


async def offload(fn: Callable[[], T], *, size: int = 0) -> T:
    """Run `fn` in a work pool (with the caller's context variables, as `asyncio.to_thread` does); `size`: the
    bytes of input it works on, which picks the pool."""
    call = functools.partial(contextvars.copy_context().run, fn)
    return await asyncio.get_running_loop().run_in_executor(_executor(size > BULK), call)
