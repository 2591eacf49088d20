"""The composition root: the one place that builds every backend and stacks the stages around them.

A request flows one way: the API dialect parses it into a `ChatRequest`, the annotators label it, the
resolvers find names the registry cannot (adapters, knowledge bases), then it goes through the stages of
`stages.py`, outermost first, down to a leaf (the in-process engine or a remote provider), and the leaf's
chunks flow back up. The order is declared once, in `stages.stages`; `core/` knows no stage, and no stage
knows which stage is around it. Hooks (metrics) reach the stages as constructor arguments.

Providers (the leaves) are registered by config `kind` through `hearth.providers.register_provider`, the same
call a plugin makes; the built-in ones below use it too (it is also importable from here, as it was).

Models pulled while the gateway runs go through the same stages as configured ones, through
`Assembly.serve`, so a pulled model is cached, paced and constrained like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hearth import (
    backends,  # noqa: F401  (registers the built-in providers)
    providers,
)
from hearth.config import Config, EmbeddingModel, LocalModel, ModelConfig
from hearth.config.keep_alive import parse_keep_alive
from hearth.convo.stage import Conversation
from hearth.core.pipeline import Annotator, AnswerObserver
from hearth.core.registry import ModelRegistry
from hearth.core.types import ENGINE_STATS, Backend
from hearth.lifecycle.residency import Residency
from hearth.metrics import GatewayMetrics
from hearth.providers import Made, Services, register_provider  # noqa: F401  (Made, register_provider: re-exported)
from hearth.rag.stage import RagStage
from hearth.stages import Stage, stack, stages

log = logging.getLogger("hearth")
FOLLOW_SECONDS = 5.0  # how often the model store is read for changes made elsewhere

if TYPE_CHECKING:
    from hearth.cache.backend import ResponseCache
    from hearth.embed.local import LocalEmbedder
    from hearth.lifecycle.adapters import Adapters
    from hearth.lifecycle.service import LocalModels
    from hearth.routing.breaker import CircuitBreaker
    from hearth.routing.shared import SharedBreakers




# --- the assembly -----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Assembly:
    """Everything one gateway process serves with, and its lifecycle."""

    registry: ModelRegistry
    metrics: GatewayMetrics
    rag: RagStage
    leaves: dict[str, Backend]
    convo: Conversation
    cache: ResponseCache | None = None
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    shared: SharedBreakers | None = None  # circuit states published to and taken from other replicas
    annotators: list[Annotator] = field(default_factory=list)  # for Gateway: run on each request first
    observers: list[AnswerObserver] = field(default_factory=list)  # for Gateway: see finished answers
    residency: Residency | None = None
    stages: list[Stage] = field(default_factory=list)  # around each model, outermost first
    models: dict[str, ModelConfig] = field(default_factory=dict)  # the config's models, and models pulled since
    pulled: LocalModels | None = None  # models pulled from the Hub, served beside the configured ones
    adapters: Adapters | None = None  # LoRA adapters on the local models
    _follower: asyncio.Task[None] | None = None
    _stack: contextlib.AsyncExitStack | None = None

    def serve(self, name: str, leaf: Backend, model: LocalModel) -> None:
        """Serve a model added at run time (a pull): wrapped by the same stages as a configured one (a pull adds
        no router), listed, measured."""
        self.models[name] = model
        self.leaves[name] = leaf
        self.registry.chat[name] = stack(self.stages, {name: leaf}, self.models, extra=False)[name]
        _instrument_leaf(self.metrics, name, leaf)

    def unserve(self, name: str) -> None:
        self.registry.chat.pop(name, None)
        self.leaves.pop(name, None)
        self.models.pop(name, None)
        for key in ENGINE_STATS:
            self.metrics.engine.remove_function((name, key))

    async def refresh(self) -> None:
        """Follow the model store (pulls, copies, adapters added from the command line or by another replica):
        listings call this, so they are never stale."""
        if self.pulled is not None:
            await self.pulled.sync()
        if self.adapters is not None:
            await self.adapters.sync()

    def _parts(self) -> list[tuple[Callable[[], Awaitable[None]] | None, Callable[[], Awaitable[None]]]]:
        """What the gateway starts and closes, as (start, close) in start order: `close` runs them in reverse,
        so a part never outlives what it uses. Written once, so the two orders cannot drift apart."""
        parts: list[tuple[Callable[[], Awaitable[None]] | None, Callable[[], Awaitable[None]]]] = []
        if self.residency is not None:
            parts.append((_started(self.residency.start), self.residency.close))
        parts.append((self.registry.start, self.registry.close))
        # Knowledge bases and answer scoring use the registry's embedders: they close before it.
        parts += [(None, self.rag.close), (None, self.convo.close)]
        if self.pulled is not None:
            parts.append((self.pulled.start, self.pulled.close))
        if self.adapters is not None:
            parts.append((self.adapters.start, _nothing))
        if self.cache is not None:
            parts.append((self.cache.start, self.cache.close))
        if self.shared is not None:
            parts.append((self.shared.start, self.shared.close))
        if self.pulled is not None:
            parts.append((self._start_following, self._stop_following))
        return parts

    async def start(self) -> None:
        """Start every part in order; if one fails, those already started are closed before the error goes on."""
        async with contextlib.AsyncExitStack() as stack:
            for start, close in self._parts():
                if start is not None:
                    await start()
                stack.push_async_callback(close)
            self._stack = stack.pop_all()

    async def close(self) -> None:
        if self._stack is None:  # never started (a command that only built it): close what was built
            self._stack = contextlib.AsyncExitStack()
            for _, close in self._parts():
                self._stack.push_async_callback(close)
        stack, self._stack = self._stack, None
        await stack.aclose()

    async def _start_following(self) -> None:
        self._follower = asyncio.create_task(self._follow(), name="hearth-model-store")

    async def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower  # cancelled and awaited: nothing of it runs after close
            self._follower = None

    async def _follow(self) -> None:
        """A `hearth pull` or `hearth adapter add` from the command line, or another replica sharing the model
        folder, is served within seconds, without a listing to trigger it."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.refresh()
            except Exception:
                log.exception("reading the model store failed")

    async def warm(self) -> None:
        """Work that may follow readiness: preloading knowledge-base indexes."""
        await self.rag.warm()



