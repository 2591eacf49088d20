"""The local engine through a real server: cancellation, prefix reuse, concurrency, admission."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import time
import urllib.error
import urllib.request

import openai
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.model

LONG_SYS_A = ("You are Xinghe, a senior technical assistant for a local-first AI gateway. " * 12).strip()
LONG_SYS_B = ("You are Mira, a patient cooking coach who plans cheap healthy meals for students. " * 12).strip()


def oa(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def engine_value(gw: Server, model: str, what: str) -> float:
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        text = r.read().decode()
    m = re.search(rf'hearth_engine_value{{model="{re.escape(model)}",what="{what}"}} ([0-9.e+]+)', text)
    assert m, f"no engine metric {what} for {model}"
    return float(m.group(1))


def chat(
    gw: Server, model: str, messages: list[dict[str, str]], max_tokens: int = 8
) -> openai.types.chat.ChatCompletion:
    return oa(gw).chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)  # type: ignore[arg-type]


def cached(r: openai.types.chat.ChatCompletion) -> int:
    assert r.usage and r.usage.prompt_tokens_details
    return r.usage.prompt_tokens_details.cached_tokens or 0


def test_client_disconnect_stops_generation(gateway: Server) -> None:
    body = json.dumps(
        {
            "model": "smol",
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 400,
            "stream": True,
            "logit_bias": {"2": -100},
        }
    ).encode()  # (token 2 is SmolLM2's <|im_end|>)
    before = engine_value(gateway, "smol", "generated_tokens")
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        got = b""
        while got.count(b"data: ") < 4:
            got += s.recv(4096)
    deadline = time.monotonic() + 5
    while engine_value(gateway, "smol", "active_sequences") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_value(gateway, "smol", "active_sequences") == 0
    generated = engine_value(gateway, "smol", "generated_tokens") - before
    assert generated < 100, f"generation went on after the client left ({generated} tokens)"


def test_second_turn_reuses_the_prefix(gateway: Server) -> None:
    m1 = [{"role": "system", "content": LONG_SYS_A}, {"role": "user", "content": "What is TTFT?"}]
    r1 = chat(gateway, "local", m1)
    m2 = [*m1, {"role": "assistant", "content": r1.choices[0].message.content or ""},
          {"role": "user", "content": "And decode speed?"}]
    r2 = chat(gateway, "local", m2)
    assert r1.usage and r2.usage
    assert cached(r2) >= r1.usage.prompt_tokens - 1


def test_interleaved_conversations_keep_their_prefixes(gateway: Server) -> None:
    a1m = [{"role": "system", "content": LONG_SYS_A}, {"role": "user", "content": "Hi, who are you?"}]
    b1m = [{"role": "system", "content": LONG_SYS_B}, {"role": "user", "content": "Plan my breakfast."}]
    a1, b1 = chat(gateway, "local", a1m), chat(gateway, "local", b1m)
    a2m = [*a1m, {"role": "assistant", "content": a1.choices[0].message.content or ""},
           {"role": "user", "content": "Tell me more."}]
    b2m = [*b1m, {"role": "assistant", "content": b1.choices[0].message.content or ""},
           {"role": "user", "content": "And lunch?"}]
    a2, b2 = chat(gateway, "local", a2m), chat(gateway, "local", b2m)
    assert a1.usage and b1.usage
    assert cached(a2) >= a1.usage.prompt_tokens - 1, "A's prefix was lost when B ran"
    assert cached(b2) >= b1.usage.prompt_tokens - 1
    # A new conversation with A's system prompt reuses at least the system prompt.
    a_new = chat(gateway, "local", [{"role": "system", "content": LONG_SYS_A}, {"role": "user", "content": "Yo"}])
    assert cached(a_new) >= 100


def test_concurrent_streams_all_complete(gateway: Server) -> None:
    questions = ["Name a color.", "Name a fruit.", "Name an animal.", "Name a city."]

    def run(q: str) -> tuple[str, str | None]:
        texts, finish = [], None
        for ev in oa(gateway).chat.completions.create(
            model="local", messages=[{"role": "user", "content": q}], max_tokens=12, temperature=0, stream=True
        ):
            if ev.choices:
                texts.append(ev.choices[0].delta.content or "")
                finish = ev.choices[0].finish_reason or finish
        return "".join(texts), finish

    alone = [run(q) for q in questions[:2]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(run, questions))
    for text, finish in together:
        assert text and finish in ("stop", "length")
    # temperature 0: batching must not change what a sequence says
    assert [t for t, _ in together[:2]] == [t for t, _ in alone]


def test_overload_gets_503_with_retry_after(gateway: Server) -> None:
    # smol: 2 sequences at a time and a wait queue of 1; the 4th concurrent request is refused.
    body = {"model": "smol", "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 120,
            "logit_bias": {"2": -100}}

    def send() -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(gateway.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: send(), range(6)))
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) >= 3 and 503 in statuses, statuses
    refused = next(r for r in results if r[0] == 503)
    assert refused[1]["Retry-After"] and json.loads(refused[2])["error"]["code"] == "overloaded"


def test_metrics_expose_latency_histograms(gateway: Server) -> None:
    chat(gateway, "local", [{"role": "user", "content": "hi"}], max_tokens=2)
    with urllib.request.urlopen(gateway.url + "/metrics") as r:
        text = r.read().decode()
    assert (
        'hearth_time_to_first_token_seconds_bucket{model="qwen2.5-coder-0.5b",backend="qwen2.5-coder-0.5b",le="0.05"}'
        in text
    )
    assert "hearth_request_duration_seconds_count" in text
    assert re.search(r'hearth_requests_total\{api="openai",model="qwen2.5-coder-0.5b",[^}]*status="ok"\} [1-9]', text)
    assert "hearth_prompt_tokens_total" in text and "hearth_completion_tokens_total" in text
