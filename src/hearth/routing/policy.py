"""The routing decision: which model a request should go to first, and what to try after it.

Pure and synchronous (no I/O, no awaits), so `hearth route explain` shows exactly what the gateway
would do, and a decision costs tens of microseconds. Order: rules (first match), then the
complexity tiers, then the default; a group target picks a member by weight among those whose
circuit is not open; a local pick with a prompt too long for local prefill moves to
`long_prompt_target`. The fallback chain is the pick followed by its own `fallbacks` list, not
followed further, so mutual fallbacks cannot loop.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from hearth.config import RouterModel
from hearth.core.types import ChatRequest
from hearth.routing.scorer import Score, estimate_tokens, score


@dataclass(slots=True)
class Decision:
    target: str
    reason: str  # rule | score | default | length | sticky
    detail: str
    score: float
    chain: list[str]
    signals: Score | None = None
    prompt_tokens: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        s = self.signals
        return {
            "target": self.target, "reason": self.reason, "detail": self.detail, "score": round(self.score, 4),
            "chain": self.chain, "prompt_tokens_estimate": self.prompt_tokens,
            "signals": {k: getattr(s.signals, k) for k in s.signals.__slots__} if s else {},
            "contributions": {k: round(v, 3) for k, v in s.contributions.items()} if s else {},
        }


def _last_user(req: ChatRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    for m in reversed(req.messages):
        if m.role == "user":
            return m.content
    return req.messages[-1].content if req.messages else ""


class RoutingPolicy:
    def __init__(
        self,
        cfg: RouterModel,
        *,
        is_local: Callable[[str], bool] = lambda name: False,
        available: Callable[[str], bool] = lambda name: True,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.is_local = is_local
        self.available = available
        self.rng = rng or random.Random()
        self.rules = [(re.compile(r.pattern) if r.pattern is not None else None, r) for r in cfg.rules]
        self.need_conversation = any(r.scope == "conversation" for r in cfg.rules)

    def decide(self, req: ChatRequest, previous: str | None = None) -> Decision:
        """`previous`: the backend that answered the conversation's previous turn, for a turn that carries
        on from it (a continuation, a correction); it wins while its circuit is closed, unless a rule names
        the turn's intent."""
        last = _last_user(req)
        turns = sum(1 for m in req.messages if m.role == "user") or 1
        sc = score(last, turns)
        target, reason, detail = self.cfg.default, "default", "no rule or tier matched"
        convo = "\n".join(m.content for m in req.messages) if self.need_conversation else ""
        intent = req.intent
        label = intent.label if intent is not None else ""
        decisive = False  # a rule on this turn's intent or its tools: the operator's word beats stickiness
        for rx, rule in self.rules:
            if rule.intent and (intent is None or not intent.has(*rule.intent)):
                continue
            if rule.tools is not None and bool(req.tools) != rule.tools:
                continue
            if rx is None or rx.search(convo if rule.scope == "conversation" else last):
                what = f"intent {label}" if rule.intent else f"tools: {str(rule.tools).lower()}"
                target, reason, detail = rule.target, "rule", rule.name or rule.pattern or what
                decisive = label in rule.intent or rule.tools is not None
                break
        else:
            for tier in self.cfg.tiers:
                if sc.value <= tier.max_score:
                    target, reason, detail = tier.target, "score", f"score {sc.value:.2f} <= {tier.max_score}"
                    break
        if previous is not None and not decisive and self.available(previous):
            target, reason = previous, "sticky"
            detail = f"{intent.label if intent else 'follow-up'}: stays on the backend of the previous turn"
        model = self._pick(target)
        tokens = sum(estimate_tokens(m.content) for m in req.messages) if req.messages else estimate_tokens(last)
        limit = self.cfg.max_local_prompt_tokens
        if limit and tokens > limit and self.is_local(model) and self.cfg.long_prompt_target:
            model = self._pick(self.cfg.long_prompt_target)
            reason, detail = "length", f"~{tokens} prompt tokens > {limit} for local prefill"
        return Decision(model, reason, detail, sc.value, self.chain(model), sc, tokens)

    def _pick(self, target: str) -> str:
        members = self.cfg.groups.get(target)
        if not members:
            return target
        weighted = [n for n, w in members.items() if w > 0]
        names = [n for n in weighted if self.available(n)] or weighted
        if not names:
            return next(iter(members))
        weights = [members[n] for n in names]
        return self.rng.choices(names, weights)[0]

    def chain(self, first: str) -> list[str]:
        return [first, *(n for n in self.cfg.fallbacks.get(first, []) if n != first)]
