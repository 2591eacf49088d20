"""Numeric bounds as grammar rules, checked exhaustively by translating the rules to Python regexes."""

from __future__ import annotations

import re

import pytest

from hearth.structured.bounds import BoundsError, integer_rule, number_rule


def as_regex(rule: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(rule):
        c = rule[i]
        if c == '"':
            j = rule.index('"', i + 1)
            out.append(re.escape(rule[i + 1 : j]))
            i = j + 1
        elif c == " ":
            i += 1
        else:
            out.append(c)
            i += 1
    return re.compile("".join(out))


def members(rule: str, candidates: range) -> set[int]:
    rx = as_regex(rule)
    return {n for n in candidates if rx.fullmatch(str(n))}


@pytest.mark.parametrize(("schema", "lo", "hi"), [
    ({"minimum": 3, "maximum": 8}, 3, 8),
    ({"minimum": -5, "maximum": 5}, -5, 5),
    ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, 1, 9),
    ({"minimum": 17, "maximum": 99999}, 17, 99999),
    ({"minimum": 0, "maximum": 123456}, 0, 123456),
])
def test_integer_ranges_exact(schema: dict[str, int], lo: int, hi: int) -> None:
    got = members(integer_rule({"type": "integer", **schema}), range(-200, 200_000))
    assert got == set(range(max(lo, -200), min(hi, 199_999) + 1))


@pytest.mark.parametrize("lo", [0, 1, 7, 10, 99, 317, 1000])
def test_lower_bound_only(lo: int) -> None:
    got = members(integer_rule({"type": "integer", "minimum": lo}), range(-50, 20_000))
    assert got == set(range(lo, 20_000))


@pytest.mark.parametrize("hi", [0, 5, 42, 100, 909])
def test_upper_bound_only(hi: int) -> None:
    got = members(integer_rule({"type": "integer", "maximum": hi}), range(-3000, 3000))
    assert got == set(range(-3000, hi + 1))


def test_negative_lower_bound_only() -> None:
    got = members(integer_rule({"type": "integer", "minimum": -42}), range(-3000, 3000))
    assert got == set(range(-42, 3000))


def test_numbers_with_integer_bounds() -> None:
    rx = as_regex(number_rule({"type": "number", "minimum": 0, "maximum": 1}))
    for ok in ["0", "0.5", "0.999", "1", "1.0"]:
        assert rx.fullmatch(ok), ok
    for bad in ["1.5", "2", "-0.1", "10"]:
        assert not rx.fullmatch(bad), bad


def test_unenforceable_bounds_are_refused() -> None:
    with pytest.raises(BoundsError):
        number_rule({"type": "number", "minimum": 0.5})
    with pytest.raises(BoundsError):
        integer_rule({"type": "integer", "minimum": 100000, "maximum": 999999})
    with pytest.raises(BoundsError, match="empty"):
        integer_rule({"type": "integer", "minimum": 5, "maximum": 1})
