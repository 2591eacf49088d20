"""`kind: echo`: a provider plugin as a third party writes one, against hearth's public names only.

Its config class adds one field to `RemoteModel`; its backend answers every request with `prefix` and the
question, streamed word by word. The package's entry point (group `hearth.providers`, name `echo`) points at
`register`, which hearth loads the first time a config names the kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from hearth.config import RemoteModel
from hearth.core.types import ChatRequest, Chunk, Finish, LocalEngine, ModelInfo, TextDelta, Usage

LOADED: list[str] = []  # `register` calls, so a test can tell the entry point ran


class EchoModel(RemoteModel):
    kind: Literal["echo"]
    base_url: str = "echo://"
    prefix: str = "echo:"


class EchoBackend:
    def __init__(self, name: str, cfg: EchoModel) -> None:
        self.name, self.cfg = name, cfg

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        words = [self.cfg.prefix, *request.question().split()]
        for i, w in enumerate(words):
            yield TextDelta(w if i == 0 else " " + w)
        yield Usage(len(request.question().split()), len(words))
        yield Finish("stop")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, kind="echo", owned_by="echo", context_length=self.cfg.context_length)

    @property
    def ready(self) -> bool:
        return True

    @property
    def local(self) -> LocalEngine | None:
        return None

    async def check_health(self) -> None:
        return None


def _factory(name: str, cfg: EchoModel, services: Any) -> Any:
    from hearth.providers import Made

    return Made(chat=EchoBackend(name, cfg))


def register() -> None:
    from hearth.providers import register_provider

    LOADED.append("echo")
    register_provider("echo", _factory, config=EchoModel)
