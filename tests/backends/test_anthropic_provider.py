"""The `anthropic` provider kind against a stand-in that speaks Anthropic's documented wire format on a real
loopback port (`hearth.testing.AnthropicStandIn`), reached from chat completions, Ollama and the Messages API;
and the plugin mechanism it is loaded by (an entry point, a config class of its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest
from pydantic import ValidationError

from hearth.access import open_access
from hearth.assemble import Made, assemble, register_provider
from hearth.backends.anthropic import AnthropicBackend, AnthropicModel
from hearth.config import Config, RemoteModel, load_config
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running
from hearth.testing.anthropic import AnthropicStandIn

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
def standin() -> Iterator[tuple[AnthropicStandIn, str]]:
    s = AnthropicStandIn(key="sk-ant-test")
    with running(s.app) as url:
        yield s, url


@pytest.fixture
def gw(tmp_path: Path, standin: tuple[AnthropicStandIn, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _, url = standin
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test")
    cfg_file = tmp_path / "hearth.yaml"
    cfg_file.write_text(f"""
models:
  claude:
    kind: anthropic
    base_url: {url}
    model: claude-test
    api_key_env: ANTHROPIC_TEST_KEY
  local-double:
    kind: openai
    base_url: http://127.0.0.1:9/v1
  escalating:
    kind: router
    default: claude
    fallbacks: {{claude: [local-double]}}
    health_interval: null
