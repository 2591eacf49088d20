"""Maps requested model names (and aliases) to backends built once from config."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hearth.config import Config, EmbeddingModel, LocalModel, OllamaModel, OpenAIModel, RouterModel
from hearth.core.errors import BadRequest, ModelNotFound
from hearth.core.types import Backend, Embeddings
from hearth.structured.constrained import ConstrainedBackend

log = logging.getLogger("hearth")

BackendFactory = Callable[[str, object], Backend]


def build_backend(name: str, cfg: LocalModel | OpenAIModel | OllamaModel | RouterModel) -> Backend:
    # Imports are local so a gateway with only remote models never imports the engine.
    if isinstance(cfg, LocalModel):
        from hearth.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(name, cfg)
    if isinstance(cfg, RouterModel):
        raise TypeError("routers are built by ModelRegistry, after the backends they route to")
    if isinstance(cfg, OpenAIModel):
        from hearth.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(name, cfg)
    from hearth.backends.ollama import OllamaBackend

    return OllamaBackend(name, cfg)


class ModelRegistry:
    def __init__(self, backends: dict[str, Backend], aliases: dict[str, str] | None = None) -> None:
        from hearth.routing.breaker import CircuitBreaker

        self.backends = backends
        self.aliases = aliases or {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.cache: Any = None  # hearth.cache.backend.ResponseCache when caching is on

    @classmethod
    def from_config(cls, cfg: Config) -> ModelRegistry:
        backends: dict[str, Backend] = {}
        aliases: dict[str, str] = {}
        embedders: dict[str, Backend] = {}
        for name, m in cfg.models.items():
            if isinstance(m, EmbeddingModel):
                from hearth.embed.local import LocalEmbedder

                embedders[name] = LocalEmbedder(name, m)  # no chat: no structured output, cache or routing
            elif not isinstance(m, RouterModel):
                # Every leaf gets structured output and tool calls; plain requests pass straight through.
                backends[name] = ConstrainedBackend(build_backend(name, m))
            for a in m.aliases:
                aliases[a] = name
        reg = cls(backends, aliases)
        reg.cache = None
        routers = {n: m for n, m in cfg.models.items() if isinstance(m, RouterModel)}
        if routers:
            from hearth.routing.router import RouterBackend

            leaves = dict(backends)
            for name, m in routers.items():
                backends[name] = RouterBackend(name, m, leaves, reg.breakers)
        if cfg.cache.enabled:  # outermost: a hit costs no routing, no engine, no provider
            from hearth.cache.backend import CacheBackend, ResponseCache

            reg.cache = ResponseCache(cfg.cache)
            for name in list(backends):
                backends[name] = CacheBackend(backends[name], reg.cache)
        backends.update(embedders)
        return reg

    def canonical(self, requested: str) -> str:
        for candidate in (requested, requested.removesuffix(":latest")):
            if candidate in self.backends:
                return candidate
            if candidate in self.aliases:
                return self.aliases[candidate]
        known = ", ".join(sorted([*self.backends, *self.aliases]))
        raise ModelNotFound(f"model {requested!r} not found; available: {known}", param="model")

    def get(self, requested: str) -> Backend:
        return self.backends[self.canonical(requested)]

    async def embed(self, requested: str, texts: list[str], *, truncate: bool = True,
                    dimensions: int | None = None) -> Embeddings:  # fmt: skip
        """Embed with the named model: the local embedding model, or a remote provider's."""
        backend = self.get(requested)
        embed = getattr(backend, "embed", None)  # seen through wrappers (cache, structured output)
        if embed is None:
            raise BadRequest(f"model {requested!r} does not produce embeddings; use "
                             f"{self.default_embedder() or 'an embedding model'}", param="model",
                             code="model_not_embedding")  # fmt: skip
        result: Embeddings = await embed(texts, truncate=truncate, dimensions=dimensions)
        return result

    def default_embedder(self) -> str | None:
        return next((n for n, b in self.backends.items() if getattr(b, "kind", "") == "embedding"), None)

    def names(self) -> list[str]:
        return [*self.backends, *self.aliases]

    async def start(self) -> None:
        # Local models load one after another (they share the cores); remote ones need no start.
        for b in self.backends.values():
            await b.start()
        if self.cache is not None:
            await self.cache.start()

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()

    @property
    def ready(self) -> bool:
        return all(b.ready for b in self.backends.values())
