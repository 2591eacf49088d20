"""JSON schemas: checked, compiled to llama.cpp grammars once, validated, and repaired.

A schema is checked before anything runs: keywords the grammar compiler cannot enforce (`not`,
`if`/`then`, `patternProperties`, `dependentSchemas`...) are refused with a 400 that names the keyword
and where it is, instead of being silently ignored and producing output that does not match. Compiled
grammars are cached by the schema's canonical JSON.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from hearth.core.errors import BadRequest

MAX_ENUM = 1000
MAX_SCHEMA_BYTES = 64 * 1024

# Keywords that constrain and that the grammar compiler enforces, and annotations that constrain nothing.
_ENFORCED = {
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "additionalProperties", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip
_ANNOTATIONS = {
    "$defs", "definitions", "description", "title", "default", "examples", "$schema", "$id", "$comment",
    "nullable", "readOnly", "writeOnly", "deprecated",
}  # fmt: skip
_FORMATS = {"date", "time", "date-time", "uuid"}


class SchemaError(BadRequest):
    code = "invalid_schema"


def check_schema(schema: Any, where: str = "schema") -> None:
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"{where}: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    _walk(schema, where, schema)


def _walk(node: Any, where: str, root: Any) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: a schema must be an object, got {type(node).__name__}")
    for key, value in node.items():
        path = f"{where}.{key}"
        if key not in _ENFORCED and key not in _ANNOTATIONS:
            raise SchemaError(f"{path}: unsupported schema keyword {key!r} (it cannot be enforced while decoding)")
        if key == "enum":
            if not isinstance(value, list) or not value:
                raise SchemaError(f"{path}: must be a non-empty list")
            if len(value) > MAX_ENUM:
                raise SchemaError(f"{path}: enum of {len(value)} values is larger than {MAX_ENUM}")
        elif key == "format" and value not in _FORMATS:
            raise SchemaError(f"{path}: unsupported format {value!r}; supported: {', '.join(sorted(_FORMATS))}")
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as e:
                raise SchemaError(f"{path}: invalid pattern: {e}") from None
        elif key == "$ref":
            if not isinstance(value, str) or not value.startswith("#/"):
                raise SchemaError(f"{path}: only local references (#/...) are supported, got {value!r}")
            if _resolve(root, value) is None:
                raise SchemaError(f"{path}: reference {value!r} points to nothing")
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise SchemaError(f"{path}: must be an object")
            for name, sub in value.items():
                _walk(sub, f"{path}.{name}", root)
        elif key in ("items", "additionalProperties") and not isinstance(value, bool):
            _walk(value, path, root)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise SchemaError(f"{path}: must be a non-empty list of schemas")
            for i, sub in enumerate(value):
                _walk(sub, f"{path}.{i}", root)


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=256)
def grammar_for(schema_json: str) -> str:
    """GBNF for a schema (canonical JSON in, so equal schemas share one cache entry)."""
    from hearth.structured.bounds import BoundsError, schema_to_gbnf

    try:
        return schema_to_gbnf(json.loads(schema_json))
    except BoundsError:
        raise
    except (ValueError, AssertionError, KeyError, RecursionError) as e:
        raise SchemaError(f"schema cannot be compiled to a grammar: {e}") from None


def json_object_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def validate(value: Any, schema: Any) -> str | None:
    """The first validation error as text, or None when `value` matches."""
    import jsonschema

    try:
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(root)"
        return f"at {at}: {e.message}"
    except jsonschema.SchemaError as e:
        raise SchemaError(f"invalid schema: {e.message}") from None
    return None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def repair(text: str) -> Any:
    """Best-effort JSON from a model's text: fences, prose around the JSON, trailing commas, Python
    literals, single quotes. Raises ValueError when nothing parses."""
    candidates = [text.strip()]
    if m := _FENCE.search(text):
        candidates.append(m.group(1).strip())
    for open_c, close_c in (("{", "}"), ("[", "]")):
        i, j = text.find(open_c), text.rfind(close_c)
        if i >= 0 and j > i:
            candidates.append(text[i : j + 1])
    for c in candidates:
        for fixed in (c, _fix(c)):
            try:
                return json.loads(fixed)
            except ValueError:
                continue
    raise ValueError("no JSON value could be recovered from the answer")


def _fix(s: str) -> str:
    s = _TRAILING_COMMA.sub(r"\1", s)
    s = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", s)))
    if '"' not in s:
        s = s.replace("'", '"')
    return s