keys: {{path: {tmp_path / "keys.db"}}}
responses: {{path: {tmp_path / "responses.db"}}}
""")
    cfg = load_config(cfg_file, {})

    def make() -> Any:
        local = FunctionBackend("local-double", lambda req: Reply("local answer"))
        assembly = assemble(cfg, leaves={"local-double": local})
        return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={}))

    with running(make) as gw_url:
        yield gw_url


def test_chat_completions_reach_claude_with_anthropics_headers_and_shapes(
    gw: str, standin: tuple[AnthropicStandIn, str]
) -> None:
    s, _ = standin
    c = openai.OpenAI(base_url=gw + "/v1", api_key="x", max_retries=0)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    r = c.chat.completions.create(model="claude", messages=msgs, stop=["END"], temperature=0.2)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Claude here: hello there" and r.choices[0].finish_reason == "stop"
    assert r.usage and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    sent, headers = s.requests[-1], s.headers[-1]
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers  # the key goes only where Anthropic reads it
    assert sent["system"] == "Be brief." and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    assert sent["model"] == "claude-test" and sent["max_tokens"] == 4096 and sent["stop_sequences"] == ["END"]
    pieces = [e.choices[0].delta.content for e in c.chat.completions.create(
        model="claude", messages=msgs, stream=True) if e.choices and e.choices[0].delta.content]  # type: ignore[arg-type]
    assert len(pieces) >= 3 and "".join(pieces) == "Claude here: hello there"


def test_tool_calls_stream_from_input_json_fragments_and_results_go_back_as_blocks(
    gw: str, standin: tuple[AnthropicStandIn, str]
) -> None:
    s, _ = standin
    c = openai.OpenAI(base_url=gw + "/v1", api_key="x", max_retries=0)
    ask = [{"role": "user", "content": "use get_weather please"}]
    calls: dict[int, dict[str, str]] = {}
    for e in c.chat.completions.create(model="claude", messages=ask, tools=TOOLS, stream=True,  # type: ignore[arg-type]
                                       tool_choice="required", parallel_tool_calls=False):
        for d in (e.choices[0].delta.tool_calls or []) if e.choices else []:
            got = calls.setdefault(d.index, {"id": "", "name": "", "args": ""})
            got["id"] += d.id or ""
            got["name"] += (d.function.name or "") if d.function else ""
            got["args"] += (d.function.arguments or "") if d.function else ""
    assert s.requests[-1]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert s.requests[-1]["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
    call = calls[0]
    assert call["name"] == "get_weather" and json.loads(call["args"]) == {"city": "Paris"}
    follow = [*ask, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": call["args"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    r = c.chat.completions.create(model="claude", messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    turns = s.requests[-1]["messages"]
    assert turns[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call["id"], "name": "get_weather", "input": {"city": "Paris"}}]}
    assert turns[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                                     "content": "sunny"}]}


def test_every_api_reaches_claude(gw: str) -> None:
    r = ollama.Client(host=gw).chat(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert r.message.content == "Claude here: hi"
    m = anthropic.Anthropic(base_url=gw, api_key="x", max_retries=0).messages.create(
        model="claude", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "Claude here: hi"  # type: ignore[union-attr]
    resp = openai.OpenAI(base_url=gw + "/v1", api_key="x", max_retries=0).responses.create(model="claude", input="hi")
    assert resp.output_text == "Claude here: hi"


def test_failures_are_named_and_a_router_falls_back(gw: str, standin: tuple[AnthropicStandIn, str]) -> None:
    s, _ = standin
    c = openai.OpenAI(base_url=gw + "/v1", api_key="x", max_retries=0)
    s.fail = "overloaded"
    with pytest.raises(openai.APIStatusError) as overloaded:
        c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert overloaded.value.status_code == 502 and "'claude' answered 529" in str(overloaded.value)
    r = c.chat.completions.with_raw_response.create(model="escalating", messages=[{"role": "user", "content": "hi"}])
    assert r.parse().choices[0].message.content == "local answer" and r.headers["x-hearth-route"] == "fallback"
    for mode in ("truncate", "error_event"):
        s.fail = mode
        with pytest.raises(openai.APIError):
            list(c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "one two three"}],
                                           stream=True))
    s.fail, s.key = None, "another-key"
    with pytest.raises(openai.APIStatusError) as refused:
        c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 502 and "sk-ant-test" not in str(refused.value.body)
    assert "refused the gateway's credentials" in str(refused.value)


def test_the_kind_is_a_plugin_loaded_by_its_entry_point() -> None:
    (ep,) = entry_points(group="hearth.providers", name="anthropic")
    assert ep.value == "hearth.backends.anthropic:register"
    cfg = Config.model_validate({"models": {"c": {"kind": "anthropic", "model": "claude-x"}}})
    assert type(cfg.models["c"]) is AnthropicModel and cfg.models["c"].api_key_env == "ANTHROPIC_API_KEY"
    with pytest.raises(ValidationError, match=r"unknown kind 'antropic'.*anthropic"):
        Config.model_validate({"models": {"c": {"kind": "antropic"}}})
    with pytest.raises(ValidationError, match="max_token"):
        Config.model_validate({"models": {"c": {"kind": "anthropic", "max_token": 5}}})


def test_a_third_party_provider_is_one_class_and_one_call(tmp_path: Path) -> None:
    """What a plugin package does (here in code instead of through its entry point): a config class, a factory."""
    from typing import Literal

    class EchoModel(RemoteModel):
        kind: Literal["echo-test"]
        prefix: str = ">"

    def factory(name: str, cfg: EchoModel, services: Any) -> Made:
        return Made(chat=FunctionBackend(name, lambda req: Reply(f"{cfg.prefix} {req.question()}")))

    register_provider("echo-test", factory, config=EchoModel)
    cfg = Config.model_validate({"models": {"e": {"kind": "echo-test", "base_url": "http://echo", "prefix": "#"}}, "keys": {
        "path": str(tmp_path / "k.db")}, "responses": {"store": "off"}})
    assert isinstance(cfg.models["e"], EchoModel)

    def make() -> Any:
        assembly = assemble(cfg)
        return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={}))

    with running(make) as url:
        r = openai.OpenAI(base_url=url + "/v1", api_key="x").chat.completions.create(
            model="e", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "# hi"


def test_backend_body_without_a_network() -> None:
    """Image parts and raw prompts become Anthropic's blocks; consecutive tool results share one user turn."""
    from hearth.core.types import ChatRequest, Message, ToolCall

    b = AnthropicBackend("c", AnthropicModel(kind="anthropic", base_url="https://api.anthropic.com/v1"))
    req = ChatRequest(model="c", messages=[
        Message("user", "look", images=["data:image/jpeg;base64,AAAA", "https://x/y.png"]),
        Message("assistant", "", tool_calls=[ToolCall("t1", "f", '{"a": 1}'), ToolCall("t2", "f", "{}")]),
        Message("tool", "r1", tool_call_id="t1"), Message("tool", "r2", tool_call_id="t2"),
        Message("assistant", ""), Message("user", "and now?"),
    ])
    body = b.body(req)
    assert body["messages"][0]["content"][:2] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]
    assert [blk.get("tool_use_id") for blk in body["messages"][2]["content"]] == ["t1", "t2", None]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]  # the empty turn is left out
    assert b._prefix == "" and b.body(ChatRequest(model="c", prompt="raw"))["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "raw"}]}]
