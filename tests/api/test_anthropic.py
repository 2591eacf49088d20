"""The Anthropic dialect through the real `anthropic` SDK, on the real default model and on remote models
(an OpenAI-compatible provider, and the `anthropic` provider kind whose upstream is another hearth)."""

from __future__ import annotations

import anthropic
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model

SYSTEM = "You are terse."
ASK = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"name": "get_weather", "description": "Get the current weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def client(gw: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("model", ["local", "remote-openai", "remote-anthropic"])
def test_messages_create_and_stream(gateway: Server, model: str) -> None:
    c = client(gateway)
    raw = c.messages.with_raw_response.create(model=model, max_tokens=16, system=SYSTEM, messages=ASK)  # type: ignore[arg-type]
    r = raw.parse()
    assert r.type == "message" and r.role == "assistant" and r.model == model
    assert r.content[0].type == "text" and r.content[0].text.strip()
    assert r.stop_reason in ("end_turn", "max_tokens") and r.usage.output_tokens > 0
    assert raw.headers["x-hearth-backend"] == ("qwen2.5-coder-0.5b" if model == "local" else model)
    if model == "local":
        assert "Paris" in r.content[0].text and r.usage.input_tokens + (r.usage.cache_read_input_tokens or 0) > 10
    with c.messages.stream(model=model, max_tokens=16, system=[{"type": "text", "text": SYSTEM}],  # type: ignore[arg-type]
                           messages=ASK) as s:  # type: ignore[arg-type]
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_stream_events_are_anthropics_sequence(gateway: Server) -> None:
    with client(gateway).messages.stream(model="local", max_tokens=8, messages=ASK) as s:  # type: ignore[arg-type]
        kinds = [e.type for e in s]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and kinds[-2] == "message_delta"
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop"


def test_tool_use_round_trip_on_the_local_model(gateway: Server) -> None:
    c = client(gateway)
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = c.messages.create(model="local", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"},  # type: ignore[arg-type]
                          messages=ask)  # type: ignore[arg-type]
    call = next(b for b in r.content if b.type == "tool_use")
    assert r.stop_reason == "tool_use" and call.name == "get_weather" and "paris" in str(call.input).lower()
    follow = [*ask, {"role": "assistant", "content": [b.model_dump() for b in r.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                            "content": "Sunny, 21 degrees"}]}]
    answer = c.messages.create(model="local", max_tokens=40, messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert answer.content and answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
    with c.messages.stream(model="local", max_tokens=100, tools=TOOLS, messages=ask,  # type: ignore[arg-type]
                           tool_choice={"type": "tool", "name": "get_weather"}) as s:
        kinds = [e.type for e in s]
        streamed = s.get_final_message()
    assert "input_json" in kinds
    block = streamed.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather" and isinstance(block.input, dict)


def test_count_tokens_uses_the_models_vocabulary(gateway: Server) -> None:
    c = client(gateway)
    short = c.messages.count_tokens(model="local", messages=[{"role": "user", "content": "hi"}]).input_tokens
    long = c.messages.count_tokens(model="local", messages=ASK, system=SYSTEM).input_tokens  # type: ignore[arg-type]
    with_tools = c.messages.count_tokens(model="local", messages=ASK, system=SYSTEM, tools=TOOLS).input_tokens  # type: ignore[arg-type]
    assert 0 < short < long < with_tools


def test_errors_are_in_anthropics_shape(gateway: Server) -> None:
    c = client(gateway)
    with pytest.raises(anthropic.NotFoundError) as missing:
        c.messages.create(model="nope", max_tokens=5, messages=ASK)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.create(model="local", max_tokens=5, messages=ASK, extra_body={"top_p": 3})  # type: ignore[arg-type]
    assert "top_p" in bad.value.body["error"]["message"]  # type: ignore[index]


def test_structured_output_through_output_config(gateway: Server) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    r = client(gateway).messages.create(model="local", max_tokens=60, messages=ASK,  # type: ignore[arg-type]
                                        output_config={"format": {"type": "json_schema", "schema": schema}})
    import json

    assert set(json.loads(r.content[0].text)) == {"city", "country"}  # type: ignore[union-attr]
