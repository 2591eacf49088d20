"""Where cached answers live: an in-process LRU (L1) and Redis (L2, shared by replicas).

The LRU is bounded by bytes, not rows: a flood of unique prompts with long answers cannot grow memory
past the budget. Redis is optional and never fails a request: every call has a short timeout, and an
error or a timeout counts as a miss (and a metric), after which the request goes on to the backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger("hearth.cache")


class MemoryLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.evictions = 0

    def get(self, key: str) -> bytes | None:
        item = self.items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._drop(key)
            return None
        self.items.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        size = len(value) + len(key) + 64
        if size > self.max_bytes:
            return
        if key in self.items:
            self._drop(key)
        self.items[key] = (time.monotonic() + ttl, value)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old, _ = next(iter(self.items.items()))
            self._drop(old)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        _, value = self.items.pop(key)
        self.bytes -= len(value) + len(key) + 64

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0


class RedisStore:
    def __init__(self, url: str, timeout: float, prefix: str = "hearth:") -> None:
        self.url = url
        self.timeout = timeout
        self.prefix = prefix
        self._client: Any = None
        self.errors = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout * 4,
                                                socket_connect_timeout=self.timeout * 4)
        return self._client

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except Exception as e:  # down, slow, or refusing: a miss, never a failed request
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.warning("redis %s failed (%s errors so far): %r", what, self.errors, e)
            return None

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", self.client.get(self.prefix + key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call("set", self.client.set(self.prefix + key, value, px=int(ttl * 1000)))

    async def xadd(self, stream: str, fields: dict[str, bytes], maxlen: int) -> None:
        await self._call("xadd", self.client.xadd(self.prefix + stream, fields, maxlen=maxlen, approximate=True))

    async def xread(self, stream: str, after: str, count: int = 1000) -> list[tuple[str, dict[bytes, bytes]]]:
        got = await self._call("xread", self.client.xread({self.prefix + stream: after}, count=count))
        if not got:
            return []
        return [(i.decode() if isinstance(i, bytes) else i, f) for i, f in got[0][1]]

    async def clear(self) -> int:
        n = 0
        async for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            await self.client.delete(key)
            n += 1
        return n

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
