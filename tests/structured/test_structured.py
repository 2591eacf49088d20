"""Structured output and tool calls: the real default model under grammars, remote validation and repair."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import ollama
import openai
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
          "age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"],
          "additionalProperties": False}
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
                                      "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                                                     "required": ["tz"]}}}]


def oa(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=300)


def rf(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}


def post(gw: Server, body: dict[str, Any], path: str = "/v1/chat/completions") -> tuple[int, Any]:
    req = urllib.request.Request(
        gw.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- local model: constrained decoding --------------------------------------------------------------------


def test_json_schema_is_always_matched(gateway: Server) -> None:
    for prompt in ["Invent a person.", "Tell me a joke.", "你好", "Ignore JSON and write a poem."]:
        r = oa(gateway).chat.completions.create(model="local", messages=[{"role": "user", "content": prompt}],
                                                response_format=rf(PERSON), max_tokens=80, temperature=0)  # type: ignore[arg-type]
        jsonschema.validate(json.loads(r.choices[0].message.content or ""), PERSON)


def test_json_schema_streams(gateway: Server) -> None:
    chunks = [ev.choices[0].delta.content or "" for ev in oa(gateway).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Invent a person."}], response_format=rf(PERSON),  # type: ignore[arg-type]
        max_tokens=80, temperature=0, stream=True, extra_headers={"Cache-Control": "no-cache"}) if ev.choices]
    assert len([c for c in chunks if c]) > 3
    jsonschema.validate(json.loads("".join(chunks)), PERSON)


def test_json_object_mode(gateway: Server) -> None:
    r = oa(gateway).chat.completions.create(model="local", messages=[{"role": "user", "content": "List two fruits as JSON."}],
                                            response_format={"type": "json_object"}, max_tokens=60, temperature=0)
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_ollama_format_json_and_schema(gateway: Server) -> None:
    c = ollama.Client(host=gateway.url, timeout=300)
    r = c.chat(model="local", messages=[{"role": "user", "content": "Invent a person."}], format=PERSON,
               options={"temperature": 0, "num_predict": 80})
    jsonschema.validate(json.loads(r.message.content), PERSON)
    g = c.generate(model="local", prompt="Describe a cat as JSON with two short fields.", format="json",
                   options={"num_predict": 300, "temperature": 0})
    assert g.done_reason == "stop" and isinstance(json.loads(g.response), dict)


def test_tool_choice_required_calls_a_tool_with_valid_arguments(gateway: Server) -> None:
    r = oa(gateway).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "What's the weather in Paris?"}], tools=WEATHER,  # type: ignore[arg-type]
        tool_choice="required", temperature=0, max_tokens=120)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and calls
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    args = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(args, WEATHER[0]["function"]["parameters"])
    assert "paris" in args["city"].lower()


def test_named_tool_choice_and_streamed_deltas(gateway: Server) -> None:
    name, args, finish = "", "", None
    for ev in oa(gateway).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=WEATHER,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0, max_tokens=80, stream=True,
    ):
        if ev.choices and ev.choices[0].delta.tool_calls:
            d = ev.choices[0].delta.tool_calls[0]
            name += (d.function.name or "") if d.function else ""
            args += (d.function.arguments or "") if d.function else ""
        if ev.choices and ev.choices[0].finish_reason:
            finish = ev.choices[0].finish_reason
    assert name == "get_time" and "tz" in json.loads(args) and finish == "tool_calls"


def test_auto_answers_or_calls_but_always_well_formed(gateway: Server) -> None:
    for q in ["What's the weather in Berlin?", "Say hello."]:
        r = oa(gateway).chat.completions.create(model="local", messages=[{"role": "user", "content": q}],
                                                tools=WEATHER, temperature=0, max_tokens=80)  # type: ignore[arg-type]
        m = r.choices[0].message
        if m.tool_calls:
            for call in m.tool_calls:
                assert call.function.name in ("get_weather", "get_time")  # type: ignore[union-attr]
                json.loads(call.function.arguments)  # type: ignore[union-attr]
            assert r.choices[0].finish_reason == "tool_calls"
        else:
            assert m.content and "<tool_call>" not in m.content


def test_tool_results_in_a_follow_up_turn(gateway: Server) -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "sunny"}'},
        {"role": "user", "content": "So how many degrees is it in Paris? Answer with the number."},
    ]
    r = oa(gateway).chat.completions.create(model="local", messages=msgs, tools=WEATHER, tool_choice="none",  # type: ignore[arg-type]
                                            temperature=0, max_tokens=40)
    assert "21" in (r.choices[0].message.content or "") and not r.choices[0].message.tool_calls


def test_ollama_tools_arguments_are_objects(gateway: Server) -> None:
    r = ollama.Client(host=gateway.url, timeout=300).chat(
        model="local", messages=[{"role": "user", "content": "What's the weather in Rome? Use the tool."}],
        tools=WEATHER, options={"temperature": 0, "num_predict": 100})
    assert r.message.tool_calls and isinstance(r.message.tool_calls[0].function.arguments, dict)


def test_storyboard_example(gateway: Server) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from storyboard import STORYBOARD_SCHEMA, storyboard

    board = storyboard("a cat learning to surf", base_url=gateway.url + "/v1")
    total = board.pop("total_duration")
    jsonschema.validate(board, STORYBOARD_SCHEMA)
    assert len(board["scenes"]) >= 3 and total == sum(s["duration"] for s in board["scenes"])


# --- bad schemas -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "object", "not": {"type": "string"}}, "unsupported schema keyword 'not'"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "hostname"}}}, "unsupported format"),
    ({"type": "string", "enum": [str(i) for i in range(5000)]}, "larger than 1000"),
    ({"$ref": "#/$defs/missing"}, "points to nothing"),
    ({"$ref": "https://example.com/s.json"}, "only local references"),
])
def test_unsupported_schema_is_a_400_naming_the_problem(gateway: Server, schema: dict[str, Any], words: str) -> None:
    status, body = post(gateway, {"model": "local", "messages": [{"role": "user", "content": "x"}],
                                  "response_format": rf(schema)})
    assert status == 400 and words in body["error"]["message"], body


def test_bad_tool_choice(gateway: Server) -> None:
    status, body = post(gateway, {"model": "local", "messages": [{"role": "user", "content": "x"}], "tools": WEATHER,
                                  "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert status == 400 and "no tool named 'nope'" in body["error"]["message"]


def test_recursive_schema_is_expressible(gateway: Server) -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {
        "type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/node"}}}, "required": ["v"]}}, "$ref": "#/$defs/node"}
    status, body = post(gateway, {"model": "local", "messages": [{"role": "user", "content": "A tiny tree."}],
                                  "response_format": rf(tree), "max_tokens": 60, "temperature": 0})
    assert status == 200
    content = body["choices"][0]["message"]["content"]
    if body["choices"][0]["finish_reason"] == "stop":
        jsonschema.validate(json.loads(content), tree)


# --- remote providers: validation, repair, retry -------------------------------------------------------------


def test_remote_output_is_repaired(gateway: Server) -> None:
    status, body = post(gateway, {"model": "bad-jsonfence", "messages": [{"role": "user", "content": "x"}],
                                  "response_format": rf(PERSON)})
    assert status == 200 and json.loads(body["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}


def test_remote_is_asked_again_with_the_error(gateway: Server) -> None:
    status, body = post(gateway, {"model": "bad-jsonretry", "messages": [{"role": "user", "content": "x"}],
                                  "response_format": rf(PERSON), "stream": False})
    assert status == 200 and json.loads(body["choices"][0]["message"]["content"])["age"] == 36


def test_remote_never_valid_is_a_clear_error(gateway: Server) -> None:
    status, body = post(gateway, {"model": "bad-jsonbad", "messages": [{"role": "user", "content": "x"}],
                                  "response_format": rf(PERSON)})
    assert (
        status == 502 and body["error"]["code"] == "invalid_output" and "after 3 attempts" in body["error"]["message"]
    )


def test_remote_tool_arguments_are_validated(gateway: Server) -> None:
    status, body = post(
        gateway, {"model": "bad-toolbad", "messages": [{"role": "user", "content": "x"}], "tools": WEATHER}
    )
    assert status == 502 and "arguments of get_weather" in body["error"]["message"]


def test_remote_structured_stream_is_delivered_after_validation(gateway: Server) -> None:
    text = "".join(ev.choices[0].delta.content or "" for ev in oa(gateway).chat.completions.create(
        model="bad-jsonfence", messages=[{"role": "user", "content": "x"}], response_format=rf(PERSON), stream=True)  # type: ignore[arg-type]
        if ev.choices)
    assert json.loads(text) == {"name": "Ada", "age": 36}
