"""A router model: a Backend over other backends that chooses, falls back, hedges and sheds.

The rule that keeps streams honest: nothing reaches the client before one backend has produced its
first chunk and been committed to. Until then hearth may retry, fall back, start a second backend
when the first misses its first-token deadline (the first to answer wins, the other is cancelled),
or escalate a low-confidence local start to a remote model. After the commit, a failure ends the
stream with an error: the client never sees text from two backends mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Protocol

from hearth.config import RouterModel
from hearth.convo.quality import is_refusal
from hearth.core.errors import UpstreamTimeout
from hearth.core.types import (
    Backend,
    ChatRequest,
    Chunk,
    Finish,
    LocalEngine,
    ModelInfo,
    RouteInfo,
    TextDelta,
    ToolCallDelta,
)
from hearth.routing.attempts import Attempts, Opened, aclose
from hearth.routing.breaker import CircuitBreaker
from hearth.routing.criteria import Criteria
from hearth.routing.policy import RoutingPolicy

log = logging.getLogger("hearth.router")

RouteHook = Callable[[str, str, str, str], None]  # (router, target, reason, moved from)
QualityCheck = Callable[[ChatRequest, str], Awaitable[float]]  # (request, answer so far) -> score in [0, 1]


class TurnStore(Protocol):
    """Which backend answered a conversation's previous turn (hearth.convo.memory.TurnMemory)."""

    async def previous(self, request: ChatRequest, router: str) -> str | None: ...

    def remember(self, request: ChatRequest, router: str, backend: str) -> None: ...


