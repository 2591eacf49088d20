"""`docs/config.md`, written from the config schema itself: every section and model kind, every field with its
type, default and description, so the reference cannot drift from what `load_config` accepts.

    python -m hearth.config.reference > docs/config.md

`tests/config/test_reference.py` fails when the committed file differs from what this writes. Provider kinds
from plugins are included when their entry point is installed (hearth ships `anthropic`).
"""

from __future__ import annotations

import re
import types
import typing
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hearth.config.models import BUILTIN_MODELS
from hearth.config.plugins import GROUP, plugin_config
from hearth.config.schema import Config


def _type(t: Any) -> str:
    """A field's type as a reader of YAML thinks of it."""
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in typing.get_args(t))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in typing.get_args(t))
    if origin is typing.Annotated:
        return _type(typing.get_args(t)[0])
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(t)
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        args = typing.get_args(t)
        return f"map of {_type(args[1])}" if len(args) == 2 else "map"
    if t is type(None):
        return "null"
    if isinstance(t, type) and issubclass(t, BaseModel):
        return f"[{t.__name__}](#{t.__name__.lower()})"
    name = getattr(t, "__name__", None) or str(t)
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Any": "any"}.get(name, name)


def _default(f: FieldInfo) -> str:
    if f.default_factory is not None:
        value = f.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return f"`{value!r}`" if value not in ({}, [], set()) else "empty"
    if f.default is PydanticUndefined:
        return "**required**"
    return f"`{f.default!r}`".replace("None", "null").replace("True", "true").replace("False", "false")


def _nested(t: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [t]
    for a in typing.get_args(t):
        out += _nested(a)
    return out


def _table(model: type[BaseModel], seen: set[type[BaseModel]], out: list[str], title: str,
           nested: bool = True) -> None:
    """The model's fields, then (with `nested`) each model they hold that has no table yet."""
    if model in seen:
        return
    seen.add(model)
    out += [f"### {title}", ""]
    if doc := (model.__doc__ or "").strip():
        out += [re.sub(r"\s+", " ", doc), ""]
    out += ["| field | type | default | what it does |", "|---|---|---|---|"]
    later: list[type[BaseModel]] = []
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        text = re.sub(r"\s+", " ", f.description or "").replace("|", "\\|")
        kind = "map of model entries (see Model kinds)" if name == "models" else _type(f.annotation)
        out.append(f"| `{name}` | {kind} | {_default(f)} | {text} |")
        later += [m for m in _nested(f.annotation) if m not in seen and m not in later]
    out.append("")
    for m in later if nested else ():
        _table(m, seen, out, m.__name__)


def render() -> str:
    out = ["# Configuration reference", "",
           "Written by `python -m hearth.config.reference` from the schema `hearth serve` validates with (a test",
           "fails when this file is stale). A YAML file has the sections below; `models:` maps each name to one",
           "entry whose `kind` picks its fields. Every field can also be set from the environment",
           "(`HEARTH_SERVER__PORT=9000`; see [configuration.md](configuration.md)).", "", "## Sections",
           ""]
    top: list[str] = []
    _table(Config, set(), top, "Config", nested=False)
    out += top[2:]  # the top-level table, without its own heading
    out += ["## Model kinds", ""]
    kinds: list[tuple[str, type[BaseModel]]] = list(BUILTIN_MODELS.items())
    # Kinds of installed plugins only (a kind registered in code by a running program is not part of the
    # reference), without `echo`, the tests' own plugin.
    for kind in sorted({ep.name for ep in entry_points(group=GROUP)} - {"echo"}):
        if (cls := plugin_config(kind)) is not None:
            kinds.append((kind, cls))
    seen: set[type[BaseModel]] = {Config}
    for kind, cls in kinds:
        _table(cls, seen, out, f"{cls.__name__} (`kind: {kind}`)")
    out += ["## Section fields", ""]
    for f in Config.model_fields.values():
        for model in _nested(f.annotation):
            if model.__name__ != "PluginModel":
                _table(model, seen, out, model.__name__)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
