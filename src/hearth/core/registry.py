"""Maps requested model names (and aliases) to backends built once from config."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hearth.config import Config, EmbeddingModel, LocalModel, OllamaModel, OpenAIModel, RagConfig, RouterModel
from hearth.core.errors import BadRequest, ModelNotFound
from hearth.core.types import Backend, ChatRequest, Embeddings
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
        self.rag_config = RagConfig()
        self._rag: Any = None  # hearth.rag.service.RagService, made on first use
        self.on_rag_search: Any = None  # set by the server: (kb, mode, seconds) -> None

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
        reg.rag_config = cfg.rag
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

    def resolve(self, request: ChatRequest) -> tuple[str, Backend]:
        """The backend for a chat request: a model, or RAG over one (`rag:<kb>`, a RAG profile, or the
        body extension `"hearth": {"rag": {"kb": ...}}`)."""
        model = request.model
        ext = request.extensions.get("rag")
        profile = self.rag_config.profiles.get(model)
        if not model.startswith("rag:") and profile is None and not ext:
            name = self.canonical(model)
            return name, self.backends[name]
        from hearth.rag.backend import RagBackend

        opts: dict[str, Any] = dict(ext) if isinstance(ext, dict) else {}
        if (ext is not None and not isinstance(ext, dict)) or not isinstance(opts.get("filter") or {}, dict):
            raise BadRequest('hearth.rag: expected {"kb": "<name>", "top_k": N, "filter": {...}}', param="hearth.rag")
        kb: Any
        if model.startswith("rag:"):
            kb, chat = model[4:], self.rag_config.chat_model or self.default_chat()
        elif profile is not None:
            kb, chat = profile.kb, profile.model or self.rag_config.chat_model or self.default_chat()
            opts.setdefault("top_k", profile.top_k)
        else:
            kb, chat = opts.get("kb"), model
        if not isinstance(kb, str) or not kb:
            raise BadRequest("hearth.rag.kb: name the knowledge base", param="hearth.rag.kb")
        top_k = opts.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= 100):
            raise BadRequest("hearth.rag.top_k: an integer from 1 to 100", param="hearth.rag.top_k")
        inner_name = self.canonical(chat)
        backend = RagBackend(self.rag(), self.backends[inner_name], inner_name, kb, top_k=top_k,
                             where=opts.get("filter"))  # fmt: skip
        return backend.name, backend

    def default_chat(self) -> str:
        for name, b in self.backends.items():
            if getattr(b, "kind", "") != "embedding":
                return name
        raise ModelNotFound("no chat model is configured")

    def rag(self) -> Any:
        """The knowledge-base service (hearth.rag.service.RagService), made on first use: it needs numpy
        and opens the store."""
        if self._rag is None:
            from hearth.rag.service import RagService
            from hearth.rag.types import Catalog

            c = self.rag_config
            catalog: Catalog
            if c.store == "chroma":
                from hearth.rag.chroma import ChromaCatalog

                catalog = ChromaCatalog(c.chroma_url, c.chroma_tenant, c.chroma_database)
            else:
                from hearth.rag.store import LocalCatalog

                catalog = LocalCatalog(c.local_root())

            async def embed(texts: list[str]) -> Any:
                return (await self.embed(c.embedding_model, texts)).vectors

            def count(texts: list[str]) -> list[int]:
                from hearth.embed.local import shared_minilm

                return shared_minilm().count_tokens(texts)  # type: ignore[no-any-return]

            self._rag = RagService(c, catalog, embed, count)
            self._rag.on_search = self.on_rag_search
        return self._rag

    async def warm_rag(self) -> None:
        """Load existing local knowledge bases' indexes after start-up, so the first question after a restart
        does not pay for it (~5 s at 100k chunks). Remote stores and empty homes cost nothing."""
        c = self.rag_config
        if c.store != "local" or not c.local_root().is_dir():
            return
        try:
            svc = self.rag()
            for name in await svc.catalog.names():
                await (await svc.catalog.open(name)).warm()
        except Exception as e:  # a broken knowledge base must not stop the gateway; its searches will say why
            log.warning("could not preload knowledge bases: %s", e)

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
        if self._rag is not None:
            await self._rag.catalog.close()
        if self.cache is not None:
            await self.cache.close()

    @property
    def ready(self) -> bool:
        return all(b.ready for b in self.backends.values())
