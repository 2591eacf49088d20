"""Circuit breakers shared by replicas through Redis: a provider one replica finds down is down for all.

Without this, each of N replicas has to fail `failures` requests of its own before it stops sending
traffic to a dead provider (N times the failed requests and the waiting). Here a replica whose breaker
opens publishes it on a Redis channel (and keeps it in a key that expires with the cooldown, for replicas
that start or reconnect later); every replica applies it at once, within milliseconds. A replica whose
half-open probe succeeds publishes the close the same way.

Redis is an accelerator, never a dependency: if it is down, each replica's breakers work on their own as
before, and the subscriber reconnects every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from hearth.routing.breaker import CircuitBreaker, State

log = logging.getLogger("hearth.router")

CHANNEL = "hearth:breakers"
CATCH_UP = 5.0  # seconds between reads of the keys, besides the channel
KEY = "hearth:breaker:"


class SharedBreakers:
    def __init__(self, redis_url: str, breakers: Mapping[str, CircuitBreaker], timeout: float = 0.5) -> None:
        self.url = redis_url
        self.breakers = breakers
        self.timeout = timeout
        self.me = uuid.uuid4().hex  # our own messages come back on the channel: skip them
        self._client: Any = None
        self._listener: Any = None  # its own connection: a subscription waits on reads without a timeout
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.applied = 0  # changes taken from other replicas
        self._closed = False
        for b in breakers.values():
            b.on_change = self._changed

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                                socket_connect_timeout=self.timeout)
        return self._client

    @property
    def listener(self) -> Any:
        if self._listener is None:
            import redis.asyncio as redis

            self._listener = redis.Redis.from_url(self.url, socket_connect_timeout=self.timeout,
                                                  socket_keepalive=True, health_check_interval=5)
        return self._listener

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        self._closed = True
        for b in self.breakers.values():
            b.on_change = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writes:
            await asyncio.wait(self._writes, timeout=1.0)
        for client in (self._client, self._listener):
            if client is not None:
                await client.aclose()
        self._client = self._listener = None

    # --- ours, to the others --------------------------------------------------------------------------

    def _changed(self, breaker: CircuitBreaker, state: State) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside the gateway's loop (a CLI explaining a route): nothing to share
        task = loop.create_task(self._publish(breaker.name, state, breaker.cooldown))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _publish(self, name: str, state: State, cooldown: float) -> None:
        # The remaining cooldown travels, not a wall-clock time: replicas' clocks need not agree. A replica
        # applies it for what is left of the sender's cooldown.
        msg = json.dumps({"from": self.me, "backend": name, "state": int(state), "remaining": cooldown})
        try:
            if state is State.OPEN:
                await self.client.set(KEY + name, msg, px=max(1, int(cooldown * 1000)))
            else:
                await self.client.delete(KEY + name)
            await self.client.publish(CHANNEL, msg)
        except Exception as e:  # the local breaker still holds; others find out by their own failures
            log.warning("could not share the circuit state of %s: %r", name, e)

    # --- the others', to ours -------------------------------------------------------------------------

    def _apply(self, raw: bytes | str, remaining: float | None = None) -> None:
        """`remaining`: for a key read on catch-up, what its TTL says is left (the message has the full one)."""
        try:
            msg = json.loads(raw)
            breaker = self.breakers.get(msg["backend"])
            if breaker is None or msg.get("from") == self.me:
                return
            if msg["state"] == State.OPEN:
                left = float(msg["remaining"]) if remaining is None else remaining
                if breaker.state is State.OPEN and breaker.available() is False:
                    return  # already open here: do not restart its cooldown
                breaker.apply_open(left)
            else:
                breaker.apply_closed()
            self.applied += 1
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignored a malformed circuit message: %r", e)

    async def _catch_up(self) -> None:
        """What was decided while we were not listening (a new replica, a Redis reconnect): the keys."""
        for name in self.breakers:
            raw = await self.client.get(KEY + name)
            if raw is not None:
                ttl = await self.client.pttl(KEY + name)
                if ttl and ttl > 0:
                    self._apply(raw, ttl / 1000)

    async def _follow(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = self.listener.pubsub()
                await pubsub.subscribe(CHANNEL)
                await self._catch_up()
                last = time.monotonic()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=CATCH_UP)
                    if message is not None and message.get("type") == "message":
                        self._apply(message["data"])
                    if time.monotonic() - last >= CATCH_UP:  # a message lost in a reconnect is found here
                        await self._catch_up()
                        last = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("circuit sharing: Redis unavailable (%r); retrying in 1 s", e)
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
