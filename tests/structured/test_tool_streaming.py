"""Tool calls of the local model stream their arguments as they are decoded, and a spoken (paced) answer next to
tools can hold no JSON-like fragment: the parser on its own, then the real default model."""

from __future__ import annotations

import json
import random

import openai
import pytest

from hearth.core.collect import Collected
from hearth.core.errors import BadRequest
from hearth.structured.tools import PLAIN_ANSWER, SPOKEN_ANSWER, ToolCallParser, tool_grammar
from tests.conftest import Server

CALLS = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": {"from": [1, 2]}}}\n</tool_call>'
         '\n<tool_call>\n{"name": "play_music", "arguments": {}}\n</tool_call>')
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_arguments_stream_in_pieces_and_join_to_the_calls() -> None:
    rng = random.Random(7)
    for _ in range(100):
        parser, merged, fragments, at = ToolCallParser(), Collected(), 0, 0
        while at < len(CALLS):
            n = rng.randint(1, 7)
            text, calls = parser.feed(CALLS[at : at + n])
            at += n
            assert text == ""
            for c in calls:
                merged.add(c)
                fragments += bool(c.arguments)
        assert parser.finish() == ("", 2)
        assert [(c.name, json.loads(c.arguments)) for c in merged.tool_calls] == [
            ("get_weather", {"city": "Paris", "days": {"from": [1, 2]}}), ("play_music", {})]
        assert merged.tool_calls[0].id != merged.tool_calls[1].id and fragments >= 2


def test_the_first_fragment_names_the_call_before_its_arguments_end() -> None:
    parser = ToolCallParser()
    _, calls = parser.feed('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')
    assert [(c.index, c.name, c.arguments) for c in calls] == [(0, "get_weather", ""), (0, None, '{"city": "Par')]
    assert calls[0].id and calls[0].id.startswith("call_")


def test_text_passes_and_a_cut_call_is_an_error() -> None:
    parser = ToolCallParser()
    assert parser.feed("Hello") == ("Hello", []) and parser.feed(" <b>") == (" <b>", []) and parser.finish() == ("", 0)
    cut = ToolCallParser()
    cut.feed('<tool_call>\n{"name": "f", "arguments": {"a": 1')
    with pytest.raises(BadRequest, match="max_tokens"):
        cut.finish()


def test_a_spoken_answer_beside_tools_may_hold_no_bracket() -> None:
    spoken = tool_grammar(WEATHER, "auto", spoken=True) or ""
    assert SPOKEN_ANSWER in spoken and PLAIN_ANSWER not in spoken
    assert SPOKEN_ANSWER in (tool_grammar(WEATHER, "none", spoken=True) or "")
    assert PLAIN_ANSWER in (tool_grammar(WEATHER, "auto") or "")


@pytest.mark.model
def test_the_local_model_streams_arguments_and_speaks_no_json(gateway: Server) -> None:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=300)
    fragments: list[str] = []
    for ev in c.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "What's the weather in San Francisco, California?"}],
        tools=WEATHER, tool_choice="required", temperature=0, max_tokens=80, stream=True,  # type: ignore[arg-type]
    ):
        for d in (ev.choices[0].delta.tool_calls or []) if ev.choices else []:
            if d.function and d.function.arguments:
                fragments.append(d.function.arguments)
    assert len(fragments) >= 3 and "san francisco" in json.loads("".join(fragments))["city"].lower()
    # Given the tool's result, a 0.5B model wrote the call again as text (and a voice device would say it): it now
    # answers from the result, and a spoken answer may hold no bracket at all.
    turns = [{"role": "user", "content": "What's the weather in Paris?"},
             {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                 "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees"}]
    r = c.chat.completions.create(model="local", messages=turns, tools=WEATHER, max_tokens=60,  # type: ignore[arg-type]
                                  extra_headers={"x-hearth-pace": "speech"}, temperature=0)
    text = r.choices[0].message.content or ""
    assert "21" in text and not any(ch in text for ch in "{}[]<>`")
