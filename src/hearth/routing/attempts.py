"""One pass over a router's plan: start candidates until one answers acceptably, then commit to it.

The steps have names because each is a rule users rely on: a candidate whose circuit is open or whose
local queue is long is skipped (`_skip_reason`); a retry waits with backoff or the provider's
Retry-After (`_delay`); a first token that misses its deadline starts the next candidate alongside, and
the first to answer wins (`_on_silence`); a failure that matches the router's `fallback_on` moves on
and anything else is the client's own error (`_on_failure`); an answer a criterion rejects (empty,
invalid JSON) moves on too, and is served only if nothing better comes (`_on_answer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from hearth.config import RouterModel
from hearth.core.collect import Collected
from hearth.core.errors import HearthError, Overloaded, UpstreamError, UpstreamTimeout
from hearth.core.types import Backend, ChatRequest, Chunk
from hearth.routing.breaker import CircuitBreaker
from hearth.routing.criteria import Criteria


class Router(Protocol):
    """What a pass over a plan reads of its router (`RouterBackend`), and nothing else: its members, their
    breakers, its settings, and where it reports a decision."""

    name: str
    cfg: RouterModel
    backends: dict[str, Backend]
    breakers: dict[str, CircuitBreaker]
    criteria: Criteria

    def on_route(self, target: str, reason: str, moved_from: str) -> None: ...

    def wants_logprobs(self, name: str) -> bool: ...


@dataclass(slots=True)
class Opened:
    """A committed candidate: the chunks read before committing (at least one), then the rest of `it`."""

    name: str
    reason: str
    it: AsyncIterator[Chunk]
    head: list[Chunk]
    rejected: str | None = None  # set when every candidate's answer was rejected and this one is served anyway


@dataclass(slots=True)
class _Candidate:
    name: str
    tries: int
    why: str


async def aclose(it: AsyncIterator[Chunk]) -> None:
    if isinstance(it, AsyncGenerator):
        with contextlib.suppress(BaseException):
            await it.aclose()


def _retryable(e: BaseException) -> bool:
    """Transient provider failures worth trying again on the same backend."""
    return isinstance(e, UpstreamError) and e.code != "upstream_auth_failed" and e.status in (429, 502, 503, 504)


def _counts_against_health(e: BaseException) -> bool:
    return isinstance(e, UpstreamError) and e.status != 429


class Attempts:
    def __init__(
        self, router: Router, request: ChatRequest, plan: deque[tuple[str, int]], reason: str,
        deadline: float | None,
    ) -> None:
        self.router = router
        self.request = request
        self.plan = plan
        self.reason = reason
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()
        self.active: dict[asyncio.Task[Opened], _Candidate] = {}
        self.errors: list[str] = []
        self.last_error: BaseException | None = None
        self.hedge_at: float | None = None
        self.rejected: Opened | None = None  # the latest rejected answer, served if nothing better comes
        self.spent: list[AsyncIterator[Chunk]] = []  # earlier rejected answers, closed at the end

    async def run(self) -> Opened:
        self._launch(self.reason)
        try:
            while True:
                if not self.active:
                    if self.rejected is not None:
                        served, self.rejected = self.rejected, None
                        return served
                    raise self._exhausted()
                done = await self._wait()
                if not done:
                    self._on_silence()
                    continue
                for task in done:
                    cand = self.active.pop(task)
                    exc = task.exception()
                    if exc is not None:
                        self._on_failure(cand, exc)
                    elif (opened := self._on_answer(cand, task.result())) is not None:
                        return opened
        finally:
            await self._cancel_rest()

    # --- the steps ---------------------------------------------------------------------------------

    def _launch(self, why: str) -> bool:
        """Start the next candidate of the plan that may be tried now; False when none is left."""
        r = self.router
        skipped = ""
        while self.plan:
            name, tries = self.plan.popleft()
            backend = r.backends[name]
            skip = self._skip_reason(name, backend)
            if skip is not None:
                why, message = skip
                self.errors.append(f"{name}: {message}")
                skipped = name
                continue
            if skipped:
                r.on_route(name, why, skipped)
            delay = self._delay(tries)
            req = dataclasses.replace(self.request, logprobs=True) if r.wants_logprobs(name) else self.request
            task = asyncio.ensure_future(self._attempt(name, backend, req, delay, why))
            self.active[task] = _Candidate(name, tries, why)
            if r.cfg.ttft_deadline:
                self.hedge_at = self.loop.time() + delay + r.cfg.ttft_deadline
            return True
        return False

    def _skip_reason(self, name: str, backend: Backend) -> tuple[str, str] | None:
        """(route reason, message) when this candidate must not be tried now; a local model is shed only
        while another candidate remains."""
        r = self.router
        if not r.breakers[name].allow():
            return "fallback", "circuit open"
        engine = backend.local
        if engine is not None and engine.unavailable:
            return "fallback", "unavailable on this machine (its engine failed the start-up check)"
        limit = r.cfg.shed_queue_depth
        if engine is not None and limit is not None and self.plan:
            depth = engine.queue_depth()
            if depth >= limit:
                r.breakers[name].probing = False
                return "shed", f"{depth} requests waiting (shed)"
        return None

    def _delay(self, tries: int) -> float:
        if not tries:
            return 0.0
        e = self.last_error
        if isinstance(e, HearthError) and e.retry_after:
            return min(float(e.retry_after), 5.0)
        return min(self.router.cfg.retry_backoff * 2.0 ** (tries - 1), 5.0)

    async def _wait(self) -> set[asyncio.Task[Opened]]:
        now = self.loop.time()
        waits = [t - now for t in (self.hedge_at if self.plan else None, self.deadline) if t is not None]
        timeout = max(0.0, min(waits)) if waits else None
        done, _ = await asyncio.wait(self.active.keys(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return done

    def _on_silence(self) -> None:
        """Nothing answered in time: past the total deadline, give up; past the first-token one, hedge."""
        r = self.router
        if self.deadline is not None and self.loop.time() >= self.deadline:
            raise UpstreamTimeout(f"router {r.name!r}: no backend answered within {r.cfg.total_deadline}s "
                                  f"({'; '.join(self.errors) or 'still waiting'})")
        self.hedge_at = None
        r.on_route(self.plan[0][0] if self.plan else "", "deadline", next(iter(self.active.values())).name)
        self._launch("deadline")

    def _on_failure(self, cand: _Candidate, exc: BaseException) -> None:
        r = self.router
        self.last_error = exc
        self.errors.append(f"{cand.name}: {exc.message if isinstance(exc, HearthError) else repr(exc)}")
        if _counts_against_health(exc):
            r.breakers[cand.name].record(False)
        else:
            r.breakers[cand.name].probing = False
        if not r.criteria.failure_moves_on(exc):
            raise exc
        if _retryable(exc) and cand.tries < r.cfg.retries:
            self.plan.appendleft((cand.name, cand.tries + 1))
        elif self.plan:
            r.on_route(self.plan[0][0], "fallback", cand.name)
        if not self.active:
            self._launch("fallback" if cand.why != "deadline" else cand.why)

    def _on_answer(self, cand: _Candidate, opened: Opened) -> Opened | None:
        """Commit to an acceptable answer; keep a rejected one in reserve and try the next candidate."""
        r = self.router
        r.breakers[cand.name].record(True)
        if opened.rejected is None:
            return opened
        self.errors.append(f"{cand.name}: {opened.rejected}")
        if self.rejected is not None:
            self.spent.append(self.rejected.it)
        self.rejected = opened
        if self.plan:
            r.on_route(self.plan[0][0], "bad_answer", cand.name)
        if not self.active:
            self._launch("fallback")
        return None

    async def _attempt(self, name: str, backend: Backend, request: ChatRequest, delay: float, why: str) -> Opened:
        if delay:
            await asyncio.sleep(delay)
        it = backend.stream(request)
        try:
            try:
                head = [await it.__anext__()]
            except StopAsyncIteration:
                raise UpstreamError(f"backend {backend.name!r} returned an empty stream") from None
            crit = self.router.criteria
            rejected = None
            if crit.reads_ahead(request):
                answer = Collected()
                answer.add(head[0])
                whole, complete = crit.whole_answer(request), False
                while whole or not crit.has_content(answer):
                    try:
                        c = await it.__anext__()
                    except StopAsyncIteration:
                        complete = True
                        break
                    head.append(c)
                    answer.add(c)
                rejected = crit.rejects(request, answer, complete)
        except BaseException:
            await aclose(it)
            raise
        return Opened(name, why, it, head, rejected)

    async def _cancel_rest(self) -> None:
        for task, cand in self.active.items():
            task.cancel()
            self.router.breakers[cand.name].probing = False
        for task in self.active:
            with contextlib.suppress(BaseException):
                await aclose((await task).it)
        for it in self.spent + ([self.rejected.it] if self.rejected is not None else []):
            await aclose(it)

    def _exhausted(self) -> HearthError:
        name, errors, last = self.router.name, self.errors, self.last_error
        detail = "; ".join(errors) or "no candidate"
        if isinstance(last, HearthError) and not isinstance(last, Overloaded) and len(errors) <= 1:
            return last
        if isinstance(last, UpstreamTimeout):
            return UpstreamTimeout(f"router {name!r}: every backend failed: {detail}")
        if isinstance(last, Overloaded):
            return Overloaded(f"router {name!r}: every backend is busy or failed: {detail}", retry_after=1.0)
        status = last.status if isinstance(last, HearthError) else 503
        return UpstreamError(f"router {name!r}: every backend failed: {detail}", status=status or 503)
