"""Fitting a JSON schema to a token budget, so that a constrained local answer always closes.

A grammar makes every token the model writes valid, but not the *last* one: a model that writes long
descriptions hits `max_tokens` mid-string and the client gets JSON cut in half. hearth knows both the
budget and the schema before decoding starts, so it caps what the schema leaves open (string lengths, array
sizes) until the longest answer the capped grammar allows fits the budget:

- the cost model counts characters of the longest serialisation, at one token per character. That bounds
  the JSON punctuation and keys (ASCII, which tokenizers merge) and the text of Latin and CJK strings (one
  token a character or less); a string full of rare characters that take several tokens each, or `\\u`
  escapes, could still overrun;
- strings get `maxLength` as long as the budget allows, up to 1,000 characters (a longer cap only slows the
  grammar); arrays without `maxItems` get room for a few more items than `minItems` when the strings can
  still be PREFERRED_CHARS long;
- when even the smallest answer the schema allows does not fit, the request is refused up front (400),
  naming the schema's minimum and the budget.

What the model gives up is length: descriptions are cut to the cap, and arrays end at their cap. Schemas that
this cannot bound (recursive `$ref`s, `pattern` strings, `allOf`) are compiled as they are.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

from hearth.core.errors import BadRequest

MAX_CAP = 1000  # characters: beyond this a string cap only costs grammar size
PREFERRED_CHARS = 80  # string length worth keeping before adding array items
EXTRA_ITEMS = 6  # at most this many items beyond minItems for arrays that set no maxItems
_FORMAT_CHARS = {"date": 12, "time": 20, "date-time": 35, "uuid": 38, "uuid1": 38, "uuid2": 38, "uuid3": 38,
                 "uuid4": 38, "uuid5": 38}
_UNBOUNDED_INTEGER = 17  # the grammar's sign and up to 16 digits
_UNBOUNDED_NUMBER = 52  # the grammar's integer part, fraction and exponent
ROOM_PER_TOKEN = 16  # characters of skeleton counted per token of budget before giving up on a shape


class BudgetTooSmall(BadRequest):
    code = "max_tokens_too_small"


class _Unbounded(Exception):
    """The schema has a part whose size cannot be capped: leave it as it is."""


class _TooLarge(Exception):
    """The longest answer is longer than any budget could pay for: stop spelling it out."""


class _Room:
    """Characters `_shape` may still write. Each open array is spelled out item by item, so nested arrays grow
    as (items)^depth: without this bound a 443-byte schema kept the fitter busy for 33 s."""

    __slots__ = ("left",)

    def __init__(self, chars: int) -> None:
        self.left = chars

    def take(self, text: str) -> str:
        self.left -= len(text) + 1  # at least one per call, so the number of calls is bounded too
        if self.left < 0:
            raise _TooLarge
        return text


Count = Callable[[str], int]  # tokens of a text, by the model's tokenizer


def _shape(node: Any, extra: int, strings: list[dict[str, Any]], room: _Room) -> str:
    """The longest JSON text the schema allows once open arrays hold minItems + `extra` items, with every free
    string left empty (collected into `strings`, whose lengths are counted apart) and the one space the
    grammar allows after each value. Every piece written is paid from `room`."""
    if not isinstance(node, dict) or not node:
        raise _Unbounded
    if "$ref" in node or "allOf" in node or "not" in node:
        raise _Unbounded
    if "const" in node:
        return room.take(json.dumps(node["const"], ensure_ascii=False) + " ")
    if "enum" in node:
        return room.take(max((json.dumps(v, ensure_ascii=False) for v in node["enum"]), key=len) + " ")
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max((_shape(alt, extra, strings, room) for alt in node[key]), key=len)
    t = node.get("type")
    if isinstance(t, list):
        return max((_shape({**node, "type": x}, extra, strings, room) for x in dict.fromkeys(t)), key=len)
    if t == "string":
        if "pattern" in node:
            raise _Unbounded
        if node.get("format") in _FORMAT_CHARS:
            return room.take('"' + "0" * _FORMAT_CHARS[node["format"]] + '" ')
        strings.append(node)
        return room.take('"" ')
    if t == "integer":
        bounds = [node[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in node]
        digits = max(len(str(int(b))) for b in bounds) if len(bounds) >= 2 else _UNBOUNDED_INTEGER
        return room.take("9" * digits + " ")
    if t == "number":
        return room.take("9" * _UNBOUNDED_NUMBER + " ")
    if t == "boolean":
        return room.take("false ")
    if t == "null":
        return room.take("null ")
    if t == "array":
        items = node.get("items")
        if isinstance(items, list):
            return room.take("[ ") + ", ".join(_shape(i, extra, strings, room) for i in items) + room.take("] ")
        n = _items_cap(node, extra)
        each = items if isinstance(items, dict) else {}
        return room.take("[ ") + ", ".join(_shape(each, extra, strings, room) for _ in range(n)) + room.take("] ")
    if t == "object":
        props = node.get("properties") or {}
        if not props or node.get("additionalProperties", False) not in (False, None):
            raise _Unbounded  # any object, or any extra keys: nothing to cap
        fields = (room.take(json.dumps(k, ensure_ascii=False) + ": ") + _shape(v, extra, strings, room)
                  for k, v in props.items())
        return room.take("{ ") + ", ".join(fields) + room.take("} ")
    raise _Unbounded


class _Costs:
    """Tokens of the longest answer for a string cap and an item allowance: the skeleton counted by the
    tokenizer (plus a margin for how the model may split it), each string character as one token."""

    def __init__(self, schema: Any, count: Count | None, room: int) -> None:
        self.schema, self.count, self.room = schema, count, room
        self._shapes: dict[int, tuple[float, list[dict[str, Any]]]] = {}

    def shape(self, extra: int) -> tuple[float, list[dict[str, Any]]]:
        if extra not in self._shapes:
            strings: list[dict[str, Any]] = []
            try:
                text = _shape(self.schema, extra, strings, _Room(self.room))
            except _TooLarge:  # longer than any answer the budget pays for
                self._shapes[extra] = (math.inf, [])
                return self._shapes[extra]
            tokens = len(text) if self.count is None else self.count(text) * 11 // 10 + 4
            self._shapes[extra] = (tokens, strings)
        return self._shapes[extra]

    def __call__(self, cap: int, extra: int) -> float:
        tokens, strings = self.shape(extra)
        return tokens + sum(_string_cap(s, cap) + 1 for s in strings)


def _string_cap(node: dict[str, Any], cap: int) -> int:
    return max(int(node.get("minLength", 0)), min(cap, int(node.get("maxLength", MAX_CAP * 10))))


def _items_cap(node: dict[str, Any], extra: int) -> int:
    lo = int(node.get("minItems", 0))
    return min(int(node.get("maxItems", lo + extra)), lo + extra)


def _apply(node: Any, cap: int, extra: int) -> None:
    """Write the caps into the schema (in place, on a copy)."""
    if not isinstance(node, dict):
        return
    for key in ("anyOf", "oneOf"):
        for alt in node.get(key, ()):
            _apply(alt, cap, extra)
    t = node.get("type")
    types = t if isinstance(t, list) else [t]
    if "string" in types and "enum" not in node and "const" not in node and node.get("format") not in _FORMAT_CHARS:
        node["maxLength"] = _string_cap(node, cap)
    if "array" in types:
        items = node.get("items")
        if isinstance(items, list):
            for i in items:
                _apply(i, cap, extra)
        else:
            node["maxItems"] = _items_cap(node, extra)
            _apply(items, cap, extra)
    if "object" in types:
        node.setdefault("additionalProperties", False)  # extra keys would escape the budget
        for v in (node.get("properties") or {}).values():
            _apply(v, cap, extra)


def _largest_cap(cost: _Costs, budget: int, extra: int) -> int | None:
    """The longest string cap that fits `budget` with `extra` items, or None if not even cap 0 fits."""
    if cost(0, extra) > budget:
        return None
    lo, hi = 0, MAX_CAP
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid, extra) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_tools(tools: list[dict[str, Any]], budget: int, count: Count | None = None, *, drop: bool = False
              ) -> tuple[list[dict[str, Any]], int | None]:
    """Tools whose parameters are fitted to what one call may spend of `budget` (the call's wrapper,
    `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, is paid first), and the shortest string cap
    that cost (None: nothing was capped). `drop`: a tool that cannot fit is left out (an error only when
    none fits)."""
    out: list[dict[str, Any]] = []
    caps: list[int] = []
    refused: BudgetTooSmall | None = None
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("parameters"), dict):
            out.append(t)
            continue
        name = json.dumps(fn.get("name", ""), ensure_ascii=False)
        text = '<tool_call>\n{"name": ' + name + ', "arguments": }\n</tool_call>'
        wrapper = (len(text) if count is None else count(text)) + 2
        try:
            params, cap = fit(fn["parameters"], budget - wrapper, f"tools.{i}.function.parameters", count)
        except BudgetTooSmall as e:
            if not drop:
                raise
            refused = refused or e
            continue
        if cap is not None:
            caps.append(cap)
        out.append({**t, "function": {**fn, "parameters": params}})
    if refused is not None and not out:
        raise refused
    return out, min(caps, default=None)


def fit(schema: Any, budget: int, where: str = "response_format", count: Count | None = None
        ) -> tuple[Any, int | None]:
    """The schema to compile for an answer of at most `budget` tokens, and the string cap it was given (None:
    the schema could not be bounded and is returned as it is).
    `count` is the model's tokenizer; without it every character counts as a token (safe, but stingy)."""
    # No token is longer than ROOM_PER_TOKEN characters of JSON skeleton, so a skeleton longer than this
    # cannot fit the budget, whatever the tokenizer.
    cost = _Costs(schema, count, ROOM_PER_TOKEN * max(budget, 0) + 1024)
    try:
        cost(0, 1)  # with an item in every open array, every part of the schema is visited once
    except _Unbounded:
        return schema, None
    base = _largest_cap(cost, budget, 0)
    if base is None:
        need = cost(0, 0)
        if math.isinf(need):
            raise BudgetTooSmall(f"{where}: the smallest answer this schema allows is longer than the {budget} tokens "
                                 "that max_tokens leaves it; raise max_tokens or relax the schema (minItems nested "
                                 "in arrays multiply)", param="max_tokens")
        raise BudgetTooSmall(f"{where}: the smallest answer this schema allows needs about {need} tokens, more "
                             f"than the {budget} that max_tokens leaves it; raise max_tokens or relax the schema",
                             param="max_tokens")
    if base >= MAX_CAP and cost(MAX_CAP, EXTRA_ITEMS) <= budget:
        capped = copy.deepcopy(schema)
        _apply(capped, MAX_CAP, EXTRA_ITEMS)
        return capped, MAX_CAP
    target = min(PREFERRED_CHARS, base)
    extra, cap = 0, base
    for more in range(EXTRA_ITEMS, 0, -1):
        c = _largest_cap(cost, budget, more)
        if c is not None and c >= target:
            extra, cap = more, c
            break
    capped = copy.deepcopy(schema)
    _apply(capped, cap, extra)
    return capped, cap
