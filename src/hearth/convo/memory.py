"""Which backend answered a conversation's previous turn, so that a continuation or a correction goes back to it.

No session is kept: a turn is found by what the next request carries. The request for turn N holds the
messages [u1, a1, ..., uN]; the request for turn N+1 holds the same messages, the answer aN, and uN+1.
So the answer's backend is stored under a digest of turn N's messages, and turn N+1 looks up the digest
of its messages before its last assistant message. System messages are left out (clients put the date or
fresh RAG text there), and so are whitespace differences. A client that sends a conversation id header
is keyed by that id instead.

With `memory: redis` every replica sees the same turns (a user's next turn may land on another replica).
A Redis that is down or slow is skipped with the same short timeout as the cache: the turn is then routed
as if it had no history, which is what happens without this feature.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from hearth.cache.tiers import MemoryLRU, RedisStore
from hearth.core.types import ChatRequest, Message


def _digest(messages: Sequence[Message]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for m in messages:
        if m.role == "system" or m.role == "developer":
            continue
        h.update(m.role.encode())
        h.update(b"\x00")
        h.update(" ".join(m.content.split()).encode())
        h.update(b"\x01")
    return h.hexdigest()


def _scope(request: ChatRequest, router: str) -> str:
    """Turns are remembered per router and per tenant: two keys that both send conversation id "1" (or the
    same opening message) never steer each other. The tenant is the cache namespace the access layer gives
    each key."""
    cache = request.extensions.get("cache")
    tenant = cache.get("namespace", "") if isinstance(cache, dict) else ""
    return f"turn:{router}:{tenant}:"


def record_key(request: ChatRequest, router: str = "") -> str | None:
    """Where the backend that answers this request is stored."""
    if request.intent is not None and request.intent.conversation:
        return _scope(request, router) + "c:" + request.intent.conversation
    if not request.messages:
        return None
    return _scope(request, router) + _digest(request.messages)


def lookup_key(request: ChatRequest, router: str = "") -> str | None:
    """Where the backend that answered the previous turn of this request's conversation was stored."""
    if request.intent is not None and request.intent.conversation:
        return _scope(request, router) + "c:" + request.intent.conversation
    msgs = request.messages
    last_answer = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i].role == "assistant"), None)
    if last_answer is None:
        return None
    return _scope(request, router) + _digest(msgs[:last_answer])


class TurnMemory:
    def __init__(self, ttl: float = 3600.0, *, redis_url: str | None = None, redis_timeout: float = 0.05,
                 max_bytes: int = 4 * 1024 * 1024) -> None:
        self.ttl = ttl
        self.local = MemoryLRU(max_bytes)  # ~50k turns; also the only store without Redis
        self.redis = RedisStore(redis_url, redis_timeout, prefix="hearth:convo:") if redis_url else None
        self._writes: set[asyncio.Task[None]] = set()

    def remember(self, request: ChatRequest, router: str, backend: str) -> None:
        """Called as a router commits to a backend; the Redis write runs in the background, off the stream."""
        key = record_key(request, router)
        if key is None:
            return
        value = backend.encode()
        self.local.set(key, value, self.ttl)
        if self.redis is not None:
            task = asyncio.get_running_loop().create_task(self.redis.set(key, value, self.ttl))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def previous(self, request: ChatRequest, router: str) -> str | None:
        key = lookup_key(request, router)
        if key is None:
            return None
        # Redis first where there is one: another replica may have answered the latest turn.
        value = await self.redis.get(key) if self.redis is not None else None
        if value is None:
            value = self.local.get(key)
        return value.decode() if value else None

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.redis is not None:
            await self.redis.close()
