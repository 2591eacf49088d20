"""Who is calling, what they may do, and what it costs them: the one object the API edge asks.

Authentication is on as soon as a key exists or `HEARTH_ADMIN_KEY` is set; with neither, hearth runs
open (the server refuses to listen beyond loopback that way unless told `--insecure`). While open, any
`Authorization` header is ignored, so SDKs that insist on some key keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hearth.access.keys import SCOPES, ApiKey, Scope, hash_secret
from hearth.access.meter import RENEW_EVERY, Charge, Meter, Refusal, Spend, Verdict
from hearth.access.prices import PriceBook, cost, prompt_bound, prompt_estimate, text_bytes
from hearth.access.store import KeyStore
from hearth.core.errors import Forbidden, HearthError, QuotaExceeded, RateLimited, Unauthorized
from hearth.core.types import ChatRequest

log = logging.getLogger("hearth.access")
MAX_TENANT_KEEP_ALIVE = 3600.0  # seconds a tenant key may ask a shared model to stay loaded

# kind, key name, detail, value: GatewayMetrics.access_event
AccessHook = Callable[[str, str, str, float], None]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. `key` is None for the admin key and while hearth runs open."""

    name: str
    key: ApiKey | None
    scopes: frozenset[str]

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def allows(self, names: tuple[str, ...]) -> bool:
        return self.key is None or self.key.allows(names)


OPEN = Principal("anonymous", None, frozenset(SCOPES))
ADMIN = Principal("admin", None, frozenset(SCOPES))


@dataclass(slots=True)
class Ticket:
    """An admitted request: its parallel slot and reservation, held until it settles."""

    key: ApiKey
    id: str
    tokens: int  # what the token window was charged at admission
    prompt_estimate: int
    verdict: Verdict
    settled: bool = False
    renewer: asyncio.Task[None] | None = None  # keeps a long request's slot and reservation alive


_MESSAGES: dict[Refusal, str] = {
    "requests": "rate limit reached for key {name}: {limit} requests per minute",
    "tokens": "rate limit reached for key {name}: {limit} tokens per minute",
    "parallel": "key {name} already has {limit} requests in progress; wait for one to finish",
    "budget": "key {name} has spent its budget of {limit} for this period (or this request could overrun it)",
}


