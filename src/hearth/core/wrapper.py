"""The base of every stage between the dialect and a model: a Backend that delegates to another one.

Each member of the `Backend` protocol is forwarded explicitly (no `__getattr__`): a stage that needs a
capability of the backend below it (is it local, how long is its queue) asks through the protocol, and
mypy checks that every stage still provides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.core.types import Backend, ChatRequest, Chunk, LocalEngine, ModelInfo


class WrappingBackend:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return self.inner.stream(request)

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def local(self) -> LocalEngine | None:
        return self.inner.local

    async def check_health(self) -> None:
        await self.inner.check_health()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def info(self) -> ModelInfo:
        return self.inner.info()
