"""The Ollama dialect, through the real `ollama` client, on the real default model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import ollama
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model

MSGS = [{"role": "user", "content": "What is the capital of France? One word."}]


def client(gw: Server) -> ollama.Client:
    return ollama.Client(host=gw.url, timeout=120)


def post(gw: Server, path: str, body: bytes | dict[str, Any]) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(gw.url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, [json.loads(line) for line in r.read().splitlines() if line.strip()]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_chat_streaming_default(gateway: Server) -> None:
    parts = list(client(gateway).chat(model="local", messages=MSGS, stream=True,
                                      options={"temperature": 0, "num_predict": 12}))
    assert len(parts) >= 2 and parts[-1].done
    text = "".join(p.message.content or "" for p in parts)
    assert "Paris" in text
    last = parts[-1]
    assert last.done_reason in ("stop", "length")
    assert last.eval_count and last.eval_count > 0
    assert last.total_duration and last.eval_duration and last.prompt_eval_duration is not None
    assert last.prompt_eval_count is not None


def test_chat_non_streaming(gateway: Server) -> None:
    r = client(gateway).chat(model="local", messages=MSGS, stream=False, options={"temperature": 0, "num_predict": 12})
    assert "Paris" in r.message.content and r.done and r.message.role == "assistant"


def test_raw_ndjson_is_streamed_by_default(gateway: Server) -> None:
    status, lines = post(gateway, "/api/chat", {"model": "local", "messages": MSGS,
                                                "options": {"temperature": 0, "num_predict": 8}})
    assert status == 200 and len(lines) >= 2
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
            "eval_duration", "done_reason"} <= set(lines[-1])


def test_generate(gateway: Server) -> None:
    c = client(gateway)
    r = c.generate(model="local", prompt="What is 2+2? Answer with a digit.", stream=False,
                   options={"temperature": 0, "num_predict": 8})
    assert "4" in r.response and r.done
    parts = list(c.generate(model="local", prompt="def add(a, b):\n    return", raw=True, stream=True,
                            options={"temperature": 0, "num_predict": 4}))
    assert parts[-1].done and parts[-1].done_reason == "length"
    assert "".join(p.response for p in parts).strip().startswith("a")


def test_generate_with_system_and_empty_prompt_loads(gateway: Server) -> None:
    status, lines = post(gateway, "/api/generate", {"model": "local", "prompt": ""})
    assert status == 200 and lines[0]["done"] and lines[0]["done_reason"] == "load"


def test_tags_show_ps_version_root(gateway: Server) -> None:
    c = client(gateway)
    names = {m.model for m in c.list().models}
    assert {"qwen2.5-coder-0.5b", "local", "smol", "remote-ollama"} <= names
    shown = c.show("local")
    assert shown.details and shown.details.quantization_level == "Q4_K_M"
    assert "im_start" in (shown.template or "")
    running = {m.model for m in c.ps().models}
    assert "qwen2.5-coder-0.5b" in running
    with urllib.request.urlopen(gateway.url + "/api/version") as r:
        assert "version" in json.loads(r.read())
    with urllib.request.urlopen(gateway.url + "/") as r:
        assert r.read() == b"hearth is running"


def test_latest_tag_resolves(gateway: Server) -> None:
    r = client(gateway).chat(model="local:latest", messages=MSGS, stream=False, options={"num_predict": 2})
    assert r.done


# --- errors, in Ollama's format ----------------------------------------------------------------------


def test_unknown_model(gateway: Server) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        client(gateway).chat(model="llama9", messages=MSGS)
    assert e.value.status_code == 404 and "llama9" in e.value.error


def test_error_bodies(gateway: Server) -> None:
    status, body = post(gateway, "/api/chat", b"{nope")
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = post(gateway, "/api/chat", {"model": "local", "messages": [{"role": "user", "content": 5}]})
    assert status == 400 and "messages.0.content" in body["error"]
    status, body = post(gateway, "/api/chat", {"model": "local", "messages": MSGS, "options": {"temprature": 1}})
    assert status == 400 and "options.temprature" in body["error"] and "unknown field" in body["error"]
    status, body = post(gateway, "/api/generate", {"model": "local", "prompt": "x" * 300_000})
    assert status == 413 and "limit" in body["error"]
    status, body = post(gateway, "/api/generate", {"model": "smol", "prompt": "word " * 2000})
    assert status == 400 and "maximum context length" in body["error"]
    status, body = post(gateway, "/api/show", {"model": "nothing"})
    assert status == 404 and "nothing" in body["error"]
    status, body = post(gateway, "/api/nothing", {})
    assert status == 404 and "no route" in body["error"]


def test_ignored_runtime_options_are_accepted(gateway: Server) -> None:
    r = client(gateway).chat(model="local", messages=MSGS, stream=False,
                             options={"num_ctx": 4096, "num_gpu": 0, "num_predict": 2}, keep_alive="5m")
    assert r.done
