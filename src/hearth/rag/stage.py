"""RAG as the outermost stage: which requests answer from a knowledge base, and the service they use.

RAG is chosen per request (the model `rag:<kb>`, a profile name from `rag.profiles`, or the body
extension `"hearth": {"rag": {"kb": ...}}`), so it is not built around each model at start-up: the
registry asks this resolver first and it wraps whatever served model answers (cache and router
included) in a `RagBackend` for that one request. The knowledge-base service is made on first use:
it needs numpy and opens the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hearth.config import Config, EmbeddingModel, RagConfig
from hearth.core.errors import BadRequest
from hearth.core.registry import ModelRegistry
from hearth.core.types import Backend, ChatRequest, InputType
from hearth.rag.types import Rewrite

if TYPE_CHECKING:  # both import numpy, which a gateway that never uses RAG should not load at start-up
    from hearth.rag.service import RagService

log = logging.getLogger("hearth")

SearchHook = Callable[[str, str, float], None]  # (kb, mode, seconds)


class RagStage:
    def __init__(self, cfg: RagConfig, registry: ModelRegistry, on_search: SearchHook | None = None, *,
                 english_only: Iterable[str] = (), multilingual: Iterable[str] = (),
                 rewrite: Rewrite | None = None) -> None:
        """`rewrite`: makes a follow-up turn a standalone query before retrieval."""
        self.cfg = cfg
        self.rewrite = rewrite
        self.registry = registry
        self.on_search = on_search
        self.english_only = list(english_only)  # local embedding models trained on English only
        self.multilingual = list(multilingual)  # local embedding models trained on many languages
        self._service: RagService | None = None

    @classmethod
    def for_config(cls, cfg: Config, registry: ModelRegistry, on_search: SearchHook | None = None, *,
                   rewrite: Rewrite | None = None) -> RagStage:
        """The stage for a configuration: its `rag:` section and which of its local embedding models know which
        languages."""
        local = {n: m for n, m in cfg.models.items() if isinstance(m, EmbeddingModel)}
        return cls(cfg.rag, registry, on_search, english_only=[n for n, m in local.items() if not m.is_multilingual()],
                   multilingual=[n for n, m in local.items() if m.is_multilingual()], rewrite=rewrite)

    def __call__(self, request: ChatRequest, registry: ModelRegistry) -> tuple[str, Backend] | None:
        model = request.model
        ext = request.extensions.get("rag")
        profile = self.cfg.profiles.get(model)
        if not model.startswith("rag:") and profile is None and not ext:
            return None
        opts: dict[str, Any] = dict(ext) if isinstance(ext, dict) else {}
        if (ext is not None and not isinstance(ext, dict)) or not isinstance(opts.get("filter") or {}, dict):
            raise BadRequest('hearth.rag: expected {"kb": "<name>", "top_k": N, "filter": {...}}', param="hearth.rag")
        kb: Any
        if model.startswith("rag:"):
            kb, chat = model[4:], self.cfg.chat_model or registry.default_chat()
        elif profile is not None:
            kb, chat = profile.kb, profile.model or self.cfg.chat_model or registry.default_chat()
            opts.setdefault("top_k", profile.top_k)
        else:
            kb, chat = opts.get("kb"), model
        if not isinstance(kb, str) or not kb:
            raise BadRequest("hearth.rag.kb: name the knowledge base", param="hearth.rag.kb")
        top_k = opts.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= 100):
            raise BadRequest("hearth.rag.top_k: an integer from 1 to 100", param="hearth.rag.top_k")
        from hearth.rag.backend import RagBackend

        inner_name = registry.canonical(chat)
        backend = RagBackend(self.service(), registry.get(inner_name), inner_name, kb, top_k=top_k,
                             where=opts.get("filter"), rewrite=self.rewrite)
        return backend.name, backend

    def service(self) -> RagService:
        if self._service is None:
            from hearth.rag.service import RagService
            from hearth.rag.types import Catalog

            c = self.cfg
            catalog: Catalog
            if c.store == "chroma":
                from hearth.rag.chroma import ChromaCatalog

                catalog = ChromaCatalog(c.chroma_url, c.chroma_tenant, c.chroma_database)
            else:
                from hearth.rag.store import LocalCatalog

                catalog = LocalCatalog(c.local_root())
            registry = self.registry

            async def embed(texts: list[str], model: str, input_type: InputType) -> Any:
                return (await registry.embed(model, texts, input_type=input_type)).vectors

            def count(texts: list[str]) -> list[int]:
                from hearth.embed.local import shared_tokens

                return shared_tokens().count_tokens(texts)  # type: ignore[no-any-return]

            embedders = list(registry.embedders)
            multilingual = next(iter(self.multilingual), None)
            english = next(iter(self.english_only), multilingual or "all-minilm")
            self._service = RagService(c, catalog, embed, count, models=embedders, english_only=self.english_only,
                                       english=english, multilingual=multilingual,
                                       on_search=self.on_search)
        return self._service

    async def warm(self) -> None:
        """Load existing local knowledge bases' indexes after start-up, so the first question after a restart
        does not pay for it (~5 s at 100k chunks). Remote stores and empty homes cost nothing."""
        c = self.cfg
        if c.store != "local" or not c.local_root().is_dir():
            return
        try:
            svc = self.service()
            for name in await svc.catalog.names():
                await (await svc.catalog.open(name)).warm()
        except Exception as e:  # a broken knowledge base must not stop the gateway; its searches will say why
            log.warning("could not preload knowledge bases: %s", e)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.catalog.close()
