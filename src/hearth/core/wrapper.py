"""The base of every stage between the dialect and a model: a Backend that delegates to another one.

Anything a wrapper does not define (queue_depth, stats, list_models...) is looked up on the backend it
wraps, so outer stages (the router, the server's metrics) see through the onion.
"""

from __future__ import annotations

from typing import Any

from hearth.core.types import Backend, ModelInfo


class WrappingBackend:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def info(self) -> ModelInfo:
        return self.inner.info()
