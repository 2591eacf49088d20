"""The leaves: the in-process engine's backend and the remote providers.

Importing this package registers the built-in provider kinds (`hearth.providers.register_provider`, the call a
plugin makes). The factories import their backend when first called, so a gateway with only remote models
never imports the engine.
"""

from __future__ import annotations

from typing import Any

from hearth.config.keep_alive import FOREVER, parse_keep_alive
from hearth.providers import Made, Services, register_provider


def _llamacpp(name: str, cfg: Any, services: Services) -> Made:
    from hearth.backends.llamacpp import LlamaCppBackend

    residency = services.residency
    assert residency is not None, "a local chat model needs the gateway's residency"
    b = LlamaCppBackend(name, cfg, residency)
    services.local[name] = b
    keep = parse_keep_alive(cfg.keep_alive)
    default = FOREVER if cfg.preload else residency.default_keep_alive
    residency.register(b, keep if keep is not None else default)
    return Made(chat=b)


def _openai(name: str, cfg: Any, services: Services) -> Made:
    from hearth.backends.openai_compat import OpenAICompatBackend

    b = OpenAICompatBackend(name, cfg)
    return Made(chat=b, embedder=b)


def _ollama(name: str, cfg: Any, services: Services) -> Made:
    from hearth.backends.ollama import OllamaBackend

    b = OllamaBackend(name, cfg)
    return Made(chat=b, embedder=b)


def _embedding(name: str, cfg: Any, services: Services) -> Made:
    from hearth.embed.local import LocalEmbedder

    return Made(embedder=LocalEmbedder(name, cfg))


register_provider("llamacpp", _llamacpp)
register_provider("openai", _openai)
register_provider("ollama", _ollama)
register_provider("embedding", _embedding)
