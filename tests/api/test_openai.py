"""The OpenAI dialect, through the real `openai` client, on the real default model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model


def client(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def post(gw: Server, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        gw.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}]


def test_chat_non_streaming_on_default_model(gateway: Server) -> None:
    r = client(gateway).chat.completions.create(model="local", messages=MSGS, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason in ("stop", "length")
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.usage is not None and r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.model == "local"


def test_chat_streaming_with_usage(gateway: Server) -> None:
    stream = client(gateway).chat.completions.create(
        model="qwen2.5-coder-0.5b", messages=MSGS, max_tokens=16, temperature=0, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    texts, finish, usage = [], None, None
    for ev in stream:
        if ev.choices:
            texts.append(ev.choices[0].delta.content or "")
            finish = ev.choices[0].finish_reason or finish
        if ev.usage:
            usage = ev.usage
    assert "Paris" in "".join(texts)
    assert len([t for t in texts if t]) >= 2  # really streamed, token by token
    assert finish in ("stop", "length")
    # A token can end mid-character (held back until complete), so tokens >= non-empty deltas.
    assert usage is not None and usage.completion_tokens >= len([t for t in texts if t])


def test_sampling_parameters_are_honoured(gateway: Server) -> None:
    c = client(gateway)
    r = c.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Count from 1 to 20, comma separated."}],
        max_completion_tokens=40, temperature=0, stop=["5"], seed=1, presence_penalty=0.1, frequency_penalty=0.1,
    )
    text = r.choices[0].message.content or ""
    assert "5" not in text and "4" in text
    assert r.choices[0].finish_reason == "stop"
    r = c.chat.completions.create(model="local", messages=MSGS, max_tokens=3, temperature=0.7, top_p=0.9, seed=7)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "length" and r.usage and r.usage.completion_tokens == 3


def test_completions_endpoint(gateway: Server) -> None:
    c = client(gateway)
    r = c.completions.create(model="local", prompt="def add(a, b):\n    return", max_tokens=5, temperature=0)
    assert r.choices[0].text.strip().startswith("a")
    chunks = list(c.completions.create(model="local", prompt="1, 2, 3,", max_tokens=4, temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices).strip().startswith("4")


def test_models_list_and_get(gateway: Server) -> None:
    c = client(gateway)
    ids = [m.id for m in c.models.list()]
    assert {"qwen2.5-coder-0.5b", "local", "smol", "remote-openai"} <= set(ids)
    assert c.models.retrieve("local").id == "local"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")


# --- errors, in OpenAI's format ----------------------------------------------------------------------


def _err(status: int, body: Any, want_status: int, *words: str) -> dict[str, Any]:
    assert status == want_status, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], err
    return err  # type: ignore[no-any-return]


def test_malformed_json(gateway: Server) -> None:
    _err(*post(gateway, "/v1/chat/completions", b'{"model": "local", "messages": ['), 400, "malformed JSON")


def test_body_not_an_object(gateway: Server) -> None:
    _err(*post(gateway, "/v1/chat/completions", b"[1, 2]"), 400)


def test_wrong_type_names_the_field(gateway: Server) -> None:
    e = _err(*post(gateway, "/v1/chat/completions", {"model": "local", "messages": MSGS, "temperature": "hot"}), 400,
             "temperature")
    assert e["param"] == "temperature"
    e = _err(*post(gateway, "/v1/chat/completions", {"model": "local", "messages": [{"role": "robot", "content": "x"}]}),
             400, "messages.0.role")


def test_unknown_field_names_the_field(gateway: Server) -> None:
    e = _err(*post(gateway, "/v1/chat/completions", {"model": "local", "messages": MSGS, "max_token": 5}), 400,
             "max_token", "unknown field")
    assert e["param"] == "max_token"


def test_missing_field(gateway: Server) -> None:
    _err(*post(gateway, "/v1/chat/completions", {"messages": MSGS}), 400, "model", "required")


def test_unknown_model_404(gateway: Server) -> None:
    e = _err(*post(gateway, "/v1/chat/completions", {"model": "gpt-17", "messages": MSGS}), 404, "gpt-17")
    assert e["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(model="gpt-17", messages=MSGS)  # type: ignore[arg-type]


def test_oversized_body_413(gateway: Server) -> None:
    huge = {"model": "local", "messages": [{"role": "user", "content": "x" * 300_000}]}
    e = _err(*post(gateway, "/v1/chat/completions", huge), 413, "limit")
    assert e["code"] == "request_too_large"


def test_context_length_exceeded(gateway: Server) -> None:
    long = {"model": "smol", "messages": [{"role": "user", "content": "word " * 2000}]}
    e = _err(*post(gateway, "/v1/chat/completions", long), 400, "maximum context length", "512")
    assert e["code"] == "context_length_exceeded"


def test_n_greater_than_one_rejected(gateway: Server) -> None:
    e = _err(*post(gateway, "/v1/chat/completions", {"model": "local", "messages": MSGS, "n": 2}), 400, "n")
    assert e["param"] == "n"


def test_unknown_route_is_json_404(gateway: Server) -> None:
    status, body = post(gateway, "/v1/nothing-here", {})
    assert status == 404 and "no route" in body["error"]["message"]