class Access:
    def __init__(
        self,
        store: KeyStore,
        meter: Meter,
        prices: PriceBook,
        *,
        admin_secret: str | None = None,
        default_max_tokens: int = 4096,
        shared_cache: bool = False,
        on_event: AccessHook | None = None,
    ) -> None:
        self.store, self.meter, self.prices = store, meter, prices
        self._admin_hash = hash_secret(admin_secret) if admin_secret else None
        self._default_max_tokens = default_max_tokens
        self._shared_cache = shared_cache
        self._on_event = on_event or (lambda kind, key, detail, value: None)
        self._tasks: set[asyncio.Task[None]] = set()

    async def required(self) -> bool:
        return self._admin_hash is not None or await self.store.any_keys()

    async def authenticate(self, secret: str | None) -> Principal:
        if not await self.required():
            return OPEN  # no key exists and no admin secret: whatever a client sends is not checked (loopback only)
        if not secret:
            self._on_event("auth", "", "missing", 0.0)
            raise Unauthorized("no API key: send it as Authorization: Bearer <key>")
        digest = hash_secret(secret)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return ADMIN
        key = await self.store.find(digest)
        if key is None:
            self._on_event("auth", "", "unknown", 0.0)
            raise Unauthorized("the API key is not valid")  # never echo the key, not even in part
        if why := key.refusal(time.time()):
            self._on_event("auth", key.name, "revoked" if key.revoked else "expired", 0.0)
            raise Unauthorized(why)
        return Principal(key.name, key, key.scopes)

    def check_scope(self, p: Principal, scope: Scope) -> None:
        if not p.may(scope):
            self._on_event("auth", p.name, "forbidden", 0.0)
            raise Forbidden(f"key {p.name} lacks the {scope!r} scope", code="insufficient_scope")

    def check_model(self, p: Principal, names: tuple[str, ...]) -> None:
        if not p.allows(names):
            self._on_event("auth", p.name, "forbidden", 0.0)
            raise Forbidden(f"key {p.name} may not use model {names[0]!r}", param="model")

    async def admit_chat(self, p: Principal, req: ChatRequest, names: tuple[str, ...]) -> Ticket | None:
        """Check the model, the limits and the budget of a generation, all at once. A budgeted key's request
        with no `max_tokens` gets the configured cap, so that its reservation really bounds it."""
        self.check_model(p, names)
        if self.prices.reads_kb(req.model):
            self.check_scope(p, "rag:read")  # a rag: model answers from a knowledge base: reading it
        rag = req.extensions.get("rag")
        if isinstance(rag, dict) and rag.get("kb"):
            # Naming a knowledge base on any model reads it, as `rag:<kb>` does: the same scope and allow-list.
            self.check_scope(p, "rag:read")
            self.check_model(p, (f"rag:{rag['kb']}",))
        self.check_keep_alive(p, req.keep_alive)
        if p.key is None:
            return None
        worst = self.prices.worst(req.model)
        bound = prompt_bound(req)
        estimate = prompt_estimate(bound)
        if req.sampling.max_tokens is None:
            # The reservation must bound what the answer may spend, so an open-ended answer gets a cap: the
            # configured one, and no more than what the key's token rate leaves beside its prompt (at its bound).
            cap = self._default_max_tokens if p.key.budget is not None and worst.output > 0 else None
            if p.key.tpm is not None:
                cap = max(1, min(cap or self._default_max_tokens, p.key.tpm - bound))
            req.sampling.max_tokens = cap
        out = req.sampling.max_tokens or 0
        return await self._admit(p.key, estimate + out, estimate, cost(worst, bound, out))

    def check_keep_alive(self, p: Principal, keep: float | None) -> None:
        """A model's residency is shared by every tenant: a tenant key may keep it loaded for up to an hour after
        its request; unloading it (0), pinning it (negative) or longer holds need the admin scope."""
        if keep is None or p.may("admin") or 0 < keep <= MAX_TENANT_KEEP_ALIVE:
            return
        self._on_event("auth", p.name, "forbidden", 0.0)
        raise Forbidden(f"key {p.name} may not set keep_alive {keep:g} s: unloading (0), pinning (negative) or "
                        f"holding a shared model for more than {MAX_TENANT_KEEP_ALIVE:g} s needs the 'admin' scope",
                        code="insufficient_scope", param="keep_alive")

    def cache_namespace(self, p: Principal, requested: str) -> str:
        """The response-cache namespace of a request: per key unless keys share a cache, so that one tenant is
        never served an answer cached for another (a semantic hit would even leak a near-identical question's
        answer across tenants)."""
        if p.key is None or self._shared_cache:
            return requested
        return f"{p.key.id}/{requested}"

    async def admit_embeddings(
        self, p: Principal, model: str, names: tuple[str, ...], texts: list[str]
    ) -> Ticket | None:
        self.check_model(p, names)
        if p.key is None:
            return None
        bound = text_bytes(texts)
        estimate = prompt_estimate(bound)
        return await self._admit(p.key, estimate, estimate, cost(self.prices.worst(model), bound, 0))

    async def admit_plain(self, p: Principal, names: tuple[str, ...] = (), size: int = 0) -> Ticket | None:
        """A request priced at nothing (knowledge-base calls, loads, heuristic scoring): it counts toward requests
        and parallel, and the `size` bytes of input it reads toward the token rate at their estimate. `names`:
        the models it touches, checked against the allow-list."""
        if names:
            self.check_model(p, names)
        if p.key is None:
            return None
        estimate = prompt_estimate(size)
        return await self._admit(p.key, estimate, estimate, 0.0)

    async def _admit(self, key: ApiKey, tokens: int, estimate: int, reserve: float) -> Ticket:
        ticket = Ticket(key, secrets.token_hex(8), tokens, estimate, Verdict())
        try:
            v = ticket.verdict = await self.meter.admit(key, ticket.id, tokens, reserve)
        except BaseException:
            # The answer was lost (a disconnect, a Redis timeout), not necessarily the admission: free what it
            # may hold, in the background, so that a cancelled request cannot pin a slot for a whole lease.
            self._background(self._forget(ticket))
            raise
        if v.refused is None:
            if key.max_parallel is not None or reserve > 0:
                ticket.renewer = asyncio.get_running_loop().create_task(self._renew(ticket))
            return ticket
        self._on_event("limit", key.name, v.refused, 0.0)
        limit = {"requests": key.rpm, "tokens": key.tpm, "parallel": key.max_parallel, "budget": key.budget}[v.refused]
        msg = _MESSAGES[v.refused].format(name=key.name, limit=limit)
        headers = rate_headers(key, v)
        if v.refused == "budget":
            raise QuotaExceeded(msg, headers=headers)
        raise RateLimited(msg, retry_after=max(v.retry_after, 1.0), headers=headers)

    async def settle(self, ticket: Ticket, served_by: str, prompt_tokens: int | None, completion_tokens: int) -> None:
        """Charge what the request used; `prompt_tokens` None: the answer reported no usage (a broken stream),
        so the prompt is charged at its estimate. Answers from the cache (`served_by` "cache") are free."""
        if ticket.settled:
            return
        self._done(ticket)
        prompt = ticket.prompt_estimate if prompt_tokens is None else prompt_tokens
        price = self.prices.price(served_by)
        charge = Charge(served_by, prompt, completion_tokens, cost(price, prompt, completion_tokens))
        spent = await self.meter.settle(ticket.key, ticket.id, ticket.tokens, charge, ticket.verdict.at)
        if charge.cost:
            self._on_event("spend", ticket.key.name, served_by, charge.cost)
        if ticket.key.budget:
            self._on_event("budget", ticket.key.name, "", spent / ticket.key.budget)

    async def release(self, ticket: Ticket) -> None:
        """The request failed before producing anything: free its slot and reservation, charge nothing."""
        if not ticket.settled:
            self._done(ticket)
            await self.meter.settle(ticket.key, ticket.id, ticket.tokens, None, ticket.verdict.at)

    def _done(self, ticket: Ticket) -> None:
        ticket.settled = True
        if ticket.renewer is not None:
            ticket.renewer.cancel()

    async def _renew(self, ticket: Ticket) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await self.meter.renew(ticket.key, ticket.id)
            except HearthError as e:  # the lease runs out instead; the request itself goes on
                log.warning("could not renew the lease of a request of key %s: %s", ticket.key.name, e.message)

    async def _forget(self, ticket: Ticket) -> None:
        with contextlib.suppress(Exception):
            await self.meter.settle(ticket.key, ticket.id, 0, None, 0.0)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def spend(self, key: ApiKey) -> Spend:
        return await self.meter.spend(key)

    async def close(self) -> None:
        await self.meter.close()
        await self.store.close()


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 1s, 6m0s, 20ms."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    s = math.ceil(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def rate_headers(key: ApiKey, v: Verdict) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the limits the key has."""
    h: dict[str, str] = {}
    if key.rpm is not None and v.requests_remaining is not None:
        h["x-ratelimit-limit-requests"] = str(key.rpm)
        h["x-ratelimit-remaining-requests"] = str(v.requests_remaining)
        h["x-ratelimit-reset-requests"] = _duration(v.requests_reset)
    if key.tpm is not None and v.tokens_remaining is not None:
        h["x-ratelimit-limit-tokens"] = str(key.tpm)
        h["x-ratelimit-remaining-tokens"] = str(v.tokens_remaining)
        h["x-ratelimit-reset-tokens"] = _duration(v.tokens_reset)
    return h