def _started(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        start()

    return run


async def _nothing() -> None:
    return None


def assemble(cfg: Config, metrics: GatewayMetrics | None = None, *,
             leaves: Mapping[str, Backend] | None = None) -> Assembly:
    """Build the gateway for `cfg`. `leaves` replaces the provider of the named models (test doubles such
    as `hearth.testing.ScriptedBackend`); every stage is still built around them as configured."""
    metrics = metrics or GatewayMetrics()
    residency = Residency(max_models=cfg.local.max_loaded_models, max_bytes=cfg.local.budget_bytes(),
                          load_timeout=cfg.local.load_timeout,
                          default_keep_alive=_seconds(cfg.local.keep_alive),
                          on_load=metrics.model_loaded)
    services = Services(residency)
    chat, embedders = providers.build(cfg.models, services, leaves)
    registry = ModelRegistry({}, embedders, providers.aliases(cfg.models))
    multilingual = [n for n, m in cfg.models.items() if isinstance(m, EmbeddingModel) and m.is_multilingual()]
    convo = Conversation(cfg, registry, metrics, multilingual=multilingual)
    cache = None
    if cfg.cache.enabled:
        from hearth.cache.backend import ResponseCache

        cache = ResponseCache(cfg.cache, on_event=metrics.cache_event)
    breakers: dict[str, CircuitBreaker] = {}
    layers = stages(cfg, metrics, convo, cache, breakers)
    served = stack(layers, chat, cfg.models)
    registry.chat.update({n: served[n] for n in cfg.models if n in served})  # the config's order, routers included
    # Before the stack, on each request: the latest turn is labelled (x-hearth-intent) for RAG's rewriting, the
    # cache's guards and the routers' rules; finished answers are sampled for the quality score.
    annotators: list[Annotator] = [convo.annotate] if cfg.conversation.labels_turns(cfg) else []
    observers: list[AnswerObserver] = [convo]
    # Knowledge bases answer per request around whichever model answers: the retrieved text is part of the
    # prompt the cache sees, so a changed knowledge base is never answered from an old cache entry.
    rewrite = convo.rewriter.query if cfg.conversation.rewrite != "off" else None
    rag = RagStage.for_config(cfg, registry, on_search=metrics.rag_searched, rewrite=rewrite)
    shared = None
    url = cfg.replicas.redis_url or cfg.cache.redis_url
    if url and cfg.replicas.share_breakers and breakers:
        from hearth.routing.shared import SharedBreakers

        shared = SharedBreakers(url, breakers)
    assembly = Assembly(registry=registry, metrics=metrics, rag=rag, leaves=chat, convo=convo, cache=cache,
                        breakers=breakers, shared=shared, annotators=annotators, observers=observers,
                        residency=residency, stages=layers, models=dict(cfg.models))
    from hearth.lifecycle.adapters import Adapters
    from hearth.lifecycle.service import LocalModels
    from hearth.lifecycle.store import ModelStore

    store = ModelStore(cfg.local.root())
    assembly.adapters = Adapters(cfg, store, registry, lambda: services.local)
    assembly.pulled = LocalModels(cfg, residency, assembly.serve, assembly.unserve, services.local, store,
                                  on_added=assembly.adapters.sync)
    registry.resolvers[:] = [assembly.adapters, rag]  # names the registry resolves: `base+adapter`, then `rag:<kb>`
    _instrument(assembly)
    return assembly


def _instrument(a: Assembly) -> None:
    """Gauges read at scrape time from the parts that own the numbers."""
    m = a.metrics
    for name, leaf in a.leaves.items():
        _instrument_leaf(m, name, leaf)
    from hearth.embed.local import LocalEmbedder

    for name, embedder in a.registry.embedders.items():
        if isinstance(embedder, LocalEmbedder):
            m.embedder.set_function((name, "batches"), functools.partial(_embedder_count, embedder, "batches"))
            m.embedder.set_function((name, "texts"), functools.partial(_embedder_count, embedder, "texts"))
    if a.cache is not None:
        cache = a.cache
        for what in ("memory_entries", "memory_bytes", "memory_evictions", "redis_errors"):
            m.cache_size.set_function((what,), _stat(cache.stats, what))
        if cache.semantic is not None:
            m.cache_size.set_function(("semantic_entries",), cache.semantic.size)
    for bname, breaker in a.breakers.items():
        m.circuit.set_function((bname,), functools.partial(_circuit, breaker))


def _seconds(keep_alive: str | float) -> float:
    parsed = parse_keep_alive(keep_alive)
    return 0.0 if parsed is None else parsed


def _instrument_leaf(m: GatewayMetrics, name: str, leaf: Backend) -> None:
    engine = leaf.local
    if engine is not None:
        for key in ENGINE_STATS:
            m.engine.set_function((name, key), _stat(engine.stats, key))


def _stat(stats: Callable[[], Mapping[str, Any]], key: str) -> Callable[[], float]:
    return lambda: float(stats().get(key, 0))


def _embedder_count(e: LocalEmbedder, what: str) -> float:
    return float(e.batches if what == "batches" else e.texts)


def _circuit(breaker: CircuitBreaker) -> float:
    return float(breaker.state)
