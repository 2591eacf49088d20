"""Providers: what builds the leaf of a configured model, by its config `kind`.

A provider kind is one module plus one call: `register_provider(kind, factory, config=TheConfigClass)`. The
built-in kinds register from the composition root (`assemble.py`); a third party's package declares an entry
point in the group `hearth.providers`, named after its kind, pointing at a function that makes this call, and
hearth loads it the first time a config names the kind (`config/plugins.py`). This module sits below both the
backends and the assembly, so a provider imports it without importing the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hearth.config import ModelConfig, RemoteModel, RouterModel
from hearth.config.plugins import register_kind
from hearth.core.types import Backend, Embedder

if TYPE_CHECKING:
    from hearth.backends.llamacpp import LlamaCppBackend
    from hearth.lifecycle.residency import Residency


@dataclass(frozen=True, slots=True)
class Made:
    """What a provider built for one configured model: a chat leaf, an embedder, or one object that is both
    (a remote provider chats and embeds over one connection pool)."""

    chat: Backend | None = None
    embedder: Embedder | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """What the gateway lends every provider: the residency that decides which local models are in memory
    (None where no local chat model is built: the knowledge-base commands build embedders only), and the roll
    of local llama.cpp models (adapters attach to them; pulled models join it)."""

    residency: Residency | None = None
    local: dict[str, LlamaCppBackend] = field(default_factory=dict)


ProviderFactory = Callable[[str, Any, Services], Made]
PROVIDERS: dict[str, ProviderFactory] = {}


def register_provider(kind: str, factory: ProviderFactory, *, config: type[RemoteModel] | None = None) -> None:
    """Make `kind:` in a model's config build its backend with `factory(name, model_config, services)`.

    A plugin's kind also names its config class (a `RemoteModel` with `kind: Literal[kind]`), which entries of
    that kind are validated as. The plugin's package declares an entry point in the group `hearth.providers`,
    named after the kind, pointing at a function that makes this call (`backends/anthropic.py` is built so)."""
    PROVIDERS[kind] = factory
    if config is not None:
        register_kind(kind, config)


def build(models: Mapping[str, ModelConfig], services: Services, given: Mapping[str, Backend] | None = None
          ) -> tuple[dict[str, Backend], dict[str, Embedder]]:
    """The leaves of `models` by their kinds' factories: the models that chat, and those that embed (a remote
    provider does both over one connection pool). Routers are built over leaves, not here; `given` replaces the
    provider of the models it names (test doubles such as `hearth.testing.ScriptedBackend`)."""
    chat: dict[str, Backend] = {}
    embedders: dict[str, Embedder] = {}
    for name, m in models.items():
        if isinstance(m, RouterModel):
            continue
        made = Made(chat=given[name]) if given and name in given else PROVIDERS[m.kind](name, m, services)
        if made.chat is not None:
            chat[name] = made.chat
        if made.embedder is not None:
            embedders[name] = made.embedder
    return chat, embedders


def aliases(models: Mapping[str, ModelConfig]) -> dict[str, str]:
    """Each alias -> the name of the model it stands for."""
    return {a: name for name, m in models.items() for a in m.aliases}

