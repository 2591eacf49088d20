"""The semantic cache: similar questions, in the same context, that the guards agree are the same.

Each namespace (model + everything before the last user turn + sampling class) has its own HNSW index
of question embeddings, so a question is only compared with questions asked in the same context. A
near neighbour above the threshold is still rejected when the guards see a difference that embeddings
blur: other numbers, other names, a negation, or an antonym (enable/disable, 开/关).

Entries are appended to a Redis stream; every replica tails it, so replicas and restarts share one
semantic cache. Embedding runs in one worker thread (numpy releases the GIL in its matrix products).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from hearth.cache.keys import guard_features, guard_rejects
from hearth.cache.tiers import RedisStore

log = logging.getLogger("hearth.cache")
STREAM = "semantic"


@dataclass(slots=True)
class Entry:
    key: str
    features: dict[str, Any]


@dataclass(slots=True)
class SemanticHit:
    key: str
    similarity: float


class _Namespace:
    def __init__(self, dim: int, capacity: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=dim)
        self.capacity = 1024
        self.limit = capacity
        self.index.init_index(max_elements=self.capacity, ef_construction=100, M=16)
        self.index.set_ef(64)
        self.entries: list[Entry] = []

    def add(self, vec: Any, entry: Entry) -> None:
        if len(self.entries) >= self.limit:
            return  # full: new questions are answered but not added (no unbounded growth)
        if len(self.entries) >= self.capacity:
            self.capacity = min(self.capacity * 2, self.limit)
            self.index.resize_index(self.capacity)
        self.index.add_items(vec.reshape(1, -1), [len(self.entries)])
        self.entries.append(entry)


class SemanticIndex:
    def __init__(self, threshold: float, max_entries: int, redis: RedisStore | None) -> None:
        self.threshold = threshold
        self.max_entries = max_entries
        self.redis = redis
        self.spaces: dict[str, _Namespace] = {}
        self._model: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._last_id = "0-0"
        self._sync_task: asyncio.Task[None] | None = None
        self.rejections: dict[str, int] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._load)
        if self.redis is not None:
            await self.sync()
            self._sync_task = asyncio.create_task(self._sync_loop())

    def _load(self) -> None:
        from hearth.embed.local import shared_model

        self._model = shared_model()  # the same weights the embeddings API and RAG use
        self._model.encode(["warm up"])

    async def close(self) -> None:
        if self._sync_task:
            self._sync_task.cancel()
        self._pool.shutdown(wait=False)

    async def embed(self, text: str) -> Any:
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(self._pool, self._model.encode, [text]))[0]

    def size(self) -> int:
        return sum(len(s.entries) for s in self.spaces.values())

    def lookup(self, namespace: str, vec: Any, text: str) -> tuple[SemanticHit | None, str | None]:
        """(hit, None), or (None, the guard that rejected the best candidate, if any)."""
        space = self.spaces.get(namespace)
        if space is None or not space.entries:
            return None, None
        k = min(4, len(space.entries))
        labels, dists = space.index.knn_query(vec.reshape(1, -1), k=k)
        feats = None
        rejected = None
        for label, dist in zip(labels[0], dists[0], strict=True):
            sim = 1.0 - float(dist)  # hnswlib's "ip" distance is 1 - dot product
            if sim < self.threshold:
                break
            entry = space.entries[int(label)]
            feats = feats or guard_features(text)
            why = guard_rejects(feats, entry.features)
            if why is None:
                return SemanticHit(entry.key, sim), None
            rejected = rejected or why
        if rejected:
            self.rejections[rejected] = self.rejections.get(rejected, 0) + 1
        return None, rejected

    def add_local(self, namespace: str, vec: Any, key: str, text: str) -> None:
        space = self.spaces.get(namespace)
        if space is None:
            space = self.spaces[namespace] = _Namespace(vec.shape[0], self.max_entries)
        space.add(vec, Entry(key, guard_features(text)))

    async def add(self, namespace: str, vec: Any, key: str, text: str) -> None:
        if self.redis is None:
            self.add_local(namespace, vec, key, text)
            return
        # Through the shared stream only: this replica picks its own entry up with everyone else's.
        fields = {"ns": namespace.encode(), "key": key.encode(), "text": text.encode(),
                  "vec": vec.astype("float32").tobytes()}
        await self.redis.xadd(STREAM, fields, maxlen=self.max_entries * 4)
        await self.sync()

    async def sync(self) -> None:
        import numpy as np

        assert self.redis is not None
        while True:
            batch = await self.redis.xread(STREAM, self._last_id)
            if not batch:
                return
            for entry_id, f in batch:
                self._last_id = entry_id
                try:
                    vec = np.frombuffer(f[b"vec"], dtype=np.float32)
                    self.add_local(f[b"ns"].decode(), vec, f[b"key"].decode(), f[b"text"].decode())
                except (KeyError, ValueError) as e:
                    log.warning("skipping a malformed semantic cache entry %s: %r", entry_id, e)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.sync()
            except Exception as e:  # never let the sync task die
                log.warning("semantic cache sync failed: %r", e)

    def clear(self) -> None:
        self.spaces.clear()

    def stats(self) -> dict[str, Any]:
        return {"entries": self.size(), "namespaces": len(self.spaces), "guard_rejections": dict(self.rejections)}


def encode_answer(text: str, calls: list[tuple[str, str, str]], finish: str, usage: tuple[int, int] | None) -> bytes:
    return orjson.dumps({"t": text, "c": calls, "f": finish, "u": usage})


def decode_answer(raw: bytes) -> dict[str, Any]:
    return orjson.loads(raw)  # type: ignore[no-any-return]
