"""The per-model stages, in order: one shape, one list, one loop.

A request's path is: annotators (labels on the request), resolvers (names the registry cannot find itself),
then the stack of `stages()` around a leaf, outermost first. Each stage has the same shape: `wrap` takes one
model's backend as the stages below it left it and returns the backend to serve, and `extra` may add models
made of the models below it (a router is such a stage: it wraps nothing and adds the router models). The
composition root (`assemble.py`) builds the list with what the stages need (metrics hooks, the shared cache,
the conversation's memory) and runs `stack` over the configured models at start, and again over each model
pulled while the gateway runs (without `extra`: a pull adds no router).

Why this order: speech is outermost so cache replays and remote answers are cut into TTS segments and
measured like local ones; the cache sits outside routers, so a hit costs no routing at all; each router
member is constrained on its own, so a fallback from a local model to a remote one keeps the requested format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hearth.config import Config, EmbeddingModel, ModelConfig, RouterModel
from hearth.convo.stage import Conversation
from hearth.core.types import Backend
from hearth.metrics import GatewayMetrics

if TYPE_CHECKING:
    from hearth.cache.backend import ResponseCache
    from hearth.routing.breaker import CircuitBreaker


class Stage(Protocol):
    """One layer of the stack around each model."""

    name: str

    def wrap(self, name: str, backend: Backend, model: ModelConfig) -> Backend:
        """The backend to serve `name` with, around `backend` (the model as the stages below left it)."""
        ...

    def extra(self, below: Mapping[str, Backend]) -> dict[str, Backend]:
        """Models this stage adds, made of the models below it (most stages add none)."""
        ...


class _Wrapper:
    """A stage that only wraps: the usual kind."""

    name = ""

    def extra(self, below: Mapping[str, Backend]) -> dict[str, Backend]:
        return {}


@dataclass
class Speech(_Wrapper):
    """Pace for the local engine's scheduler (through the request), TTS segments, first-segment metrics."""

    metrics: GatewayMetrics
    name: str = "speech"

    def wrap(self, name: str, backend: Backend, model: ModelConfig) -> Backend:
        from hearth.speech.backend import SpeechBackend

        assert not isinstance(model, EmbeddingModel)
        return SpeechBackend(backend, pace=model.speech_pace(), segments=model.segments,
                             on_first_segment=self.metrics.first_segment_out, on_underrun=self.metrics.pace_underrun,
                             max_tokens=model.speech_max_tokens,
                             stable_prefix=model.stable_prefix if model.stable_prefix is not None
                             else model.pace is not None)


@dataclass
class Cache(_Wrapper):
    """Exact and semantic answers: a hit costs no routing, no engine, no provider."""

    cache: ResponseCache
    name: str = "cache"

    def wrap(self, name: str, backend: Backend, model: ModelConfig) -> Backend:
        from hearth.cache.backend import CacheBackend

        return CacheBackend(backend, self.cache)


@dataclass
class Routers:
    """Router models over the models below; it wraps nothing."""

    cfg: Config
    metrics: GatewayMetrics
    convo: Conversation
    breakers: dict[str, CircuitBreaker]  # one per member, made by the routers; replicas share their states
    name: str = "router"

    def wrap(self, name: str, backend: Backend, model: ModelConfig) -> Backend:
        return backend

    def extra(self, below: Mapping[str, Backend]) -> dict[str, Backend]:
        routers = {n: m for n, m in self.cfg.models.items() if isinstance(m, RouterModel)}
        if not routers:
            return {}
        from hearth.routing.router import RouterBackend

        members = dict(below)
        return {name: RouterBackend(name, m, members, self.breakers, on_route=self.metrics.route_decided,
                                    memory=self.convo.memory, sticky=self.cfg.conversation.sticky,
                                    quality=self.convo.window_score) for name, m in routers.items()}


@dataclass
class Structured(_Wrapper):
    """JSON schema and tools: a grammar for local engines, validated and repaired for remote providers."""

    name: str = "structured"

    def wrap(self, name: str, backend: Backend, model: ModelConfig) -> Backend:
        from hearth.structured.constrained import ConstrainedBackend

        return ConstrainedBackend(backend)


def stages(cfg: Config, metrics: GatewayMetrics, convo: Conversation, cache: ResponseCache | None,
           breakers: dict[str, CircuitBreaker]) -> list[Stage]:
    """The stack, outermost first (a stage the config turns off is left out). Adding a stage is its class and
    its line here; `tests/test_stages.py` pins the order."""
    out: list[Stage] = [Speech(metrics)]
    if cache is not None:
        out.append(Cache(cache))
    out += [Routers(cfg, metrics, convo, breakers), Structured()]
    return out


def stack(layers: list[Stage], leaves: Mapping[str, Backend], models: Mapping[str, ModelConfig], *,
          extra: bool = True) -> dict[str, Backend]:
    """Each model as served: its leaf wrapped by every layer, innermost first, plus the models layers add
    (which the layers above them wrap too)."""
    served = dict(leaves)
    for layer in reversed(layers):
        if extra:
            served.update(layer.extra(served))
        served = {name: layer.wrap(name, backend, models[name]) for name, backend in served.items()}
    return served
