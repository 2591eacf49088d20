"""Numeric bounds as grammar rules, which llama-cpp-python's schema compiler leaves as a TODO.

A bound that the grammar cannot enforce must not be silently dropped (the model would then write
`"duration": 3000` for a field whose maximum is 8), so every case is either expressed exactly or
refused with a 400:
- integers with both bounds and at most MAX_ENUM values: the values, spelled out;
- integers with only a lower bound >= 0, or only an upper bound, or both bounds of different digit
  counts: digit-by-digit rules ("numbers of the same length that are >= 317", "any longer number");
- numbers (floats) whose bounds are integers >= 0: an integer part in range plus a fraction.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from llama_cpp.llama_grammar import INVALID_RULE_CHARS_RE, SchemaConverter

from hearth.core.errors import BadRequest

MAX_ENUM = 2000
_DIGITS = 15  # longest integer we let the model write
_FRAC = '("." [0-9]{1,15})?'


class BoundsError(BadRequest):
    code = "invalid_schema"


def _any(n_min: int, n_max: int) -> str:
    """Non-negative integers without leading zeros with n_min..n_max digits."""
    if n_max < n_min:
        return ""
    parts = []
    if n_min <= 1:
        parts.append('"0"')
    lo = max(n_min, 1)
    if n_max >= 1:
        rest = max(lo - 1, 0)
        parts.append(f"[1-9] [0-9]{{{rest},{n_max - 1}}}" if n_max - 1 > 0 else "[1-9]")
    return " | ".join(parts)


def _ge_same_len(s: str) -> list[str]:
    """Numbers with len(s) digits that are >= s."""
    alts = [f'"{s}"']
    for i, ch in enumerate(s):
        if ch != "9":
            tail = f" [0-9]{{{len(s) - i - 1}}}" if len(s) - i - 1 else ""
            head = f'"{s[:i]}" ' if i else ""
            alts.append(f"{head}[{int(ch) + 1}-9]{tail}")
    return alts


def _le_same_len(s: str) -> list[str]:
    """Numbers with len(s) digits (no leading zero) that are <= s."""
    alts = [f'"{s}"']
    for i, ch in enumerate(s):
        low = 1 if i == 0 and len(s) > 1 else 0
        if int(ch) > low:
            tail = f" [0-9]{{{len(s) - i - 1}}}" if len(s) - i - 1 else ""
            head = f'"{s[:i]}" ' if i else ""
            alts.append(f"{head}[{low}-{int(ch) - 1}]{tail}")
    return alts


def _nonneg_between(lo: int, hi: int | None) -> str:
    a = str(lo)
    if hi is None:
        alts = _ge_same_len(a)
        if len(a) < _DIGITS:
            alts.append(f"[1-9] [0-9]{{{len(a)},{_DIGITS - 1}}}")
        return "(" + " | ".join(alts) + ")"
    b = str(hi)
    if len(a) == len(b):
        raise BoundsError(f"integer bounds [{lo}, {hi}] span more than {MAX_ENUM} values of the same length; "
                          "narrow the range")
    alts = _ge_same_len(a) if lo > 0 else [_any(1, 1)]
    if len(b) - len(a) >= 2:
        alts.append(f"[1-9] [0-9]{{{len(a)},{len(b) - 2}}}")
    alts += _le_same_len(b)
    return "(" + " | ".join(alts) + ")"


def integer_rule(schema: dict[str, Any]) -> str:
    lo = _bound(schema, "minimum", "exclusiveMinimum", +1)
    hi = _bound(schema, "maximum", "exclusiveMaximum", -1)
    if lo is not None and hi is not None:
        if lo > hi:
            raise BoundsError(f"integer bounds are empty: minimum {lo} > maximum {hi}")
        if hi - lo < MAX_ENUM:
            return "(" + " | ".join(f'"{v}"' for v in range(lo, hi + 1)) + ")"
        if lo >= 0:
            return _nonneg_between(lo, hi)
        raise BoundsError(f"integer bounds [{lo}, {hi}] are too wide to enforce (at most {MAX_ENUM} values)")
    if lo is not None:
        if lo < 0:
            neg = f'"-" ({" | ".join(_le_same_len(str(-lo)))} | [1-9] [0-9]{{0,{len(str(-lo)) - 2}}})' if len(
                str(-lo)) > 1 else f'"-" [1-{-lo}]'
            return f"({neg} | {_any(1, _DIGITS)})"
        return _nonneg_between(lo, None)
    if hi is not None:
        neg = f'"-" [1-9] [0-9]{{0,{_DIGITS - 1}}}'
        if hi < 0:
            return f'"-" {_nonneg_between(-hi, None)}'
        small = _any(1, len(str(hi)) - 1)
        return f"({neg} | {' | '.join([*([small] if small else []), *_le_same_len(str(hi))])})"
    raise AssertionError("no bound")


def number_rule(schema: dict[str, Any]) -> str:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if any(k in schema for k in ("exclusiveMinimum", "exclusiveMaximum")) or lo is None or lo < 0 or (
        hi is not None and (hi != math.floor(hi) or lo != math.floor(lo))
    ) or (lo != math.floor(lo)):
        raise BoundsError("minimum/maximum on non-integer numbers: only integer bounds >= 0 can be enforced "
                          "(use type integer, or bounds like 0 and 1)")
    lo_i = int(lo)
    if hi is None:
        return f"({_nonneg_between(lo_i, None)} {_FRAC})"
    hi_i = int(hi)
    if hi_i == lo_i:
        return f'"{hi_i}" ("." "0"{{1,15}})?'
    below = integer_rule({"minimum": lo_i, "maximum": hi_i - 1})
    return f'({below} {_FRAC} | "{hi_i}" ("." "0"{{1,15}})?)'


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, step: int) -> int | None:
    vals = []
    if inclusive in schema:
        v = schema[inclusive]
        vals.append(math.ceil(v) if step > 0 else math.floor(v))
    if exclusive in schema:
        v = schema[exclusive]
        vals.append(math.floor(v) + 1 if step > 0 else math.ceil(v) - 1)
    if not vals:
        return None
    return int(max(vals) if step > 0 else min(vals))


_BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class BoundedConverter(SchemaConverter):
    """The stock converter, plus numeric bounds."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def resolve_refs(self, schema: Any, url: str) -> Any:
        """Local references only (hearth never fetches), and all of them: the stock resolver does not
        descend into a node that has a $ref, so a root $ref hid every nested one (recursive schemas)."""
        schema = copy.deepcopy(schema)

        def walk(n: Any) -> None:
            if isinstance(n, list):
                for x in n:
                    walk(x)
            elif isinstance(n, dict):
                ref = n.get("$ref")
                if isinstance(ref, str) and ref.startswith("#/"):
                    target = schema
                    for sel in ref[2:].split("/"):
                        target = target[sel]
                    n["$ref"] = f"{url}{ref}"
                    self._refs[n["$ref"]] = target
                for v in n.values():
                    walk(v)

        walk(schema)
        return schema

    def visit(self, schema: Any, name: str) -> str:
        if isinstance(schema, dict) and schema.get("type") in ("integer", "number") and any(
            k in schema for k in _BOUND_KEYS
        ):
            body = integer_rule(schema) if schema["type"] == "integer" else number_rule(schema)
            rule_name = "root" if not name else re.sub(INVALID_RULE_CHARS_RE, "-", name)
            return str(self._add_rule(rule_name, f"{body} space"))
        return str(super().visit(schema, name))


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def strict_chars(grammar: str) -> str:
    """The stock converter's string character is `[^"\\]`, which lets a raw newline or tab into a JSON string
    (invalid JSON, that the model does write); JSON allows no control character unescaped."""
    return grammar.replace(_LOOSE_CHAR, _STRICT_CHAR)


def schema_to_gbnf(schema: Any) -> str:
    conv = BoundedConverter()
    schema = conv.resolve_refs(schema, "schema")
    conv.visit(schema, "")
    return strict_chars(str(conv.format_grammar()))
