"""LoRA adapters served on local models, added and removed while the gateway runs.

A request names `<base>+<adapter>` (or an alias of the adapter): the resolver below sends it to the base
model's stack with `ChatRequest.adapter` set, and the engine runs its steps under that adapter. Adapters
share the base model's weights in memory (an adapter is a few MB); each has its own KV prefix cache.

Adapters added at run time (`POST /admin/adapters`, `hearth adapter add`) are copied into the model store
(`blobs/`, by sha256) with a small manifest under `adapters/`, so they survive a restart and every replica
sharing the folder serves them; the ones in the config are served from their own files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.config import Config
from hearth.core.errors import BadRequest, HearthError, ModelNotFound
from hearth.core.registry import ModelRegistry
from hearth.core.types import Backend, ChatRequest
from hearth.gguf_meta import NotGguf, read_meta
from hearth.lifecycle.store import ModelStore

if TYPE_CHECKING:
    from hearth.backends.llamacpp import LlamaCppBackend

log = logging.getLogger("hearth.lifecycle")
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    base: str
    path: str  # the file served (a blob in the store, or the config's file)
    scale: float
    digest: str
    added_at: float
    aliases: tuple[str, ...] = ()
    configured: bool = False

    @property
    def key(self) -> str:
        """What the engine, its prefix cache and the response cache know the adapter by: its name and its
        content, so that a new file under an old name never meets the old one's cached keys and answers."""
        return f"{self.name}@{self.digest.removeprefix('sha256:')[:16]}"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def check_adapter_file(path: Path, family: str) -> None:
    """A LoRA GGUF for a model of `family`, else a BadRequest that says which it is."""
    try:
        meta = read_meta(path)
    except NotGguf as e:
        raise BadRequest(f"{path.name}: {e}", param="path") from None
    except OSError as e:
        raise BadRequest(f"cannot read {path}: {e.strerror or e}", param="path") from None
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise BadRequest(f"{path.name} is not a LoRA adapter (general.type {meta.get('general.type')!r})",
                         param="path")
    arch = str(meta.get("general.architecture", ""))
    if family and arch != family:
        raise BadRequest(f"{path.name} is an adapter for a {arch} model; the base model is {family}", param="base")


