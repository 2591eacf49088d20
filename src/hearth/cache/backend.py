"""The response cache as a Backend around each served model: exact (L1 memory, L2 Redis), then semantic.

A hit is replayed in whatever API and mode the client used: chunked when it streams (so clients that
expect several chunks work), with the original usage. An answer is stored only after it finished
cleanly; a stream that failed or was cut off by the client is never cached.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from hearth.cache.keys import exact_key, last_user_text, semantic_namespace, uncacheable_reason
from hearth.cache.semantic import SemanticIndex, decode_answer, encode_answer
from hearth.cache.tiers import MemoryLRU, RedisStore
from hearth.config import CacheConfig
from hearth.core.collect import Collected
from hearth.core.types import (
    Backend,
    CacheInfo,
    ChatRequest,
    Chunk,
    Finish,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from hearth.core.wrapper import WrappingBackend

log = logging.getLogger("hearth.cache")
CacheEvent = Callable[[str, Any], None]
_PIECES = re.compile(r"\S{1,16}\s*|\s+")  # a word (or 16 characters of a long one) per replayed chunk


@dataclass(slots=True)
class CacheControl:
    no_cache: bool = False  # do not answer from the cache
    no_store: bool = False  # do not store this answer
    opted_in: bool = False
    ttl: float | None = None
    namespace: str = ""

    @classmethod
    def from_request(cls, req: ChatRequest) -> CacheControl:
        c = req.extensions.get("cache")
        if not isinstance(c, dict):
            return cls()
        ttl = c.get("ttl")
        ttl_s = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else None
        return cls(bool(c.get("no_cache")), bool(c.get("no_store")), bool(c.get("enabled")), ttl_s,
                   str(c.get("namespace") or ""))


class ResponseCache:
    """Shared by every model's CacheBackend: the stores, the semantic index, and counters."""

    def __init__(self, cfg: CacheConfig, on_event: CacheEvent | None = None) -> None:
        self.cfg = cfg
        self.l1 = MemoryLRU(cfg.memory_bytes)
        self.redis = RedisStore(cfg.redis_url, cfg.redis_timeout) if cfg.redis_url else None
        self.semantic = (
            SemanticIndex(cfg.semantic.threshold, cfg.semantic.max_entries, self.redis)
            if cfg.semantic.enabled
            else None
        )
        self.counts = {"hit": 0, "semantic": 0, "miss": 0, "stored": 0}
        # (kind, value): "lookup" with seconds, "guard" with the refusing guard, or a result with 1 (metrics)
        self.on_event: CacheEvent = on_event or (lambda kind, value: None)

    async def start(self) -> None:
        if self.semantic is not None:
            await self.semantic.start()

    async def close(self) -> None:
        if self.semantic is not None:
            await self.semantic.close()
        if self.redis is not None:
            await self.redis.close()

    async def get(self, key: str) -> bytes | None:
        value = self.l1.get(key)
        if value is None and self.redis is not None:
            value = await self.redis.get(key)
            if value is not None:
                self.l1.set(key, value, self.cfg.ttl)  # warm L1 from the shared L2
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        self.l1.set(key, value, ttl)
        if self.redis is not None:
            await self.redis.set(key, value, ttl)

    async def clear(self) -> dict[str, int]:
        n = len(self.l1.items)
        self.l1.clear()
        removed = await self.redis.clear() if self.redis is not None else 0
        if self.semantic is not None:
            self.semantic.clear()
        return {"memory_entries": n, "redis_keys": removed}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.counts, "memory_entries": len(self.l1.items), "memory_bytes": self.l1.bytes,
                               "memory_evictions": self.l1.evictions,
                               "redis_errors": self.redis.errors if self.redis else 0}
        if self.semantic is not None:
            out["semantic"] = self.semantic.stats()
        return out


class CacheBackend(WrappingBackend):
    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        ctl = CacheControl.from_request(request)
        if uncacheable_reason(request, self.cache.cfg.policy, ctl.opted_in) or (ctl.no_cache and ctl.no_store):
            return self.inner.stream(request)
        return self._cached(request, ctl)

    async def _cached(self, req: ChatRequest, ctl: CacheControl) -> AsyncIterator[Chunk]:
        cache = self.cache
        key = exact_key(self.name, req, ctl.namespace)
        vec = None
        sem = cache.semantic
        if req.intent is not None and req.intent.has(*NO_NEAR_MATCH):
            sem = None  # the same words mean something else after a different previous answer
        text = last_user_text(req)
        if not ctl.no_cache:
            t0 = time.perf_counter()
            raw = await cache.get(key)
            kind, similarity = "hit", None
            if raw is None and sem is not None and text:
                vec = await sem.embed(text)
                hit, rejected = sem.lookup(semantic_namespace(self.name, req, ctl.namespace), vec, text)
                if rejected:
                    cache.on_event("guard", rejected)
                if hit is not None:
                    raw = await cache.get(hit.key)
                    kind, similarity = "semantic", hit.similarity
            cache.on_event("lookup", time.perf_counter() - t0)
            if raw is not None:
                cache.counts[kind] += 1
                cache.on_event(kind, 1)
                yield CacheInfo(kind, similarity)
                for c in _replay(decode_answer(raw), req.stream):
                    yield c
                return
        cache.counts["miss"] += 1
        cache.on_event("miss", 1)
        yield CacheInfo("miss")
        answer = Collected()
        async for c in self.inner.stream(req):
            answer.add(c)
            if type(c) is Finish and not ctl.no_store and c.reason in ("stop", "length", "tool_calls"):
                u = answer.usage
                calls = [(x.id or "", x.name or "", x.arguments) for x in answer.tool_calls]
                tokens = (u.prompt_tokens, u.completion_tokens) if u else None
                value = encode_answer(answer.text, calls, c.reason, tokens)
                await cache.put(key, value, ctl.ttl or cache.cfg.ttl)
                cache.counts["stored"] += 1
                if sem is not None and text:
                    vec = vec if vec is not None else await sem.embed(text)
                    await sem.add(semantic_namespace(self.name, req, ctl.namespace), vec, key, text)
            yield c


# Turns whose meaning depends on the answer before them or on the clock: never answered by a near match.
NO_NEAR_MATCH = ("task_continuation", "correction", "clarification", "time_sensitive")


def _replay(a: dict[str, Any], stream: bool) -> list[Chunk]:
    out: list[Chunk] = []
    text = a["t"]
    if text:
        if stream:  # token-sized pieces, like a live stream, for clients that expect several chunks
            out += [TextDelta(piece) for piece in _PIECES.findall(text)] or [TextDelta(text)]
        else:
            out.append(TextDelta(text))
    for i, (cid, name, args) in enumerate(a["c"]):
        out.append(ToolCallDelta(i, cid or None, name, args))
    if a["u"]:
        p, c = a["u"]
        out.append(Usage(p, c, cached_tokens=p))
    out.append(Finish(a["f"]))
    return out
