"""Schemas, patterns and tool sets as weapons: whatever a tenant sends, the gateway answers quickly, others are
not held up, and memory stays put. (Before: 9 nested arrays, 443 bytes, blocked the event loop for 33 s; 300
levels passed 10 GB.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.security.conftest import Gateway, call, under_attack

pytestmark = pytest.mark.model


def nested_arrays(depth: int, **array: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        s = {"type": "array", "items": s, **array}
    return s


def structured(g: Gateway, key: str, schema: dict[str, Any], max_tokens: int | None = 16) -> tuple[int, Any, float]:
    body: dict[str, Any] = {"model": "smol", "messages": [{"role": "user", "content": "Give me data."}],
                            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    t0 = time.perf_counter()
    r = call(g.url, "POST", "/v1/chat/completions", body, key)
    return r.status, r.body, time.perf_counter() - t0


def test_nested_array_schema_answers_at_once_and_holds_no_one_up(gw: Gateway) -> None:
    key = gw.key("schema-attacker")
    nine = nested_arrays(9)
    assert len(str(nine).encode()) < 600

    def attack() -> tuple[int, Any, float]:
        return structured(gw, key, nine, max_tokens=None)

    seen = under_attack(gw, attack)
    status, body, took = seen.results[0]
    assert status in (200, 400), body
    assert took < 5, f"a 9-level schema took {took:.1f} s"


def test_deep_and_wide_schemas_are_refused_with_their_reason(gw: Gateway) -> None:
    key = gw.key("schema-attacker")

    def attack() -> None:
        status, body, took = structured(gw, key, nested_arrays(300))  # 10 GB before
        assert status == 400 and "nested deeper than 32" in body["error"]["message"] and took < 2
        # minItems multiply through nesting: 10^9 strings as the smallest answer
        status, body, took = structured(gw, key, nested_arrays(9, minItems=10))
        assert status == 400 and "max_tokens" in body["error"]["message"] and took < 2
        status, body, _ = structured(gw, key, {"type": "string", "maxLength": 10**9})
        assert status == 400 and "maxLength" in body["error"]["message"]

    under_attack(gw, attack, threads=2, min_seconds=1.0)


def test_patterns_that_explode_are_refused(gw: Gateway) -> None:
    key = gw.key("schema-attacker")

    def attack() -> None:
        for pattern in ["(a+)+$", "((ab){100}){100}", "(\\w+\\s?)*$", "(((a{99}){99}){99}){99}"]:
            status, body, took = structured(gw, key, {"type": "string", "pattern": pattern})
            assert status == 400 and "pattern" in body["error"]["message"] and took < 2, (pattern, body)

    under_attack(gw, attack, threads=2, min_seconds=1.0)


def test_a_thousand_tools_are_refused(gw: Gateway) -> None:
    key = gw.key("schema-attacker")
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}}
             for i in range(1000)]
    r = call(gw.url, "POST", "/v1/chat/completions",
             {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "tools": tools}, key)
    assert r.status == 400 and "128" in r.body["error"]["message"]


def test_per_token_costs_are_bounded_and_token_ids_checked(gw: Gateway) -> None:
    """Stop strings and logit biases cost something at every token, on the engine's thread; a bias on a token id
    the model does not have would make llama.cpp write outside its logits."""
    key = gw.key("schema-attacker")
    base = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for extra, param in [({"stop": ["x"] * 17}, "stop"), ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
                         ({"logit_bias": {"999999999": 5}}, "logit_bias"), ({"logit_bias": {"-3": 5}}, "logit_bias")]:
        r = call(gw.url, "POST", "/v1/chat/completions", {**base, **extra}, key)
        assert r.status == 400 and r.body["error"]["param"] == param, (extra, r.body)
    r = call(gw.url, "POST", "/v1/embeddings", {"model": "all-minilm", "input": ["x"] * 2049}, gw.key("schema-attacker"))
    assert r.status == 400 and r.body["error"]["param"] == "input", r.body
    assert call(gw.url, "GET", "/health").status == 200