class Adapters:
    def __init__(self, cfg: Config, store: ModelStore, registry: ModelRegistry,
                 local: Callable[[], dict[str, LlamaCppBackend]]) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self._local = local  # the local llama.cpp models by name, configured and pulled
        self.entries: dict[str, AdapterEntry] = {}
        self._aliases: dict[str, str] = {}  # alias -> adapter name
        self._lock = asyncio.Lock()

    @property
    def folder(self) -> Path:
        return self.store.root / "adapters"

    # --- the resolver: `base+adapter` and aliases ----------------------------------------------------

    def __call__(self, request: ChatRequest, registry: ModelRegistry) -> tuple[str, Backend] | None:
        model = request.model
        if model in registry.chat:
            return None  # a model's own name, even one with a '+' in it
        if model in self._aliases:
            entry = self.entries[self._aliases[model]]
        elif "+" in model:
            base, _, name = model.rpartition("+")
            entry_or_none = self.entries.get(name)
            if entry_or_none is None or registry.canonical(base) != entry_or_none.base:
                known = ", ".join(f"{e.base}+{e.name}" for e in self.entries.values()) or "none"
                raise ModelNotFound(f"model {model!r} not found: no adapter {name!r} on {base!r} (adapters: {known})",
                                    param="model")
            entry = entry_or_none
        else:
            return None
        request.adapter = entry.key
        return f"{entry.base}+{entry.name}", registry.get(entry.base)

    # --- adding and removing -------------------------------------------------------------------------

    def _leaf(self, base: str) -> LlamaCppBackend:
        local = self._local()
        try:
            name = self.registry.canonical(base)
        except HearthError:
            name = base
        leaf = local.get(name)
        if leaf is None:
            raise BadRequest(f"base {base!r} is not a local model; adapters run on: {', '.join(local) or 'none'}",
                             param="base")
        return leaf

    def default_base(self) -> str:
        local = list(self._local())
        if len(local) != 1:
            raise BadRequest(f"name the base model (local models: {', '.join(local) or 'none'})", param="base")
        return local[0]

    async def add(self, name: str, source: Path, base: str | None = None, scale: float = 1.0) -> AdapterEntry:
        """Copy `source` into the store and serve it as `<base>+<name>`. Nothing is kept when it fails."""
        if not name or not set(name) <= _NAME_OK:
            raise BadRequest("name: letters, digits, '-', '_' and '.' only", param="name")
        async with self._lock:
            if name in self.entries:
                raise BadRequest(f"adapter {name!r} exists already; remove it first", param="name")
            leaf = self._leaf(base or self.default_base())
            await asyncio.to_thread(check_adapter_file, source, leaf.family)
            blob, digest = await asyncio.to_thread(self._copy_in, source)
            entry = AdapterEntry(name, leaf.name, str(blob), scale, digest, time.time())
            try:
                # Loaded for the check if it is not: llama.cpp's own test of the tensor shapes is the one that
                # tells a 0.5B's adapter from a 1.5B's of the same family.
                async with leaf.residency.hold(leaf):
                    await leaf.add_adapter(entry.key, str(blob), scale)
            except BaseException:
                await asyncio.to_thread(self._drop_blob, digest)
                raise
            await asyncio.to_thread(self._write, entry)
            self._serve(entry)
            return entry

    def save(self, name: str, source: Path, base: str, family: str, scale: float = 1.0) -> AdapterEntry:
        """Put an adapter in the store without a gateway (`hearth adapter add`): a running gateway serves it
        at its next look at the store; llama.cpp's own check of the tensor shapes happens there."""
        if not name or not set(name) <= _NAME_OK:
            raise BadRequest("name: letters, digits, '-', '_' and '.' only", param="name")
        if name in self._read_all():
            raise BadRequest(f"adapter {name!r} exists already; remove it first", param="name")
        check_adapter_file(source, family)
        blob, digest = self._copy_in(source)
        entry = AdapterEntry(name, base, str(blob), scale, digest, time.time())
        self._write(entry)
        return entry

    def delete(self, name: str) -> None:
        """Remove a stored adapter without a gateway (`hearth adapter rm`)."""
        entry = self._read_all().get(name)
        if entry is None:
            raise ModelNotFound(f"adapter {name!r} not found")
        self._manifest(name).unlink(missing_ok=True)
        self._drop_blob(entry.digest)

    def stored(self) -> list[AdapterEntry]:
        return list(self._read_all().values())

    async def remove(self, name: str) -> None:
        async with self._lock:
            entry = self.entries.get(name)
            if entry is None:
                raise ModelNotFound(f"adapter {name!r} not found")
            if entry.configured:
                raise BadRequest(f"adapter {name!r} is defined in the config; remove it there", param="name")
            leaf = self._local().get(entry.base)
            if leaf is not None:
                await leaf.remove_adapter(entry.key)  # 409 while it answers: nothing changes then
            self._unserve(entry)
            await asyncio.to_thread(self._manifest(name).unlink, True)
            await asyncio.to_thread(self._drop_blob, entry.digest)

    def _serve(self, entry: AdapterEntry) -> None:
        for alias in entry.aliases:
            taken = alias in self.registry.chat or alias in self.registry.embedders or alias in self.registry.aliases
            if taken and self._aliases.get(alias) != entry.name:
                raise BadRequest(f"adapter {entry.name!r}: {alias!r} is already a model's name", param="aliases")
        self.entries[entry.name] = entry
        self.registry.aliases[f"{entry.base}+{entry.name}"] = entry.base  # listed, and allowed where its base is
        for alias in entry.aliases:
            self._aliases[alias] = entry.name
            self.registry.aliases[alias] = entry.base

    def _unserve(self, entry: AdapterEntry) -> None:
        self.entries.pop(entry.name, None)
        self.registry.aliases.pop(f"{entry.base}+{entry.name}", None)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)
            self.registry.aliases.pop(alias, None)

    # --- start-up and the store ------------------------------------------------------------------------

    async def start(self) -> None:
        for name, a in self.cfg.local.adapters.items():
            leaf = self._leaf(a.base)
            path = Path(a.path).expanduser()
            await asyncio.to_thread(check_adapter_file, path, leaf.family)
            digest = await asyncio.to_thread(_digest, path)
            entry = AdapterEntry(name, leaf.name, str(path), a.scale, digest, 0.0, tuple(a.aliases), True)
            await leaf.add_adapter(entry.key, str(path), a.scale)
            self._serve(entry)
        await self.sync()

    async def sync(self) -> None:
        """Serve what the store's manifests list (an adapter added or replaced from the command line, or by a
        replica), and put adapters back on a base model that came back without them (pulled again). One
        adapter that cannot change now (busy, a bad file) does not stop the others."""
        async with self._lock:
            on_disk = await asyncio.to_thread(self._read_all)
            for entry in list(self.entries.values()):
                fresh = on_disk.get(entry.name)
                if entry.configured or (fresh is not None and fresh.digest == entry.digest):
                    continue
                try:
                    await self._detach(entry)
                except HearthError as e:
                    log.info("adapter %s stays until its answers end: %s", entry.name, e.message)
            for entry in [*on_disk.values(), *(e for e in self.entries.values() if e.configured)]:
                leaf = self._local().get(entry.base)
                if leaf is None:
                    continue  # its base is not served here (yet)
                if entry.name in self.entries and entry.key in leaf.adapters:
                    continue
                try:
                    await leaf.add_adapter(entry.key, entry.path, entry.scale)
                    self._serve(entry)
                except HearthError as e:
                    log.error("adapter %s cannot be served on %s: %s", entry.name, entry.base, e.message)

    async def _detach(self, entry: AdapterEntry) -> None:
        leaf = self._local().get(entry.base)
        if leaf is not None:
            await leaf.remove_adapter(entry.key)
        self._unserve(entry)

    def _manifest(self, name: str) -> Path:
        return self.folder / (urllib.parse.quote(name, safe="") + ".json")

    def _read_all(self) -> dict[str, AdapterEntry]:
        out: dict[str, AdapterEntry] = {}
        for p in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                d = json.loads(p.read_text())
                entry = AdapterEntry(d["name"], d["base"], d["path"], float(d["scale"]), d["digest"],
                                     float(d["added_at"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if Path(entry.path).is_file():
                out[entry.name] = entry
        return out

    def _write(self, entry: AdapterEntry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._manifest(entry.name)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            d = asdict(entry)
            d.pop("aliases")
            d.pop("configured")
            tmp.write_text(json.dumps(d, indent=1))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _copy_in(self, source: Path) -> tuple[Path, str]:
        self.store.blobs.mkdir(parents=True, exist_ok=True)
        tmp = self.store.blobs / f".adapter.{uuid.uuid4().hex}.tmp"
        h = hashlib.sha256()
        try:
            with source.open("rb") as src, tmp.open("wb") as out:
                while block := src.read(4 << 20):
                    h.update(block)
                    out.write(block)
            digest = f"sha256:{h.hexdigest()}"
            return self.store.adopt(tmp, digest), digest
        except OSError as e:
            raise BadRequest(f"cannot copy the adapter {source}: {e.strerror or e}", param="path") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _drop_blob(self, digest: str) -> None:
        """Delete the blob unless a model or another adapter still uses it (called once the manifest is gone,
        or was never written)."""
        if digest and digest not in self.store.used_digests():
            self.store.blob_path(digest).unlink(missing_ok=True)
