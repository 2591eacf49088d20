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
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from hearth.config import RouterModel
from hearth.core.errors import ContextLengthExceeded, HearthError, Overloaded, UpstreamError, UpstreamTimeout
from hearth.core.types import Backend, ChatRequest, Chunk, Finish, ModelInfo, RouteInfo, TextDelta
from hearth.routing.breaker import CircuitBreaker
from hearth.routing.policy import Decision, RoutingPolicy

log = logging.getLogger("hearth.router")

_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry, i|i can(not|'t) (help|assist|answer)|as an ai|"
    r"抱歉|对不起|我无法|我不能|作为一个?(ai|人工智能))",
    re.IGNORECASE,
)

Attempt = tuple[AsyncIterator[Chunk], Chunk]


async def _close(it: AsyncIterator[Chunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(BaseException):
            await aclose()


def _fallback_ok(e: BaseException) -> bool:
    """Errors another backend might not have. A request that is itself wrong fails everywhere."""
    if isinstance(e, ContextLengthExceeded):
        return True  # the next model may have a longer context
    if isinstance(e, HearthError):
        return e.status not in (400, 404, 413, 422) or isinstance(e, UpstreamError)
    return isinstance(e, (OSError, asyncio.TimeoutError, StopAsyncIteration))


def _retryable(e: BaseException) -> bool:
    """Transient provider failures worth trying again on the same backend."""
    return isinstance(e, UpstreamError) and e.code != "upstream_auth_failed" and e.status in (429, 502, 503, 504)


def _counts_against_health(e: BaseException) -> bool:
    return isinstance(e, UpstreamError) and e.status != 429


class RouterBackend:
    def __init__(self, name: str, cfg: RouterModel, backends: dict[str, Backend], breakers: dict[str, CircuitBreaker]):
        self.name = name
        self.cfg = cfg
        self.backends = backends
        self.breakers = breakers
        for b in self._members():
            if b not in breakers:
                bc = cfg.breaker
                breakers[b] = CircuitBreaker(b, bc.failures, bc.error_rate, bc.min_requests, bc.window, bc.cooldown)
        self.policy = RoutingPolicy(cfg, is_local=self.is_local, available=lambda n: self.breakers[n].available())
        self.on_route: Callable[[str, str, str], None] = lambda target, reason, frm: None
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
        return hasattr(self.backends.get(name), "queue_depth")

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        if self.cfg.health_interval:
            self._health_task = asyncio.create_task(self._health_loop(self.cfg.health_interval))

    async def close(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, backend="router", owned_by="hearth",
                         extra={"members": sorted(self._members())})  # fmt: skip

    def decide(self, request: ChatRequest) -> Decision:
        return self.policy.decide(request)

    # --- serving ---------------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.total_deadline if self.cfg.total_deadline else None
        decision = self.policy.decide(request)
        plan: deque[tuple[str, int]] = deque((n, 0) for n in decision.chain)
        name, reason, it, first = await self._open(request, plan, decision.reason, deadline)
        esc = self.cfg.escalation
        if esc is not None and self.is_local(name) and plan:
            buffered, judged = await self._judge(it, first, esc.window)
            if judged is not None:
                await _close(it)
                log.info("router %s: escalating from %s (%s)", self.name, name, judged)
                local = name
                remote_plan = deque((n, 0) for n, _ in plan if not self.is_local(n))
                name, reason, it, first = await self._open(request, remote_plan, "escalation", deadline)
                self.on_route(name, "escalation", local)
                buffered = [first]
            reason_detail = decision.detail if reason == decision.reason else reason
        else:
            buffered = [first]
            reason_detail = decision.detail if reason == decision.reason else reason
        self.on_route(name, reason, "")
        yield RouteInfo(name, reason, reason_detail)
        try:
            for c in buffered:
                yield c
            async for c in it:
                if deadline is not None and loop.time() > deadline:
                    raise UpstreamTimeout(f"router {self.name!r}: total deadline of {self.cfg.total_deadline}s passed")
                yield c
        finally:
            await _close(it)

    async def _judge(self, it: AsyncIterator[Chunk], first: Chunk, window: int) -> tuple[list[Chunk], str | None]:
        """Read up to `window` tokens of a local answer; say why to escalate, or None to keep it."""
        esc = self.cfg.escalation
        assert esc is not None
        buffered = [first]
        while sum(1 for c in buffered if type(c) is TextDelta) < window and type(buffered[-1]) is not Finish:
            try:
                buffered.append(await it.__anext__())
            except StopAsyncIteration:
                break
        texts = [c for c in buffered if type(c) is TextDelta]
        text = "".join(c.text for c in texts)
        if esc.on_refusal and not text.strip() and not any(type(c).__name__ == "ToolCallDelta" for c in buffered):
            return buffered, "empty answer"
        if esc.on_refusal and _REFUSAL.search(text):
            return buffered, "refusal"
        lps = [c.logprob for c in texts if c.logprob is not None]
        if lps and sum(lps) / len(lps) < esc.min_mean_logprob:
            return buffered, f"mean log-probability {sum(lps) / len(lps):.2f} < {esc.min_mean_logprob}"
        return buffered, None

    async def _open(
        self, request: ChatRequest, plan: deque[tuple[str, int]], reason: str, deadline: float | None
    ) -> tuple[str, str, AsyncIterator[Chunk], Chunk]:
        """Start candidates until one yields a first chunk; return it with the reason it was chosen."""
        loop = asyncio.get_running_loop()
        active: dict[asyncio.Task[Attempt], tuple[str, int, str]] = {}
        errors: list[str] = []
        last_error: BaseException | None = None
        next_reason = reason
        hedge_at: float | None = None

        def launch(why: str) -> bool:
            nonlocal hedge_at
            skipped = ""
            while plan:
                name, tries = plan.popleft()
                backend = self.backends[name]
                if not self.breakers[name].allow():
                    errors.append(f"{name}: circuit open")
                    why, skipped = "fallback", name
                    continue
                depth = getattr(backend, "queue_depth", None)
                limit = self.cfg.shed_queue_depth
                if depth is not None and limit is not None and plan and depth() >= limit:
                    errors.append(f"{name}: {depth()} requests waiting (shed)")
                    self.breakers[name].probing = False
                    why, skipped = "shed", name
                    continue
                if skipped:
                    self.on_route(name, why, skipped)
                delay = 0.0
                if tries:
                    delay = min(self.cfg.retry_backoff * (2 ** (tries - 1)), 5.0)
                    retry_after = getattr(last_error, "retry_after", None)
                    if retry_after:
                        delay = min(float(retry_after), 5.0)
                req = dataclasses.replace(request, logprobs=True) if self._wants_logprobs(name) else request
                task = asyncio.ensure_future(self._attempt(backend, req, delay))
                active[task] = (name, tries, why)
                if self.cfg.ttft_deadline:
                    hedge_at = loop.time() + delay + self.cfg.ttft_deadline
                return True
            return False

        launch(next_reason)
        try:
            while True:
                if not active:
                    raise self._exhausted(errors, last_error)
                now = loop.time()
                waits = [t - now for t in (hedge_at if plan else None, deadline) if t is not None]
                timeout = max(0.0, min(waits)) if waits else None
                done, _ = await asyncio.wait(active.keys(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if deadline is not None and loop.time() >= deadline:
                        raise UpstreamTimeout(
                            f"router {self.name!r}: no backend answered within {self.cfg.total_deadline}s "
                            f"({'; '.join(errors) or 'still waiting'})"
                        )
                    hedge_at = None
                    self.on_route(plan[0][0] if plan else "", "deadline", next(iter(active.values()))[0])
                    launch("deadline")  # the first backend missed its first-token deadline: race a second
                    continue
                for task in done:
                    name, tries, why = active.pop(task)
                    exc = task.exception()
                    if exc is None:
                        it, first = task.result()
                        self.breakers[name].record(True)
                        return name, why, it, first
                    last_error = exc
                    errors.append(f"{name}: {getattr(exc, 'message', None) or exc!r}")
                    if _counts_against_health(exc):
                        self.breakers[name].record(False)
                    else:
                        self.breakers[name].probing = False
                    if not _fallback_ok(exc):
                        raise exc
                    if _retryable(exc) and tries < self.cfg.retries:
                        plan.appendleft((name, tries + 1))
                    elif plan:
                        self.on_route(plan[0][0], "fallback", name)
                    if not active:
                        launch("fallback" if why != "deadline" else why)
        finally:
            for task, (name, _, _) in active.items():
                task.cancel()
                self.breakers[name].probing = False
            for task in active:
                with contextlib.suppress(BaseException):
                    result = await task
                    await _close(result[0])

    def _wants_logprobs(self, name: str) -> bool:
        return self.cfg.escalation is not None and self.is_local(name)

    @staticmethod
    async def _attempt(backend: Backend, request: ChatRequest, delay: float) -> Attempt:
        if delay:
            await asyncio.sleep(delay)
        it = backend.stream(request)
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            raise UpstreamError(f"backend {backend.name!r} returned an empty stream") from None
        except BaseException:
            await _close(it)
            raise
        return it, first

    def _exhausted(self, errors: list[str], last: BaseException | None) -> HearthError:
        detail = "; ".join(errors) or "no candidate"
        if isinstance(last, HearthError) and not isinstance(last, Overloaded) and len(errors) <= 1:
            return last
        status = last.status if isinstance(last, HearthError) else 503
        err: HearthError = UpstreamError(f"router {self.name!r}: every backend failed: {detail}", status=status or 503)
        if isinstance(last, UpstreamTimeout):
            err = UpstreamTimeout(f"router {self.name!r}: every backend failed: {detail}")
        if isinstance(last, Overloaded):
            err = Overloaded(f"router {self.name!r}: every backend is busy or failed: {detail}", retry_after=1.0)
        return err

    # --- health ----------------------------------------------------------------------------------

    async def _health_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check_health()

    async def check_health(self) -> None:
        """Ping each remote member's model list (free on every provider). Failures open the circuit;
        a success closes a circuit that is open or half-open; a healthy closed circuit is left alone,
        so a /models that works never hides completions that fail."""
        for name in sorted(self._members()):
            backend: Any = self.backends.get(name)
            lister = getattr(backend, "list_models", None)
            if lister is None:
                continue
            br = self.breakers[name]
            try:
                await asyncio.wait_for(lister(), timeout=5.0)
                ok = True
            except Exception:
                ok = False
            if not ok:
                br.record(False)
            elif br.state != 0:
                br.record(True)
