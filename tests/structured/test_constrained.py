"""The structured-output stage in-process: grammar for local engines, validate / repair / ask again for remote
providers, over scripted models. tests/structured/test_structured.py runs the same against real models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hearth.core.collect import Collected, collect
from hearth.core.errors import UpstreamError
from hearth.core.types import ChatRequest, Message
from hearth.structured.constrained import ConstrainedBackend
from hearth.testing import Reply, ScriptedBackend

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": SCHEMA}}]


def ask(model: ScriptedBackend, **kw: Any) -> Collected:
    req = ChatRequest(model=model.name, messages=[Message("user", "give me a number")], **kw)
    return asyncio.run(collect(ConstrainedBackend(model).stream(req)))


def test_plain_requests_pass_straight_through() -> None:
    model = ScriptedBackend("remote", Reply("not json at all"))
    assert ask(model).text == "not json at all"
    assert model.requests[0].grammar is None


def test_local_engines_get_a_grammar_and_stream() -> None:
    model = ScriptedBackend("local", Reply('{"n": 1}'), local=True)
    assert json.loads(ask(model, response_format=JSON_SCHEMA).text) == {"n": 1}
    assert model.requests[0].grammar and "root" in model.requests[0].grammar


def test_remote_syntax_slips_are_repaired_without_asking_again() -> None:
    model = ScriptedBackend("remote", Reply('```json\n{"n": 2,}\n```'))
    assert json.loads(ask(model, response_format=JSON_SCHEMA).text) == {"n": 2}
    assert model.started == 1


def test_remote_is_asked_again_with_the_validation_error() -> None:
    model = ScriptedBackend("remote", Reply('{"n": "two"}'), Reply('{"n": 2}'))
    assert json.loads(ask(model, response_format=JSON_SCHEMA).text) == {"n": 2}
    retry = model.requests[1].messages
    assert retry[-2].content == '{"n": "two"}' and "invalid" in retry[-1].content


def test_remote_never_valid_is_a_clear_error() -> None:
    model = ScriptedBackend("remote", Reply("no"))
    with pytest.raises(UpstreamError, match="after 3 attempts: the answer is not JSON") as e:
        ask(model, response_format={"type": "json_object"})
    assert e.value.code == "invalid_output"


def test_remote_tool_arguments_are_validated() -> None:
    model = ScriptedBackend("remote", Reply(tool_calls=[("add", {"n": "x"})]), Reply(tool_calls=[("add", {"n": 3})]))
    answer = ask(model, tools=TOOLS)
    assert [(c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [("add", {"n": 3})]
    assert answer.reason == "tool_calls" and model.started == 2


def test_remote_unknown_function_is_asked_again() -> None:
    model = ScriptedBackend("remote", Reply(tool_calls=[("sub", {"n": 1})]), Reply(tool_calls=[("add", {"n": 1})]))
    assert ask(model, tools=TOOLS).tool_calls[0].name == "add"
