"""Bounds on what a schema may make the fitter and the grammar compiler do, checked before they start."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hearth.structured.budget import BudgetTooSmall, fit
from hearth.structured.schema import SchemaError, canonical, check_schema, grammar_for


def nested(depth: int, **array: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        s = {"type": "array", "items": s, **array}
    return s


def test_nested_arrays_fit_in_milliseconds() -> None:
    t0 = time.perf_counter()
    capped, _ = fit(nested(9), 4096)
    grammar_for(canonical(capped))
    assert time.perf_counter() - t0 < 1.0  # was 33 s on the event loop
    with pytest.raises(BudgetTooSmall):  # 10^9 strings as the smallest answer
        fit(nested(9, minItems=10), 4096)


@pytest.mark.parametrize(("schema", "words"), [
    (nested(40), "nested deeper than 32"),
    ({"type": "string", "maxLength": 10**9}, "maxLength"),
    ({"type": "array", "minItems": True}, "minItems"),
    ({"type": "string", "pattern": "(a+)+$"}, "repetition of a repetition"),
    ({"type": "string", "pattern": "(\\w+\\s?)*$"}, "repetition of a repetition"),
    ({"type": "string", "pattern": "((ab){100}){100}"}, "10000"),
    ({"type": "string", "pattern": "a" * 1001}, "longer than 1000"),
])
def test_costly_schemas_are_refused_with_the_reason(schema: dict[str, Any], words: str) -> None:
    with pytest.raises(SchemaError) as e:
        check_schema(schema)
    assert words in e.value.message


@pytest.mark.parametrize("pattern", ["^[a-z]{3}-\\d+$", "^([a-z]+\\.)*[a-z]+$", "^[\\w.+-]+@([\\w-]+\\.)+\\w+$",
                                     "^(\\d{3}-)*\\d{4}$", "(a|b)*c"])
def test_ordinary_patterns_pass(pattern: str) -> None:
    check_schema({"type": "string", "pattern": pattern})