class RouterBackend:
    def __init__(
        self, name: str, cfg: RouterModel, backends: dict[str, Backend], breakers: dict[str, CircuitBreaker],
        on_route: RouteHook | None = None, *, memory: TurnStore | None = None, sticky: Collection[str] = (),
        quality: QualityCheck | None = None,
    ) -> None:
        """`memory` and `sticky`: turns with these intents go back to the backend that answered the previous
        turn. `quality`: scores a local answer's first window for `escalation.min_quality`."""
        self.name = name
        self.cfg = cfg
        self.backends = backends
        self.breakers = breakers
        for b in self._members():
            if b not in breakers:
                bc = cfg.breaker
                breakers[b] = CircuitBreaker(b, bc.failures, bc.error_rate, bc.min_requests, bc.window, bc.cooldown)
        self.policy = RoutingPolicy(cfg, is_local=self.is_local, available=lambda n: self.breakers[n].available())
        self.criteria = Criteria(cfg.fallback_on)
        self._on_route = on_route
        self.memory = memory
        self.sticky = frozenset(sticky)
        self.quality = quality
        self._health_task: asyncio.Task[None] | None = None

    def _members(self) -> set[str]:
        c = self.cfg
        names = {c.default, *(r.target for r in c.rules), *(t.target for t in c.tiers)}
        if c.long_prompt_target:
            names.add(c.long_prompt_target)
        for members in c.groups.values():
            names |= set(members)
        for src, chain in c.fallbacks.items():
            names |= {src, *chain}
        return {n for n in names if n not in c.groups}

    def is_local(self, name: str) -> bool:
        backend = self.backends.get(name)
        return backend is not None and backend.local is not None

    def on_route(self, target: str, reason: str, moved_from: str) -> None:
        if self._on_route is not None:
            self._on_route(self.name, target, reason, moved_from)

    def wants_logprobs(self, name: str) -> bool:
        return self.cfg.escalation is not None and self.is_local(name)

    @property
    def ready(self) -> bool:
        return True

    @property
    def local(self) -> LocalEngine | None:
        return None  # a router is not one engine; its members declare their own

    async def check_health(self) -> None:
        return None  # its members are probed by its own health loop

    async def start(self) -> None:
        if self.cfg.health_interval:
            self._health_task = asyncio.create_task(self._health_loop(self.cfg.health_interval))

    async def close(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, kind="router", owned_by="hearth",
                         extra={"members": sorted(self._members())})

    # --- serving ---------------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if self.cfg.response_format is not None and request.response_format is None and not request.tools:
            # The router's forced format (a JSON-only alias): every member then constrains or validates to it.
            request = dataclasses.replace(request, response_format=self.cfg.response_format)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.total_deadline if self.cfg.total_deadline else None
        previous = None
        intent = request.intent
        if self.memory is not None and intent is not None and intent.label in self.sticky:
            previous = await self.memory.previous(request, self.name)
            if previous not in self._members():
                previous = None
        decision = self.policy.decide(request, previous)
        plan: deque[tuple[str, int]] = deque((n, 0) for n in decision.chain)
        opened = await Attempts(self, request, plan, decision.reason, deadline).run()
        esc = self.cfg.escalation
        if esc is not None and self.is_local(opened.name) and plan:
            judged = await self._judge(request, opened, esc.window)
            if judged is not None:
                await aclose(opened.it)
                log.info("router %s: escalating from %s (%s)", self.name, opened.name, judged)
                local = opened.name
                remote_plan = deque((n, 0) for n, _ in plan if not self.is_local(n))
                opened = await Attempts(self, request, remote_plan, "escalation", deadline).run()
                self.on_route(opened.name, "escalation", local)
        detail = decision.detail if opened.reason == decision.reason else opened.reason
        if opened.rejected:
            detail = f"{detail}; served although {opened.rejected}: every candidate's answer was rejected"
        self.on_route(opened.name, opened.reason, "")
        if self.memory is not None:
            self.memory.remember(request, self.name, opened.name)
        yield RouteInfo(opened.name, opened.reason, detail)
        it = opened.it
        try:
            for c in opened.head:
                yield c
            async for c in it:
                if deadline is not None and loop.time() > deadline:
                    raise UpstreamTimeout(f"router {self.name!r}: total deadline of {self.cfg.total_deadline}s passed")
                yield c
        finally:
            await aclose(it)

    async def _judge(self, request: ChatRequest, opened: Opened, window: int) -> str | None:
        """Read up to `window` tokens of a local answer into its head; say why to escalate, or None to keep it."""
        esc = self.cfg.escalation
        assert esc is not None
        head = opened.head
        while sum(1 for c in head if type(c) is TextDelta) < window and type(head[-1]) is not Finish:
            try:
                head.append(await opened.it.__anext__())
            except StopAsyncIteration:
                break
        texts = [c for c in head if type(c) is TextDelta]
        text = "".join(c.text for c in texts)
        if esc.on_refusal and not text.strip() and not any(type(c) is ToolCallDelta for c in head):
            return "empty answer"
        if esc.on_refusal and is_refusal(text):
            return "refusal"
        lps = [c.logprob for c in texts if c.logprob is not None]
        if lps and sum(lps) / len(lps) < esc.min_mean_logprob:
            return f"mean log-probability {sum(lps) / len(lps):.2f} < {esc.min_mean_logprob}"
        if esc.min_quality is not None and self.quality is not None and text.strip():
            q = await self.quality(request, text)
            if q < esc.min_quality:
                return f"quality {q:.2f} < {esc.min_quality}"
        return None

    # --- health ----------------------------------------------------------------------------------

    async def _health_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.probe_members()

    async def probe_members(self) -> None:
        """Ping each remote member's model list (free on every provider). Failures open the circuit;
        a success closes a circuit that is open or half-open; a healthy closed circuit is left alone,
        so a /models that works never hides completions that fail."""
        for name in sorted(self._members()):
            backend = self.backends.get(name)
            if backend is None or backend.local is not None:
                continue  # a local engine is alive while the process is
            br = self.breakers[name]
            try:
                await asyncio.wait_for(backend.check_health(), timeout=5.0)
                ok = True
            except Exception:
                ok = False
            if not ok:
                br.record(False)
            elif br.state != 0:
                br.record(True)
