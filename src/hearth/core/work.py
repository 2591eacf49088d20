"""Request-driven CPU work, off the event loop, in its own small pool.

Fitting a schema, compiling a grammar, rendering a chat template and tokenizing a prompt all cost more the
more a tenant sends. Each is bounded before it starts (the callers check sizes first); this pool makes sure
that what remains never runs on the event loop (where it would stall every other request and `/health`) and
never queues behind, or in front of, the default executor's file and DNS work.

Two pools: `bulk` work (a body of more than BULK bytes) gets one worker of its own, so that a tenant sending
megabytes at a time queues behind itself, never in front of another tenant's short request, which the two
workers of the ordinary pool take at once.

Work whose cost no check can bound beforehand (parsing an uploaded PDF: page trees, compressed streams) runs
`isolated`: in a worker process of its own, one job at a time, with its address space capped and a deadline
after which the process is killed. It also holds no lock the server needs (pypdf is pure Python: in a thread
it would take the GIL from the event loop and the engine's token loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

BULK = 256 * 1024  # bytes of input from which work goes to the bulk pool

_pools: dict[bool, ThreadPoolExecutor] = {}


NICE = 10  # how much lower the OS schedules bulk and isolated work than the engine and the event loop


def _lower_priority() -> None:
    """Linux schedules threads one by one: the bulk worker's CPU goes to the engine first when both want it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _executor(bulk: bool) -> ThreadPoolExecutor:
    if bulk not in _pools:
        _pools[bulk] = ThreadPoolExecutor(max_workers=1 if bulk else 2, initializer=_lower_priority if bulk else None,
                                          thread_name_prefix="hearth-bulk" if bulk else "hearth-work")
    return _pools[bulk]


async def offload(fn: Callable[[], T], *, size: int = 0) -> T:
    """Run `fn` in a work pool (with the caller's context variables, as `asyncio.to_thread` does); `size`: the
    bytes of input it works on, which picks the pool."""
    call = functools.partial(contextvars.copy_context().run, fn)
    return await asyncio.get_running_loop().run_in_executor(_executor(size > BULK), call)


class IsolatedFailure(Exception):
    """Isolated work ran out of time or memory (its process was killed), or its process died."""


_process: ProcessPoolExecutor | None = None
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _cap_memory(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with contextlib.suppress(OSError):
        os.nice(NICE)


async def isolated(fn: Callable[..., T], *args: Any, timeout: float, memory: int = 1 << 30) -> T:
    """`fn(*args)` in the isolated worker process (module-level `fn`, picklable arguments): its exceptions come
    back as they are; IsolatedFailure when it needs more than `timeout` seconds or `memory` bytes of address
    space. Jobs take turns, each timed from its own start."""
    global _process
    loop = asyncio.get_running_loop()
    turn = _turns.setdefault(loop, asyncio.Lock())  # an asyncio lock belongs to one loop
    async with turn:
        if _process is None:
            _process = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_cap_memory, initargs=(memory,))
        pool = _process
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, fn, *args), timeout)
        except TimeoutError:
            _discard(pool)
            raise IsolatedFailure(f"took longer than {timeout:g} s") from None
        except MemoryError:
            raise IsolatedFailure(f"needed more than {memory // 2**20} MB") from None
        except BrokenProcessPool:
            _discard(pool)
            raise IsolatedFailure("its process died (out of memory?)") from None


def _discard(pool: ProcessPoolExecutor) -> None:
    """Kill the worker process (a running job cannot be cancelled otherwise); the next job starts a new one."""
    global _process
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    if _process is pool:
        _process = None


def close() -> None:
    """At shutdown: kill the isolated worker, whatever it is doing; let the thread pools finish."""
    if _process is not None:
        _discard(_process)
