"""JSON schemas: checked, compiled to llama.cpp grammars once, validated, and repaired.

A schema is checked before anything runs: keywords the grammar compiler cannot enforce (`not`,
`if`/`then`, `patternProperties`, `dependentSchemas`...) are refused with a 400 that names the keyword
and where it is, instead of being silently ignored and producing output that does not match. Compiled
grammars are cached by the schema's canonical JSON.
"""

from __future__ import annotations

import json
import re
import re._constants as _c  # type: ignore[import-not-found]
import re._parser as _sre  # type: ignore[import-not-found]
from functools import lru_cache
from typing import Any

from hearth.core.errors import BadRequest

MAX_ENUM = 1000
MAX_SCHEMA_BYTES = 64 * 1024
# Bounds on what a schema makes the grammar compiler and llama.cpp's grammar parser build: both expand a
# repetition into one rule per item (and the parser recurses through them), and a nested schema into nested
# rules; unbounded, a 443-byte schema took 33 s and a deeper one 10 GB.
MAX_DEPTH = 32  # schemas nested in schemas
MAX_REPEAT = 10_000  # minItems, maxItems, minLength, maxLength
MAX_PATTERN = 1000  # characters of a pattern
MAX_PATTERN_SIZE = 10_000  # a pattern's atoms once its repetitions are spelled out, as the compiler does
_SIZES = ("minItems", "maxItems", "minLength", "maxLength")

# Keywords that constrain and that the grammar compiler enforces, and annotations that constrain nothing.
_ENFORCED = {
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "additionalProperties", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum",
}
_ANNOTATIONS = {
    "$defs", "definitions", "description", "title", "default", "examples", "$schema", "$id", "$comment",
    "nullable", "readOnly", "writeOnly", "deprecated",
}
_FORMATS = {"date", "time", "date-time", "uuid"}


class SchemaError(BadRequest):
    code = "invalid_schema"


def check_schema(schema: Any, where: str = "schema") -> None:
    """400 for a schema that cannot be enforced or that would cost more to compile than its size suggests."""
    try:
        size = len(json.dumps(schema))
    except (RecursionError, ValueError, TypeError):
        raise SchemaError(f"{where}: the schema is nested deeper than {MAX_DEPTH} levels") from None
    if size > MAX_SCHEMA_BYTES:
        raise SchemaError(f"{where}: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    _walk(schema, where, schema, 0)


def _walk(node: Any, where: str, root: Any, depth: int) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: a schema must be an object, got {type(node).__name__}")
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: the schema is nested deeper than {MAX_DEPTH} levels")
    depth += 1
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
        elif key in _SIZES:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPEAT:
                raise SchemaError(f"{path}: expected an integer from 0 to {MAX_REPEAT}, got {value!r}")
        elif key == "pattern":
            check_pattern(value, path)
        elif key == "$ref":
            if not isinstance(value, str) or not value.startswith("#/"):
                raise SchemaError(f"{path}: only local references (#/...) are supported, got {value!r}")
            if _resolve(root, value) is None:
                raise SchemaError(f"{path}: reference {value!r} points to nothing")
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise SchemaError(f"{path}: must be an object")
            for name, sub in value.items():
                _walk(sub, f"{path}.{name}", root, depth)
        elif key in ("items", "additionalProperties") and not isinstance(value, bool):
            _walk(value, path, root, depth)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise SchemaError(f"{path}: must be a non-empty list of schemas")
            for i, sub in enumerate(value):
                _walk(sub, f"{path}.{i}", root, depth)


def check_pattern(value: Any, path: str) -> None:
    """A `pattern` is compiled into grammar rules (its repetitions spelled out) and, for remote answers, run by
    Python's backtracking matcher: refuse what would blow up either way."""
    if not isinstance(value, str):
        raise SchemaError(f"{path}: a pattern must be a string")
    if len(value) > MAX_PATTERN:
        raise SchemaError(f"{path}: the pattern is longer than {MAX_PATTERN} characters")
    try:
        parsed = _sre.parse(value)
    except (re.error, RecursionError, OverflowError) as e:
        raise SchemaError(f"{path}: invalid pattern: {e}") from None
    if _pattern_size(parsed, path) > MAX_PATTERN_SIZE:
        raise SchemaError(f"{path}: the pattern's repetitions spell out more than {MAX_PATTERN_SIZE} characters")


def _pattern_size(items: Any, path: str) -> int:
    """Atoms of the pattern with each repetition spelled out to its bound (the grammar compiler's expansion).
    A variable repetition whose body ends in another (`(a+)+`, `(\\w+\\s?)*`) is refused: on a near-miss Python's
    matcher backtracks through it exponentially (one validation of a remote answer could take hours), and
    llama.cpp's grammar keeps a stack per way of splitting the text. `([a-z]+\\.)*` is fine: the dot ends each
    round."""
    total = 0
    for op, av in items:
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            if hi != lo and hi > 1 and _ends_variable(sub):
                raise SchemaError(f"{path}: a repetition of a repetition (like (a+)+) is not supported: matching it "
                                  "can take exponential time")
            n = lo + 1 if hi == _c.MAXREPEAT else hi
            total += max(n, 1) * _pattern_size(sub, path)
        elif op in (_c.SUBPATTERN, _c.ATOMIC_GROUP):
            total += _pattern_size(av[-1], path)
        elif op is _c.BRANCH:
            total += sum(_pattern_size(alt, path) for alt in av[1])
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            total += _pattern_size(av[1], path)
        else:
            total += 1
        if total > MAX_PATTERN_SIZE:
            return total
    return total


def _ends_variable(items: Any) -> bool:
    """Whether a pattern's last element can match a variable number of characters."""
    if not items:
        return False
    op, av = list(items)[-1]
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        return bool(av[0] != av[1]) or _ends_variable(av[2])
    if op in (_c.SUBPATTERN, _c.ATOMIC_GROUP):
        return _ends_variable(av[-1])
    if op is _c.BRANCH:
        return any(_ends_variable(alt) for alt in av[1])
    return False


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
