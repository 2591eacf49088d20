"""Maps requested model names (and aliases) to the backends the composition root built.

The registry only resolves names and starts and stops what it holds; it builds nothing and knows no
stage. Requests that name something other than a model (`rag:<kb>`, a RAG profile, a body extension)
are resolved by the `RequestResolver`s it is given, in order, before plain names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from hearth.core.errors import BadRequest, ModelNotFound
from hearth.core.types import Backend, ChatRequest, Embedder, Embeddings, InputType, ModelInfo


class RequestResolver(Protocol):
    def __call__(self, request: ChatRequest, registry: ModelRegistry) -> tuple[str, Backend] | None:
        """The backend for this request, or None when the request is not this resolver's to answer."""
        ...


class ModelRegistry:
    def __init__(
        self,
        chat: Mapping[str, Backend],
        embedders: Mapping[str, Embedder] | None = None,
        aliases: Mapping[str, str] | None = None,
        resolvers: Sequence[RequestResolver] = (),
    ) -> None:
        self.chat = dict(chat)
        self.embedders = dict(embedders or {})
        self.aliases = dict(aliases or {})
        self.resolvers = list(resolvers)

    def canonical(self, requested: str) -> str:
        for candidate in (requested, requested.removesuffix(":latest")):
            if candidate in self.chat or candidate in self.embedders:
                return candidate
            if candidate in self.aliases:
                return self.aliases[candidate]
        known = ", ".join(sorted({*self.chat, *self.embedders, *self.aliases}))
        raise ModelNotFound(f"model {requested!r} not found; available: {known}", param="model")

    def resolve(self, request: ChatRequest) -> tuple[str, Backend]:
        """The served name and backend for a chat request."""
        for resolver in self.resolvers:
            found = resolver(request, self)
            if found is not None:
                return found
        name = self.canonical(request.model)
        return name, self.get(name)

    def get(self, requested: str) -> Backend:
        """The chat backend for a model name or alias."""
        name = self.canonical(requested)
        backend = self.chat.get(name)
        if backend is None:
            raise BadRequest(f"model {requested!r} is an embedding model; use /v1/embeddings or /api/embed",
                             param="model", code="model_not_chat")
        return backend

    def embedder(self, requested: str) -> Embedder:
        name = self.canonical(requested)
        embedder = self.embedders.get(name)
        if embedder is None:
            raise BadRequest(f"model {requested!r} does not produce embeddings; use "
                             f"{self.default_embedder() or 'an embedding model'}", param="model",
                             code="model_not_embedding")
        return embedder

    async def embed(self, requested: str, texts: list[str], *, truncate: bool = True, dimensions: int | None = None,
                    input_type: InputType | None = None) -> Embeddings:
        """Embed with the named model: the local embedding model, or a remote provider's."""
        return await self.embedder(requested).embed(texts, truncate=truncate, dimensions=dimensions,
                                                    input_type=input_type)

    def info(self, requested: str) -> ModelInfo:
        name = self.canonical(requested)
        model = self.chat.get(name) or self.embedders[name]
        return model.info()

    def default_chat(self) -> str:
        for name in self.chat:
            return name
        raise ModelNotFound("no chat model is configured")

    def default_embedder(self) -> str | None:
        """The first embedding-only model (a remote chat provider can embed too, but is not the default)."""
        return next((n for n in self.embedders if n not in self.chat), None)

    def served_names(self) -> list[str]:
        """Each configured model once, chat models first, in config order."""
        return [*self.chat, *(n for n in self.embedders if n not in self.chat)]

    def names(self) -> list[str]:
        """Every name a client may ask for: the models, then their aliases."""
        return [*self.served_names(), *self.aliases]

    def states(self) -> dict[str, str]:
        """Each model's state for /health: ready, loading, or unavailable (its engine failed its check)."""
        out = {}
        for n in self.served_names():
            model = self.chat.get(n) or self.embedders[n]
            out[n] = "unavailable" if self.unavailable(n) else "ready" if model.ready else "loading"
        return out

    def unavailable(self, name: str) -> str | None:
        """Why the named model cannot run on this machine, or None."""
        backend = self.chat.get(name)
        if backend is not None:
            engine = backend.local
            return engine.unavailable if engine is not None else None
        embedder = self.embedders.get(name)
        return embedder.unavailable if embedder is not None else None

    def _each(self) -> list[Backend | Embedder]:
        """Each configured model once (a remote provider is both a chat backend and an embedder)."""
        return [*self.chat.values(), *(e for n, e in self.embedders.items() if n not in self.chat)]

    async def start(self) -> None:
        # Local models load one after another (they share the cores); remote ones need no start.
        for model in self._each():
            await model.start()

    async def close(self) -> None:
        await asyncio.gather(*(model.close() for model in self._each()), return_exceptions=True)
