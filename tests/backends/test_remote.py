"""Remote providers: a second real hearth as the OpenAI- and Ollama-compatible upstream, and real
servers that misbehave. Each client API reaches each kind of upstream."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import ollama
import openai
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model

MSGS = [{"role": "user", "content": "Say hello."}]


def oa(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def ol(gw: Server) -> ollama.Client:
    return ollama.Client(host=gw.url, timeout=60)


def post(gw: Server, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.parametrize("model", ["remote-openai", "remote-ollama"])
def test_openai_client_through_each_upstream_kind(gateway: Server, model: str) -> None:
    c = oa(gateway)
    r = c.chat.completions.create(model=model, messages=MSGS, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].message.content and r.usage and r.usage.completion_tokens > 0
    texts = [
        ev.choices[0].delta.content or ""
        for ev in c.chat.completions.create(model=model, messages=MSGS, max_tokens=8, temperature=0, stream=True)
        if ev.choices
    ]  # type: ignore[arg-type]
    assert len([t for t in texts if t]) >= 2


@pytest.mark.parametrize("model", ["remote-openai", "remote-ollama"])
def test_ollama_client_through_each_upstream_kind(gateway: Server, model: str) -> None:
    c = ol(gateway)
    r = c.chat(model=model, messages=MSGS, stream=False, options={"num_predict": 8, "temperature": 0})
    assert r.message.content and r.eval_count
    parts = list(c.chat(model=model, messages=MSGS, stream=True, options={"num_predict": 8, "temperature": 0}))
    assert parts[-1].done and len(parts) >= 3
    g = c.generate(model=model, prompt="Say hi", stream=False, options={"num_predict": 4})
    assert g.response


def test_backend_header_names_the_backend(gateway: Server) -> None:
    status, headers, _ = post(gateway, "/v1/chat/completions", {"model": "remote-openai", "messages": MSGS,
                                                               "max_tokens": 2})
    assert status == 200 and headers["x-hearth-backend"] == "remote-openai"


def test_completion_endpoint_through_remote(gateway: Server) -> None:
    r = oa(gateway).completions.create(model="bad-ok", prompt="hi", max_tokens=4)
    assert r.choices[0].text == "Hello from upstream"


# --- faults before the first byte: a clear HTTP error naming the provider -----------------------------


@pytest.mark.parametrize(("model", "status", "words"), [
    ("bad-refused", 502, ["unreachable", "bad-refused"]),
    ("bad-500", 502, ["answered 500", "bad-500"]),  # the provider's own words stay in the operator's log
    ("bad-401", 502, ["credentials (401)"]),
    ("bad-429", 429, ["answered 429"]),
    ("bad-hang", 504, ["timed out", "bad-hang"]),
])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_failures_openai_format(
    gateway: Server, model: str, status: int, words: list[str], stream: bool
) -> None:
    t0 = time.monotonic()
    got, headers, body = post(gateway, "/v1/chat/completions", {"model": model, "messages": MSGS, "stream": stream})
    assert time.monotonic() - t0 < 6, "a provider failure must not hang the request"
    assert got == status, body
    err = json.loads(body)["error"]
    for w in words:
        assert w in err["message"]
    assert "internal upstream failure" not in err["message"] and "127.0.0.1" not in err["message"]
    if status == 429:
        assert headers["Retry-After"] == "7"


def test_provider_failure_ollama_format(gateway: Server) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        ol(gateway).chat(model="bad-500", messages=MSGS)
    assert e.value.status_code == 502 and "bad-500" in e.value.error


def test_slow_provider_within_deadline_succeeds(gateway: Server) -> None:
    r = oa(gateway).chat.completions.create(model="bad-slow", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hello from upstream"


# --- faults mid-stream: the stream ends with an error event, never silently ----------------------------


@pytest.mark.parametrize("model", ["bad-stall", "bad-garbage", "bad-truncate"])
def test_mid_stream_failure_openai_client_sees_error(gateway: Server, model: str) -> None:
    texts = []
    t0 = time.monotonic()
    with pytest.raises(openai.APIError):
        for ev in oa(gateway).chat.completions.create(model=model, messages=MSGS, stream=True):  # type: ignore[arg-type]
            if ev.choices:
                texts.append(ev.choices[0].delta.content or "")
    assert "".join(texts) == "Hello from"
    assert time.monotonic() - t0 < 6


@pytest.mark.parametrize("model", ["bad-stall", "bad-garbage", "bad-truncate"])
def test_mid_stream_failure_raw_sse_ends_with_error_event(gateway: Server, model: str) -> None:
    status, _, body = post(gateway, "/v1/chat/completions", {"model": model, "messages": MSGS, "stream": True})
    assert status == 200
    events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] != "[DONE]"
    last = json.loads(events[-1])
    assert last["error"]["code"] in ("upstream_error", "upstream_timeout") and model in last["error"]["message"]


@pytest.mark.parametrize("model", ["bad-ollama-stall", "bad-ollama-garbage", "bad-ollama-truncate"])
def test_mid_stream_failure_ollama_client_sees_error(gateway: Server, model: str) -> None:
    texts = []
    with pytest.raises(ollama.ResponseError) as e:
        for part in ol(gateway).chat(model=model, messages=MSGS, stream=True):
            texts.append(part.message.content or "")
    assert "".join(texts) == "Hello from" and model in e.value.error


def test_ollama_upstream_ok(gateway: Server) -> None:
    r = oa(gateway).chat.completions.create(model="bad-ollama-ok", messages=MSGS)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hello from upstream"
    assert r.usage and r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 4


def test_api_key_is_sent_and_never_logged(gateway: Server, upstream: Server) -> None:
    post(gateway, "/v1/chat/completions", {"model": "remote-openai", "messages": MSGS, "max_tokens": 2})
    assert "sk-test" not in gateway.log.read_text()
    assert "Say hello" not in gateway.log.read_text()
