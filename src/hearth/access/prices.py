"""What a request may cost before it runs, and what it did cost after.

A reservation must bound the real cost, or concurrent requests could overrun a budget. So it prices the
prompt at one token per UTF-8 byte (no tokenizer makes more tokens than bytes), the output at the
request's `max_tokens`, and a router or a `rag:` model at its most expensive member, since the route is
chosen later. Settlement then charges what the model that answered reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hearth.config import Config, EmbeddingModel, Price, RouterModel
from hearth.core.types import ChatRequest

_FREE = Price()
_PER_MESSAGE = 8  # role markers and separators of a chat template, in tokens
_PER_REQUEST = 64  # a template's own text: a default system prompt (SmolLM2's is about 30 tokens), tool headers
# An image costs a provider's vision encoder a fixed number of tokens, not its bytes: OpenAI's high detail
# tops out near 1,500 (2048 px tiles), others near 1,600; this bound holds for all of them.
_PER_IMAGE = 2000


def prompt_bound(req: ChatRequest) -> int:
    """An upper bound of the prompt's tokens."""
    n = len(req.prompt.encode()) if req.prompt is not None else _PER_REQUEST
    for m in req.messages:
        n += len(m.content.encode()) + _PER_MESSAGE + _PER_IMAGE * len(m.images or ())
        for c in m.tool_calls or ():
            n += len(c.name.encode()) + len(c.arguments.encode())
    if req.tools:
        n += sum(len(repr(t).encode()) for t in req.tools)
    if req.response_format:
        n += len(repr(req.response_format).encode())  # a schema is sent to (and counted by) providers too
    return n


def text_bytes(texts: Iterable[str]) -> int:
    """Texts' UTF-8 bytes: a bound of their tokens."""
    return sum(len(t.encode()) for t in texts)


def prompt_estimate(bound: int) -> int:
    """A likelier prompt size, for token rate limits (settlement corrects it): ~4 bytes a token."""
    return math.ceil(bound / 4)


class PriceBook:
    def __init__(self, cfg: Config) -> None:
        self._prices = dict(cfg.prices)
        self._canonical = {n: name for name, m in cfg.models.items() for n in (name, *m.aliases)}
        self._members: dict[str, set[str]] = {}
        for name, m in cfg.models.items():
            if isinstance(m, RouterModel):
                named = {m.default, *(r.target for r in m.rules), *(t.target for t in m.tiers)}
                named |= {m.long_prompt_target} if m.long_prompt_target else set()
                named |= set(m.fallbacks) | {d for chain in m.fallbacks.values() for d in chain}
                leaves = {x for x in named if x not in m.groups}
                leaves |= {x for g in m.groups.values() for x in g}
                leaves |= {x for x in named if x in m.groups for x in m.groups[x]}
                self._members[name] = leaves
        chat = [n for n, m in cfg.models.items() if not isinstance(m, EmbeddingModel | RouterModel)]
        self._rag_default = cfg.rag.chat_model or (chat[0] if chat else None)
        self._profiles = {p: prof.model or self._rag_default for p, prof in cfg.rag.profiles.items()}
        self.any_priced = any(p.input or p.output for p in self._prices.values())

    def price(self, served_by: str) -> Price:
        """The price of the model that answered (a leaf, never a router; "cache" is free)."""
        return self._prices.get(self._canonical.get(served_by, served_by), _FREE)

    def worst(self, model: str) -> Price:
        """The highest input and output price among the models a request for `model` may reach."""
        leaves = self._reach(model)
        prices = [self.price(x) for x in leaves]
        return Price(input=max((p.input for p in prices), default=0.0),
                     output=max((p.output for p in prices), default=0.0))

    def reads_kb(self, model: str) -> bool:
        """Whether `model` answers from a knowledge base (`rag:<kb>` or a RAG profile)."""
        return model.startswith("rag:") or model in self._profiles

    def _reach(self, model: str) -> set[str]:
        if model.startswith("rag:"):
            answerer = self._rag_default
            return self._reach(answerer) if answerer else set()
        if model in self._profiles:
            answerer = self._profiles[model]
            return self._reach(answerer) if answerer else set()
        name = self._canonical.get(model, model)
        return self._members.get(name, {name})


def cost(price: Price, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
