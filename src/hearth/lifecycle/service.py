"""Pulled models while the gateway runs: pull, copy and remove them, and serve them without a restart.

A pull runs in a worker thread and keeps running when the client that asked for it goes away (Ollama
cancels it, and users asked for background pulls, ollama#4345); a second pull of the same name while one
runs follows the running one instead of downloading twice. Served models are built by the caller's
`make_leaf` and handed to `serve` (the composition root wraps them in the per-model stages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from hearth.config import Config, LocalModel
from hearth.core.errors import BadRequest, HearthError, ModelNotFound
from hearth.core.types import Backend
from hearth.lifecycle.names import parse_ref
from hearth.lifecycle.pull import Progress, Puller
from hearth.lifecycle.residency import Residency
from hearth.lifecycle.store import Manifest, ModelStore

if TYPE_CHECKING:
    from hearth.backends.llamacpp import LlamaCppBackend

log = logging.getLogger("hearth.lifecycle")

Serve = Callable[[str, Backend, LocalModel], None]


class _Pull:
    """One pull under way: its progress lines, kept so a late follower sees where it is."""

    def __init__(self) -> None:
        self.lines: list[Progress] = []
        self.changed = asyncio.Event()
        self.done = False
        self.error: BaseException | None = None


class LocalModels:
    def __init__(self, cfg: Config, residency: Residency, serve: Serve, unserve: Callable[[str], None],
                 local: dict[str, LlamaCppBackend], store: ModelStore,
                 on_added: Callable[[], Awaitable[None]] | None = None) -> None:
        """`on_added` runs after a pull is served (the adapters put themselves back on a model pulled again)."""
        self.cfg = cfg
        self._local = local  # the roll of local models adapters attach to: pulled ones join and leave it
        self.store = store
        self._on_added = on_added
        self.residency = residency
        self._serve = serve
        self._unserve = unserve
        self._pulls: dict[str, _Pull] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one change of the served set at a time (syncs, pulls ending, copy, remove)
        self._cancel = threading.Event()  # set at shutdown: running transfers stop (their partial files stay)
        self.leaves: dict[str, LlamaCppBackend] = {}

    def _reserved(self) -> set[str]:
        return {n for name, m in self.cfg.models.items() for n in (name, *m.aliases)}

    def puller(self) -> Puller:
        local = self.cfg.local
        return Puller(self.store, endpoint=local.hub_endpoint, token=os.environ.get(local.hub_token_env) or None,
                      cancel=self._cancel)

    async def start(self) -> None:
        """Serve every model pulled before (listed, not loaded: each loads at its first request)."""
        await self.sync()

    async def sync(self) -> None:
        """Serve what the store holds and nothing else (listings call this, so they are never stale). Never
        waits for answers: a removed model stops being served at once and unloads when its answers end."""
        on_disk = {m.name: m for m in await asyncio.to_thread(self.store.entries) if m.name not in self._reserved()}
        async with self._lock:
            for name in [n for n in self.leaves if n not in on_disk and n not in self._pulls]:
                self._drop(name)
            for name, m in on_disk.items():
                leaf = self.leaves.get(name)
                if name in self._pulls:
                    continue
                if leaf is not None and leaf.digest != m.digest:
                    self._drop(name)  # replaced by a pull elsewhere
                    leaf = None
                if leaf is None:
                    try:
                        await self._add(m)
                    except HearthError as e:
                        log.error("pulled model %s cannot be served: %s", name, e.message)

    async def close(self) -> None:
        self._cancel.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _add(self, m: Manifest) -> None:
        from hearth.backends.llamacpp import LlamaCppBackend

        local = self.cfg.local
        trained = int(m.details.get("context_length") or 0)
        cfg = LocalModel(n_ctx=min(local.n_ctx, trained) if trained >= 64 else local.n_ctx, preload=False)
        leaf = LlamaCppBackend(m.name, cfg, self.residency, paths=self.store.paths(m), digest=m.digest,
                               preload=False)
        self.residency.register(leaf, self.residency.default_keep_alive)
        await leaf.start()  # reads the header; loads nothing
        self.leaves[m.name] = leaf
        self._local[m.name] = leaf
        self._serve(m.name, leaf, cfg)

    # --- pull ------------------------------------------------------------------------------------------

    async def pull(self, name: str) -> AsyncIterator[Progress]:
        """Progress lines of the pull of `name`, ending with "success"; raises what failed it."""
        if name in self._reserved():
            raise BadRequest(f"{name!r} is a model of the config, not one to pull", param="model")
        ref = parse_ref(name)
        if ref.name in self._reserved():
            raise BadRequest(f"{ref.name!r} is a model of the config, not one to pull", param="model")
        pull = self._pulls.get(ref.name)
        if pull is None:
            pull = self._pulls[ref.name] = _Pull()
            loop = asyncio.get_running_loop()

            def report(p: Progress) -> None:
                loop.call_soon_threadsafe(_append, pull, p)

            task = asyncio.create_task(self._run(ref.name, pull, lambda: self.puller().pull(ref, report)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        seen = 0
        while True:
            while seen < len(pull.lines):
                seen += 1
                yield pull.lines[seen - 1]
            if pull.done:
                if pull.error is not None:
                    raise pull.error
                return
            pull.changed.clear()
            if seen == len(pull.lines) and not pull.done:
                await pull.changed.wait()

    async def _run(self, name: str, pull: _Pull, work: Callable[[], Manifest]) -> None:
        try:
            manifest = await asyncio.to_thread(work)
            async with self._lock:
                if name in self.leaves:  # pulled again: the new files replace the old ones
                    self._drop(name)
                await self._add(manifest)
            if self._on_added is not None:
                await self._on_added()
            _append(pull, Progress("success"))
        except BaseException as e:
            pull.error = e if isinstance(e, HearthError) else HearthError(f"pull failed: {e}")
            log.warning("pull of %s failed: %s", name, e)
        finally:
            pull.done = True
            pull.changed.set()
            self._pulls.pop(name, None)

    # --- copy, remove, load ---------------------------------------------------------------------------

    async def copy(self, source: str, destination: str) -> None:
        src = self._known(source)
        dst = parse_ref(destination).name if "/" in destination else destination.strip().removesuffix(":latest")
        if not dst or any(c.isspace() or c in "+\\" for c in dst):
            raise BadRequest(f"destination: {destination!r} is not a model name (no spaces, '+' or '\\')",
                             param="destination")
        async with self._lock:
            if dst in self._reserved() or dst in self.leaves:
                raise BadRequest(f"destination {dst!r} exists already", param="destination")
            m = await asyncio.to_thread(self.store.copy, src, dst)
            await self._add(m)

    async def remove(self, name: str) -> None:
        """The manifest goes first: a sync in between cannot serve the model again."""
        async with self._lock:
            key = self._known(name)
            await asyncio.to_thread(self.store.remove, key)
            self._drop(key)

    def _drop(self, name: str) -> None:
        """Stop serving `name` now; unload and close it in the background once its running answers end."""
        self._unserve(name)
        leaf = self.leaves.pop(name, None)
        self._local.pop(name, None)
        if leaf is not None:
            self.residency.retire(leaf)  # now, before a new version of the name registers
            task = asyncio.create_task(self._retire(leaf))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retire(self, leaf: LlamaCppBackend) -> None:
        await self.residency.forget(leaf)
        await leaf.close()

    def _known(self, name: str) -> str:
        for candidate in (name, name.removesuffix(":latest")):
            if candidate in self.leaves:
                return candidate
        with contextlib.suppress(BadRequest):
            ref = parse_ref(name)
            if ref.name in self.leaves:
                return ref.name
        if name in self._reserved():
            raise BadRequest(f"model {name!r} is defined in the config; change it there", param="model")
        raise ModelNotFound(f"model {name!r} not found")


def _append(pull: _Pull, p: Progress) -> None:
    pull.lines.append(p)
    pull.changed.set()
