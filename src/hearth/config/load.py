"""From a YAML file and the environment to a validated `Config`, or a `ConfigError` that says where.

A gateway that refuses to start must say exactly why, so loading keeps what validation alone loses:
the YAML line of every key (recorded from the parsed node tree), so that schema errors, unset
`${VAR}`s and bad references between models all name the file, the line and the field. The order is
fixed: read, interpolate `${VAR}` / `${VAR:-default}` in string values, apply `HEARTH_*` overrides
(env.py), validate (schema.py), check references (checks.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hearth.config.checks import check_references
from hearth.config.env import _apply_env
from hearth.config.models import BUILTIN_KINDS
from hearth.config.schema import Config

MIN_ADMIN_KEY = 32  # characters of HEARTH_ADMIN_KEY


class ConfigError(Exception):
    pass


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the YAML file (flag, else $HEARTH_CONFIG, else none), apply env overrides, validate."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("HEARTH_CONFIG") or None
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config: {e.strerror or e}") from e
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: invalid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: line 1: the top level must be a mapping (server:, models:)")
        raw = loaded or {}
        if node is not None:
            _record_lines(node, (), lines)
        missing: list[str] = []
        raw = _interpolate(raw, env, (), missing)
        if missing:
            unset = [f"{source}:{lines.get(tuple(p.split('.')[:-1]), '?')}: {p}" for p in missing]
            raise ConfigError("invalid config: environment variable not set (and no ${VAR:-default}):\n  "
                              + "\n  ".join(unset))
    _apply_env(raw, env)
    admin = env.get("HEARTH_ADMIN_KEY")
    if admin and len(admin) < MIN_ADMIN_KEY:
        # A short admin key can be guessed; refusing to start says so before anyone relies on it.
        raise ConfigError(f"HEARTH_ADMIN_KEY is {len(admin)} characters long; an admin key needs at least "
                          f"{MIN_ADMIN_KEY} (hearth keys create makes tenant keys; e.g. openssl rand -hex 24)")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, source, lines)) from None
    problems = check_references(cfg)
    if problems:
        msgs = []
        for where_path, msg in problems:
            n = next((n for n in range(len(where_path), -1, -1) if where_path[:n] in lines), None)
            where = f"{source}:{lines[where_path[:n]]}" if n is not None else source
            msgs.append(f"{where}: {'.'.join(where_path)}: {msg}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(msgs))
    cfg.source = source
    return cfg


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str], path: tuple[str, ...], missing: list[str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values (not keys) from the environment."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env, (*path, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*path, str(i)), missing) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            if m.group(1) in env and env[m.group(1)] != "":
                return env[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            missing.append(f"{'.'.join(path)}.${{{m.group(1)}}}")
            return ""

        return _VAR.sub(repl, value)
    return value


def _record_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(k.value)
            out[(*path, key)] = k.start_mark.line + 1
            _record_lines(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _record_lines(v, (*path, str(i)), out)


_TAGS = frozenset((*BUILTIN_KINDS, "plugin"))  # the union's tags pydantic puts in an error's path


def _describe(e: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    msgs = []
    for err in e.errors():
        # Drop the discriminator tags pydantic adds ("openai", "llamacpp") to get the YAML path.
        loc = [str(p) for p in err["loc"] if p not in _TAGS]
        field = ".".join(loc) or "(top level)"
        line = None
        for n in range(len(loc), -1, -1):
            if tuple(loc[:n]) in lines:
                line = lines[tuple(loc[:n])]
                break
        where = f"{source}:{line}" if line else source
        msgs.append(f"{where}: {field}: {err['msg']}")
    return "invalid config:\n  " + "\n  ".join(msgs)
