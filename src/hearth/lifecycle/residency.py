"""Which local models are in memory: loaded at their first request, unloaded when their keep-alive runs
out, and the least recently used idle one unloaded when a budget (models, bytes) needs room.

Why one object for every local model: the budget is shared, so the decision to load one model and to
unload another must be taken in one place, under one lock, or two requests for two new models could both
find room that exists once. Loading itself runs outside the lock (seconds, on the model's own thread).

A request holds its model for as long as it streams (`hold`), so a model is never unloaded under a
running answer; a request that needs room no idle model can give waits for one to finish, up to
`load_timeout`, then gets a 503 with Retry-After. It never fails because another model is being swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from hearth.core.errors import HearthError, ModelNotFound, Overloaded

log = logging.getLogger("hearth.lifecycle")

State = Literal["unloaded", "loading", "loaded", "unloading"]


class Resident(Protocol):
    """What the residency needs from a local model (the llama.cpp backend is one)."""

    name: str

    def footprint(self) -> int:
        """Bytes it holds when loaded: exact once loaded, estimated from the file before."""
        ...

    async def load(self) -> None: ...

    async def unload(self) -> None: ...


@dataclass
class _Entry:
    model: Resident
    keep_default: float  # seconds; math.inf: forever
    state: State = "unloaded"
    users: int = 0
    expires: float = math.inf  # on the residency's clock
    last_used: float = 0.0
    loading: asyncio.Task[None] | None = None  # the load under way, shared by the requests that wait for it
    unloading: asyncio.Task[None] | None = None
    drop: bool = False  # an unload was asked while answers ran: it happens when the last one ends
    removed: bool = False  # the model was deleted: no new request may hold it


@dataclass(frozen=True)
class Loaded:
    """One line of `/api/ps`."""

    name: str
    state: State
    size: int
    expires_at: float | None  # wall-clock seconds; None: never


class Residency:
    def __init__(self, *, max_models: int, max_bytes: int, load_timeout: float = 60.0,
                 default_keep_alive: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 on_load: Callable[[str, float], None] | None = None) -> None:
        self.default_keep_alive = default_keep_alive  # for models loaded on demand that set none
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.load_timeout = load_timeout
        self.clock = clock
        self.on_load = on_load
        self._entries: dict[str, _Entry] = {}
        self._retiring: list[_Entry] = []  # removed models still in memory, until their answers end
        self._cond = asyncio.Condition()
        self._wake = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- registration ----------------------------------------------------------------------------

    def register(self, model: Resident, keep_alive: float) -> None:
        self._entries[model.name] = _Entry(model, keep_alive)

    def retire(self, model: Resident) -> None:
        """A removed model: refuse new requests for it from now on (its name may be registered again at once,
        for a new version); it keeps counting against the budget until `forget` has unloaded it."""
        entry = self._entries.get(model.name)
        if entry is None or entry.model is not model:
            return
        entry.removed = True
        entry.expires = self.clock()
        del self._entries[model.name]
        self._retiring.append(entry)

    async def forget(self, model: Resident) -> None:
        """Retire `model`, wait for its running answers to end, and unload it."""
        self.retire(model)
        entry = next((e for e in self._retiring if e.model is model), None)
        if entry is None:
            return
        while entry.users or entry.state in ("loading", "unloading"):
            await asyncio.sleep(0.05)
        if entry.state == "loaded":
            await self._unload(entry)
        self._retiring.remove(entry)

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="hearth-residency")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    # --- requests ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def hold(self, model: Resident, keep_alive: float | None = None) -> AsyncIterator[None]:
        """Keep `model` loaded (loading it first if needed) while the block runs; then it stays for
        `keep_alive` seconds (None: its default; 0: unloaded now unless another request holds it)."""
        entry = self._entries.get(model.name)
        if entry is None or entry.removed or entry.model is not model:
            raise ModelNotFound(f"model {model.name!r} was removed", param="model")
        entry.users += 1
        entry.drop = False  # a request after an unload request sets the keep-alive anew
        try:
            await self._ensure_loaded(entry)
            yield
        finally:
            entry.users -= 1
            now = self.clock()
            entry.last_used = now
            ka = 0.0 if entry.drop else entry.keep_default if keep_alive is None else keep_alive
            entry.expires = now + ka if math.isfinite(ka) else math.inf
            if entry.users == 0 and entry.expires <= now and entry.state == "loaded":
                task = asyncio.create_task(self._unload(entry))
                self._background.add(task)  # held, or the loop may collect it half-way
                task.add_done_callback(self._background.discard)
            self._wake.set()

    def manages(self, name: str) -> bool:
        return name in self._entries

    async def load(self, name: str, keep_alive: float | None = None) -> None:
        """A request with no prompt: load the model now (Ollama answers `done_reason: load`)."""
        async with self.hold(self._entry(name).model, keep_alive):
            pass

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None or entry.removed:
            raise ModelNotFound(f"model {name!r} not found", param="model")
        return entry

    async def unload(self, name: str) -> None:
        """`keep_alive: 0` with no prompt: unload now, or as soon as the answers running on it end."""
        entry = self._entry(name)
        entry.expires = self.clock()
        entry.drop = entry.users > 0
        if entry.users == 0 and entry.state == "loaded":
            await self._unload(entry)
        elif entry.state == "loading" and entry.loading is not None:
            await asyncio.wait([entry.loading])
            await self.unload(name)
        self._wake.set()

    def listing(self) -> list[Loaded]:
        now, wall = self.clock(), time.time()
        return [
            Loaded(e.model.name, e.state, e.model.footprint(),
                   None if math.isinf(e.expires) else wall + max(0.0, e.expires - now))
            for e in self._entries.values() if e.state != "unloaded"
        ]

    # --- loading and unloading ---------------------------------------------------------------------

    async def _ensure_loaded(self, entry: _Entry) -> None:
        while entry.state != "loaded":
            if entry.state == "unloading" and entry.unloading is not None:
                await asyncio.wait([entry.unloading])
                continue
            if entry.state == "loading" and entry.loading is not None:
                task = entry.loading  # another request's load: wait for it, and share its failure
            else:
                async with self._cond:
                    if entry.state != "unloaded":
                        continue
                    await self._make_room(entry)
                    entry.state = "loading"
                    task = entry.loading = asyncio.create_task(self._load(entry))
            await asyncio.wait([task])  # not cancelled with this request: others may wait for the same load
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _make_room(self, entry: _Entry) -> None:
        """Under the lock: unload idle models, least recently used first, until `entry` fits; wait for a busy
        one to finish when none is idle."""
        need = entry.model.footprint()
        if need > self.max_bytes:
            raise HearthError(f"model {entry.model.name!r} needs {need / 1e9:.2f} GB, more than "
                              f"local.max_loaded_bytes ({self.max_bytes / 1e9:.2f} GB)", status=507)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.load_timeout  # real time: the injected clock is for keep-alives
        while True:
            others = [e for e in [*self._entries.values(), *self._retiring] if e is not entry and e.state != "unloaded"]
            if len(others) < self.max_models and sum(e.model.footprint() for e in others) + need <= self.max_bytes:
                return
            idle = [e for e in others if e.state == "loaded" and e.users == 0]
            if idle:
                victim = min(idle, key=lambda e: e.last_used)
                log.info("unloading %s to make room for %s", victim.model.name, entry.model.name)
                await self._unload(victim)
                continue
            left = deadline - loop.time()
            if left <= 0:
                busy = ", ".join(e.model.name for e in others)
                raise Overloaded(f"cannot load {entry.model.name!r} now: the loaded models ({busy}) are all "
                                 "answering and the memory budget holds no more; retry shortly",
                                 retry_after=2.0)
            with contextlib.suppress(TimeoutError):  # polled: a finishing answer frees room without a notify
                await asyncio.wait_for(self._cond.wait(), timeout=min(left, 0.1))

    async def _load(self, entry: _Entry) -> None:
        t0 = self.clock()
        try:
            await entry.model.load()
        except BaseException:
            entry.state = "unloaded"
            raise
        entry.state = "loaded"
        entry.last_used = self.clock()
        if entry.users == 0:  # a preload or load-only request: its keep-alive counts from now
            entry.expires = entry.last_used + entry.keep_default if math.isfinite(entry.keep_default) else math.inf
        if self.on_load is not None:
            self.on_load(entry.model.name, self.clock() - t0)
        self._wake.set()

    async def _unload(self, entry: _Entry) -> None:
        if entry.state != "loaded" or entry.users:
            return
        entry.state = "unloading"
        entry.unloading = task = asyncio.create_task(self._do_unload(entry))
        await asyncio.wait([task])
        task.result()

    async def _do_unload(self, entry: _Entry) -> None:
        try:
            await entry.model.unload()
        finally:
            entry.state = "unloaded"
            entry.expires = math.inf

    async def _reap(self) -> None:
        """Unload idle models whose keep-alive ran out; sleeps until the next expiry or a change."""
        while True:
            now = self.clock()
            for e in list(self._entries.values()):
                if e.state == "loaded" and e.users == 0 and e.expires <= now:
                    try:
                        await self._unload(e)
                    except Exception:
                        log.exception("unloading %s failed", e.model.name)
            self._wake.clear()
            due = [e.expires for e in self._entries.values() if e.state == "loaded" and e.users == 0]
            wait = min(due, default=math.inf) - self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=None if math.isinf(wait) else max(wait, 0.01))
