"""`HEARTH_*` environment overrides, applied to the raw YAML mapping before validation.

They let a deployment change one value (a port, a context size, a timeout) without editing the file,
and because they write into the raw mapping, an override is validated exactly like the file's own value.
Levels are joined by `__`: `HEARTH_SERVER__PORT=9000`, `HEARTH_MODELS__LOCAL__N_CTX=8192` (model names
match case-insensitively, `-`/`.` read as `_`). Values are parsed as YAML scalars, so `true`, `8`,
`[a, b]` work. Variables without `__`, and the reserved ones below, are not overrides.
"""

from __future__ import annotations

from typing import Any

import yaml

_RESERVED_ENV = {"HEARTH_HOME", "HEARTH_CONFIG", "HEARTH_LOG_LEVEL"}


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    for key, value in sorted(env.items()):
        if not key.startswith("HEARTH_") or key in _RESERVED_ENV or "__" not in key:
            continue
        parts = [p.lower() for p in key[len("HEARTH_") :].split("__")]
        node: dict[str, Any] = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            existing = _match_key(node, part)
            if last:
                node[existing or part] = yaml.safe_load(value) if value != "" else None
            else:
                child = node.get(existing or part)
                if not isinstance(child, dict):
                    child = {}
                    node[existing or part] = child
                node = child


def _match_key(node: dict[str, Any], part: str) -> str | None:
    norm = part.replace("-", "_").replace(".", "_")
    for k in node:
        if str(k).lower().replace("-", "_").replace(".", "_") == norm:
            return str(k)
    return None
