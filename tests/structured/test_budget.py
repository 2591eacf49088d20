"""Schemas fitted to a token budget: the caps, the refusal when nothing fits, and the real default model
closing its JSON at small max_tokens where it used to be cut mid-string."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from hearth.structured.budget import MAX_CAP, BudgetTooSmall, _Costs, fit, fit_tools
from hearth.structured.schema import canonical, grammar_for
from tests.conftest import Server


def approx(text: str) -> int:
    """A stand-in tokenizer: about three characters a token, as BPE vocabularies do for JSON."""
    return (len(text) + 2) // 3


STORYBOARD = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "scenes": {"type": "array", "minItems": 3, "items": {
            "type": "object",
            "properties": {"description": {"type": "string"},
                           "duration": {"type": "integer", "minimum": 3, "maximum": 8},
                           "camera": {"enum": ["wide", "close-up", "tracking", "overhead"]}},
            "required": ["description", "duration", "camera"]}},
    },
    "required": ["title", "scenes"],
}


@pytest.mark.parametrize("budget", [120, 150, 300, 600, 2000])
def test_the_longest_answer_fits_the_budget(budget: int) -> None:
    capped, cap = fit(STORYBOARD, budget, count=approx)
    assert cap is not None and _Costs(capped, approx, 10**6)(MAX_CAP, 0) <= budget
    scenes = capped["properties"]["scenes"]
    assert scenes["minItems"] == 3 <= scenes["maxItems"] and capped["properties"]["title"]["maxLength"] >= 1
    assert capped["additionalProperties"] is False and "maxLength" not in STORYBOARD["properties"]["title"]
    grammar_for(canonical(capped))  # compiles


def test_bigger_budgets_buy_longer_strings_before_more_items() -> None:
    caps = [fit(STORYBOARD, b, count=approx)[0]["properties"]["scenes"]["items"]["properties"]["description"]["maxLength"]
            for b in (150, 300, 600)]
    assert caps[0] < caps[1] <= caps[2]
    big = fit(STORYBOARD, 4000)[0]["properties"]["scenes"]
    assert big["maxItems"] > 3


def test_a_budget_below_the_smallest_answer_is_refused_up_front() -> None:
    with pytest.raises(BudgetTooSmall, match=r"needs about \d+ tokens, more than the 40 that max_tokens leaves it") as e:
        fit(STORYBOARD, 40, count=approx)
    assert e.value.status == 400 and e.value.param == "max_tokens"


def test_schemas_that_cannot_be_bounded_are_left_alone() -> None:
    for schema in ({"type": "string", "pattern": "^[a-z]+$"}, {"type": "object"}, {"$ref": "#/$defs/x"}):
        assert fit(schema, 50) == (schema, None)


def test_existing_limits_are_kept_when_tighter() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "maxLength": 5},
                                               "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}}
    capped, _ = fit(schema, 500)
    assert capped["properties"]["code"]["maxLength"] == 5 and capped["properties"]["tags"]["maxItems"] == 2


def test_tool_arguments_are_fitted_after_the_calls_wrapper() -> None:
    tools = [{"type": "function", "function": {"name": "note", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]
    fitted, shortest = fit_tools(tools, 100)
    cap = fitted[0]["function"]["parameters"]["properties"]["text"]["maxLength"]
    assert cap == shortest
    assert 0 < cap < 100 - 20
    with pytest.raises(BudgetTooSmall, match=r"tools\.0\.function\.parameters"):
        fit_tools(tools, 30)


@pytest.mark.model
@pytest.mark.parametrize("max_tokens", [150, 300])
def test_the_default_model_closes_its_json_at_any_budget(gateway: Server, max_tokens: int) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=300)
    rf: Any = {"type": "json_schema", "json_schema": {"name": "storyboard", "schema": STORYBOARD, "strict": True}}
    for i, topic in enumerate(["a cat learning to surf", "一座城市的清晨"]):
        r = client.chat.completions.create(
            model="local", max_tokens=max_tokens, temperature=0.7, seed=i, response_format=rf,
            messages=[{"role": "user", "content": f"Write a detailed storyboard for a short video about {topic}."}])
        value = json.loads(r.choices[0].message.content or "")
        jsonschema.validate(value, STORYBOARD)
        assert r.usage is not None and r.usage.completion_tokens <= max_tokens
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="local", max_tokens=30, response_format=rf,
                                       messages=[{"role": "user", "content": "A storyboard, please."}])


def test_strings_in_grammars_exclude_raw_control_characters() -> None:
    """The stock converter let a raw newline into a JSON string (invalid JSON the model did write)."""
    from hearth.structured.tools import tool_grammar

    g = grammar_for(canonical({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "string"}}, "required": ["a"]}}}]
    for grammar in (g, tool_grammar(tools, "required") or ""):
        char = next(line for line in grammar.splitlines() if line.startswith("char ::="))
        assert char.startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F]'), char


@pytest.mark.parametrize("items", [None, True, {"type": "object"}, {"type": "string", "pattern": "^a+$"},
                                   {"$ref": "#/$defs/x"}])
def test_arrays_whose_items_cannot_be_bounded_leave_the_schema_alone(items: Any) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"xs": {"type": "array"}}, "required": ["xs"]}
    if items is not None:
        schema["properties"]["xs"]["items"] = items
    assert fit(schema, 300, count=approx) == (schema, None)
    open_keys = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True}
    assert fit(open_keys, 300, count=approx) == (open_keys, None)


def test_under_auto_a_tool_that_cannot_fit_is_left_out_not_refused() -> None:
    import asyncio

    from hearth.core.collect import collect
    from hearth.core.types import ChatRequest, Message, Sampling
    from hearth.structured.constrained import ConstrainedBackend
    from hearth.testing import FunctionBackend, Reply

    small = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
    big = {"type": "function", "function": {"name": "essay", "parameters": {"type": "object", "properties": {
        f"part{i}": {"type": "string", "minLength": 40} for i in range(6)}, "required": [f"part{i}" for i in range(6)]}}}
    inner = FunctionBackend("m", lambda r: Reply("ok"), local=True)
    backend = ConstrainedBackend(inner)

    def ask(choice: Any, tools: list[dict[str, Any]]) -> ChatRequest:
        req = ChatRequest(model="m", messages=[Message("user", "hi")], tools=tools, tool_choice=choice,
                          sampling=Sampling(max_tokens=60))
        asyncio.run(collect(backend.stream(req)))
        return inner.requests[-1]

    sent = ask("auto", [small, big])
    assert [t["function"]["name"] for t in sent.tools or []] == ["ping"] and "essay" not in (sent.grammar or "")
    sent = ask("auto", [big])  # no call fits: a plain answer still does
    assert sent.tools is None and (sent.grammar or "").startswith("root ::= [^<{")
    with pytest.raises(BudgetTooSmall):
        ask("required", [big])
