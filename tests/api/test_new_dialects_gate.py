"""The Anthropic Messages and OpenAI Responses dialects at the API edge, with the real `anthropic` and `openai`
SDKs against a keyed gateway on a loopback port: keys (x-api-key), scopes, limits, errors in each API's own
shape before and after the stream began, stored responses scoped to their key. The models are scripted
doubles, so each case takes milliseconds (tests/api/test_anthropic.py and test_responses.py use real ones)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from hearth.access import open_access
from hearth.assemble import assemble
from hearth.config import load_config
from hearth.core.errors import UpstreamError
from hearth.core.types import ChatRequest, Finish, TextDelta, ToolCallDelta, Usage
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running

ADMIN = "adm-secret-for-tests-0123456789abcdef"
CONFIG = """
models:
  paid:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt
  other:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt
keys:
  path: KEYS_DB
responses:
  path: RESPONSES_DB
"""


def _answer(req: ChatRequest) -> Reply | Exception | list[Any]:
    text = req.messages[-1].content if req.messages else ""
    if text == "mixed":  # text, a call, then text again: three output items
        return [TextDelta("Let me "), TextDelta("look."), ToolCallDelta(0, "call_m", "get_weather", '{"city": '),
                ToolCallDelta(0, arguments='"Oslo"}'), TextDelta("Done."), Usage(3, 5), Finish("tool_calls")]
    if "break" in text:
        return Reply("one two three four", error_after=2, error=UpstreamError("provider hung up"))
    if req.tools and req.messages[-1].role == "user":
        return Reply("", tool_calls=[("get_weather", {"city": "Paris"})], usage=(9, 5))
    if req.messages[-1].role == "tool":
        return Reply(f"It is {text}.", usage=(12, 4))
    return Reply("a b c d", usage=(3, 4))


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[str, FunctionBackend]]:
    cfg_file = tmp_path / "hearth.yaml"
    cfg_file.write_text(CONFIG.replace("KEYS_DB", str(tmp_path / "keys.db"))
                        .replace("RESPONSES_DB", str(tmp_path / "responses.db")))
    cfg = load_config(cfg_file, {})
    paid = FunctionBackend("paid", _answer)

    def make() -> Any:
        assembly = assemble(cfg, leaves={"paid": paid, "other": FunctionBackend("other", _answer)})
        return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={"HEARTH_ADMIN_KEY": ADMIN}))

    with running(make) as url:
        yield url, paid


def _call(url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def new_key(url: str, **fields: Any) -> str:
    status, body = _call(url, "POST", "/admin/keys", {"name": "app", "models": ["paid"], **fields},
                         headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200, body
    return str(body["key"])


def claude(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def oai(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"name": "get_weather", "description": "The weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_messages_take_the_key_from_x_api_key_and_refuse_in_anthropics_shape(gw: tuple[str, FunctionBackend]) -> None:
    url, _ = gw
    key = new_key(url)
    r = claude(url, key).messages.create(model="paid", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert r.content[0].text == "a b c d" and r.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert (r.usage.input_tokens, r.usage.output_tokens) == (3, 4)
    with pytest.raises(anthropic.AuthenticationError) as no_key:
        claude(url, "sk-wrong").messages.create(model="paid", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert no_key.value.body["type"] == "error"  # type: ignore[index]
    assert no_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError) as foreign:
        claude(url, key).messages.create(model="other", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert foreign.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(url, key).messages.count_tokens(model="other", messages=HI)  # type: ignore[arg-type]
    assert claude(url, key).messages.count_tokens(model="paid", messages=HI).input_tokens > 0  # type: ignore[arg-type]


def test_messages_bad_requests_name_the_field(gw: tuple[str, FunctionBackend]) -> None:
    url, _ = gw
    auth = {"x-api-key": new_key(url), "Content-Type": "application/json"}
    cases = [
        ({"model": "paid", "messages": HI}, "max_tokens"),  # required, as Anthropic requires it
        ({"model": "paid", "max_tokens": 5, "messages": HI, "temprature": 1}, "temprature"),
        ({"model": "paid", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {}}]}]}, "document"),
        ({"model": "paid", "max_tokens": 5, "messages": HI, "tools": [{"type": "web_search_20250305",
                                                                       "name": "web_search"}]}, "web_search"),
        ({"model": "paid", "max_tokens": 5, "messages": HI, "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (b"{not json", "malformed JSON"),
    ]
    for body, named in cases:
        status, err = _call(url, "POST", "/v1/messages", body, auth)
        assert status == 400 and err["type"] == "error", (body, err)
        assert err["error"]["type"] == "invalid_request_error" and named in err["error"]["message"], err
    status, err = _call(url, "POST", "/v1/messages", {"model": "nope", "max_tokens": 5, "messages": HI}, auth)
    assert status in (403, 404) and err["error"]["type"] in ("permission_error", "not_found_error")


def test_messages_limits_apply_and_a_failure_mid_stream_is_an_error_event(gw: tuple[str, FunctionBackend]) -> None:
    url, _ = gw
    key = new_key(url, rpm=2)
    c = claude(url, key)
    broken = [{"role": "user", "content": "break"}]
    with c.messages.stream(model="paid", max_tokens=10, messages=broken) as s, \
            pytest.raises(anthropic.APIStatusError) as failed:
        for _ in s.text_stream:
            pass
    assert "provider hung up" in str(failed.value)
    c.messages.create(model="paid", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as limited:
        c.messages.create(model="paid", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers.get("retry-after")


def test_messages_tool_use_round_trip_reaches_the_backend_as_tool_messages(gw: tuple[str, FunctionBackend]) -> None:
    url, paid = gw
    c = claude(url, new_key(url))
    ask = [{"role": "user", "content": "weather in Paris?"}]
    r = c.messages.create(model="paid", max_tokens=50, messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                          tool_choice={"type": "any", "disable_parallel_tool_use": True})
    call = r.content[0]
    assert r.stop_reason == "tool_use" and call.type == "tool_use" and call.input == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    sent = paid.requests[-1]
    assert sent.tool_choice == "required" and sent.parallel_tool_calls is False
    assert sent.tools and sent.tools[0]["function"]["name"] == "get_weather"
    follow = [*ask, {"role": "assistant", "content": [call.model_dump()]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                            "content": [{"type": "text", "text": "sunny"}]}]}]
    with c.messages.stream(model="paid", max_tokens=50, messages=follow, tools=TOOLS) as s:  # type: ignore[arg-type]
        final = s.get_final_message()
    assert final.content[0].text == "It is sunny." and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    back = paid.requests[-1].messages
    assert back[-2].tool_calls and back[-2].tool_calls[0].id == call.id
    assert (back[-1].role, back[-1].tool_call_id, back[-1].content) == ("tool", call.id, "sunny")


def test_stored_responses_belong_to_the_key_that_made_them(gw: tuple[str, FunctionBackend]) -> None:
    url, paid = gw
    mine, theirs = oai(url, new_key(url)), oai(url, new_key(url))
    first = mine.responses.create(model="paid", instructions="be brief", input="hello")
    assert first.output_text == "a b c d" and first.status == "completed" and first.store
    assert mine.responses.retrieve(first.id).output_text == "a b c d"
    for attempt in (lambda: theirs.responses.retrieve(first.id),
                    lambda: theirs.responses.create(model="paid", input="more", previous_response_id=first.id),
                    lambda: theirs.responses.delete(first.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    second = mine.responses.create(model="paid", input="more", previous_response_id=first.id)
    seen = [(m.role, m.content) for m in paid.requests[-1].messages]
    # The stored conversation comes back; the first turn's instructions do not (as OpenAI does it).
    assert seen == [("user", "hello"), ("assistant", "a b c d"), ("user", "more")]
    assert second.previous_response_id == first.id
    items = mine.responses.input_items.list(second.id).data
    assert [i.type for i in items] == ["message"] and items[0].content[0].text == "more"  # type: ignore[union-attr]
    mine.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(first.id)
    unstored = mine.responses.create(model="paid", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(unstored.id)


def test_responses_tool_calls_stream_as_items_and_failures_as_events(gw: tuple[str, FunctionBackend]) -> None:
    url, paid = gw
    c = oai(url, new_key(url))
    tools = [{"type": "function", "name": "get_weather", "parameters": TOOLS[0]["input_schema"]}]
    with c.responses.stream(model="paid", input="weather?", tools=tools, tool_choice="required") as s:  # type: ignore[arg-type]
        kinds = [e.type for e in s]
        called = s.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    call = called.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    done = c.responses.create(model="paid", previous_response_id=called.id, tools=tools,  # type: ignore[arg-type]
                              input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}])
    assert done.output_text == "It is rainy."
    sent = paid.requests[-1].messages
    assert sent[-2].tool_calls and sent[-2].tool_calls[0].id == call.call_id and sent[-1].tool_call_id == call.call_id
    events = list(c.responses.create(model="paid", input="break", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"], kinds
    assert "provider hung up" in events[-1].response.error.message  # type: ignore[union-attr]


def test_responses_refuse_what_they_cannot_do_by_name(gw: tuple[str, FunctionBackend]) -> None:
    url, _ = gw
    auth = {"Authorization": f"Bearer {new_key(url)}", "Content-Type": "application/json"}
    cases = [
        ({"model": "paid", "input": "x", "background": True}, "background"),
        ({"model": "paid", "input": "x", "tools": [{"type": "web_search"}]}, "tools.0"),
        ({"model": "paid", "input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
        ({"model": "paid", "input": "x", "previous_response_id": "resp_nope"}, "resp_nope"),
        ({"model": "paid", "input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"model": "paid", "input": "x", "max_output_token": 5}, "max_output_token"),
    ]
    for body, named in cases:
        status, err = _call(url, "POST", "/v1/responses", body, auth)
        assert status in (400, 404) and named in err["error"]["message"], (body, err)


def test_responses_stream_text_a_call_and_text_again_as_three_items(gw: tuple[str, FunctionBackend]) -> None:
    url, _ = gw
    c = oai(url, new_key(url))
    with c.responses.stream(model="paid", input="mixed") as s:  # the SDK checks every item's identity
        final = s.get_final_response()
    kinds = [(o.type, getattr(o, "id", None)) for o in final.output]
    assert [k for k, _ in kinds] == ["message", "function_call", "message"] and len({i for _, i in kinds}) == 3
    assert final.output_text == "Let me look.Done." and final.output[1].arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]
    messages = claude(url, new_key(url)).messages.create(model="paid", max_tokens=20, messages=[
        {"role": "user", "content": "mixed"}])
    assert [b.type for b in messages.content] == ["text", "tool_use"] and messages.stop_reason == "tool_use"
