"""Provider kinds added from outside the config schema: a plugin's `kind:` and the config class it is read as.

A provider plugin is one module and one entry point (group `hearth.providers`, named after its kind) whose
object is a function of no arguments that calls `hearth.providers.register_provider(kind, factory,
config=TheConfigClass)`. The config schema asks here when it meets a kind it does not know; the entry point
of that name is loaded then, and only then, so a gateway that uses no plugin imports none (and pays
nothing at start). Registering in code (`register_provider` before `load_config`) works the same way.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger("hearth")
GROUP = "hearth.providers"
_CONFIGS: dict[str, type[Any]] = {}
_tried: set[str] = set()


def register_kind(kind: str, config: type[Any]) -> None:
    """Read `kind:` entries as `config` (a subclass of `hearth.config.RemoteModel`)."""
    _CONFIGS[kind] = config


def plugin_config(kind: str) -> type[Any] | None:
    """The config class registered for `kind`, loading the entry point of that name the first time it is asked."""
    if kind not in _CONFIGS and kind not in _tried:
        _tried.add(kind)
        for ep in entry_points(group=GROUP, name=kind):
            try:
                ep.load()()
            except Exception as e:  # a broken plugin must name itself, not crash the config check with a trace
                log.error("provider plugin %r (%s) failed to load: %r", kind, ep.value, e)
                raise ValueError(f"the provider plugin for kind {kind!r} failed to load: {e!r}") from e
    return _CONFIGS.get(kind)


def plugin_kinds() -> list[str]:
    """The plugin kinds that are registered or installed (for the message that refuses an unknown kind)."""
    return sorted({*_CONFIGS, *(ep.name for ep in entry_points(group=GROUP))})
