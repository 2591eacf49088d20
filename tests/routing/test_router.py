"""Routers over real backends: a local SmolLM2, a real remote (another hearth), and real failing servers."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, free_port, start_hearth

pytestmark = pytest.mark.model


def _remote(name: str, base: str, first_token: float = 2.0) -> str:
    return (f"  {name}:\n    kind: openai\n    base_url: {base}\n    model: smol\n"
            f"    timeouts: {{connect: 1.0, first_token: {first_token}, total: 20}}\n")


def _router(name: str, default: str, fallbacks: list[str], **extra: Any) -> str:
    lines = [f"  {name}:", "    kind: router", f"    default: {default}", "    health_interval: null"]
    if fallbacks:
        lines.append(f"    fallbacks: {{{default}: [{', '.join(fallbacks)}]}}")
    lines += [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def rgw(tmp_session: Path, upstream: Server, bad: Server) -> Iterator[Server]:
    refused = free_port()
    cfg = "cache: {enabled: false}\nmodels:\n"  # repeated prompts here test routing, not the cache
    cfg += "  smol:\n    kind: llamacpp\n    path: builtin:smollm2-135m\n    n_ctx: 512\n    threads: 2\n"
    cfg += ("  smol-tight:\n    kind: llamacpp\n    path: builtin:smollm2-135m\n    n_ctx: 512\n    threads: 2\n"
            "    max_sequences: 1\n    max_queue: 8\n    warmup: false\n")
    cfg += _remote("good", f"{upstream.url}/v1", first_token=30)
    cfg += _remote("refused", f"http://127.0.0.1:{refused}/v1")
    for m in ("500", "429", "hang", "stall", "slow"):
        cfg += _remote(f"bad-{m}", f"{bad.url}/{m}/v1")
    cfg += _router("auto", "smol", ["good"], rules=[
        {"pattern": "(?i)\\bcode\\b|代码", "target": "good", "name": "code"},
        {"pattern": "(?i)^hi\\b|你好", "target": "smol", "name": "greeting"}],
        tiers=[{"max_score": 0.5, "target": "smol"}, {"max_score": 1.0, "target": "good"}])
    cfg += _router("r-refused", "refused", ["smol"])
    cfg += _router("r-500", "bad-500", ["smol"], retries=1, retry_backoff=0.05)
    cfg += _router("r-429", "bad-429", ["smol"], retries=0)
    cfg += _router("r-hang", "bad-hang", ["smol"], ttft_deadline=0.5)
    cfg += _router("r-slow", "bad-slow", ["smol"], ttft_deadline=0.3)
    cfg += _router("r-stall", "bad-stall", ["smol"])
    cfg += _router("r-all-bad", "refused", ["bad-500"], retries=0)
    cfg += _router("r-total", "bad-hang", [], total_deadline=1.0)
    cfg += _router("r-breaker", "bad-500", ["smol"], retries=0, breaker={"failures": 2, "cooldown": 60})
    cfg += _router("r-shed", "smol-tight", ["good"], shed_queue_depth=1)
    cfg += _router("r-esc", "smol", ["good"], escalation={"window": 4, "min_mean_logprob": 0.0})
    cfg += _router("r-keep", "smol", ["good"], escalation={"window": 4, "min_mean_logprob": -100.0})
    s = start_hearth(cfg, tmp_session, "router-gateway")
    yield s
    s.stop()


def chat(gw: Server, model: str, content: str = "Say hello.", stream: bool = False,
         max_tokens: int = 8) -> tuple[int, dict[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "stream": stream, "temperature": 0}
    req = urllib.request.Request(gw.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, dict(r.headers), raw if stream else json.loads(raw)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def metrics(gw: Server) -> str:
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        return r.read().decode()


def test_rules_and_scores_choose_the_backend(rgw: Server) -> None:
    status, h, _ = chat(rgw, "auto", "Please write code for a stack")
    assert status == 200 and h["x-hearth-backend"] == "good" and h["x-hearth-route"] == "rule"
    assert h["x-hearth-route-reason"] == "code"
    status, h, _ = chat(rgw, "auto", "你好")
    assert h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "rule"
    status, h, _ = chat(rgw, "auto", "What is a cat?")
    assert h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "score"
    status, h, _ = chat(rgw, "auto", "Compare and analyze the trade-offs of three database designs step by step, "
                                     "explain why each fails under load, and give exactly five bullet points.")
    assert h["x-hearth-backend"] == "good" and h["x-hearth-route"] == "score"
    assert re.search(r'hearth_route_decisions_total\{router="auto",target="good",reason="rule"\} [1-9]', metrics(rgw))


def test_the_router_is_a_model_for_both_apis(rgw: Server) -> None:
    import ollama

    r = ollama.Client(host=rgw.url).chat(model="auto", messages=[{"role": "user", "content": "hi"}],
                                         options={"num_predict": 4})
    assert r.done
    ids = [m.id for m in openai.OpenAI(base_url=rgw.url + "/v1", api_key="x").models.list()]
    assert "auto" in ids


@pytest.mark.parametrize("stream", [False, True])
def test_refused_provider_falls_back(rgw: Server, stream: bool) -> None:
    status, h, _ = chat(rgw, "r-refused", stream=stream)
    assert status == 200 and h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "fallback"


def test_500_is_retried_then_falls_back(rgw: Server) -> None:
    status, h, _ = chat(rgw, "r-500")
    assert status == 200 and h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "fallback"
    text = metrics(rgw)
    assert re.search(r'hearth_fallbacks_total\{router="r-500",from="bad-500",to="smol",reason="fallback"\} [1-9]', text)


def test_429_falls_back_without_waiting(rgw: Server) -> None:
    t0 = time.monotonic()
    status, h, _ = chat(rgw, "r-429")
    assert status == 200 and h["x-hearth-backend"] == "smol" and time.monotonic() - t0 < 5


def test_hanging_provider_loses_the_first_token_race(rgw: Server) -> None:
    t0 = time.monotonic()
    status, h, body = chat(rgw, "r-hang", stream=True)
    assert status == 200 and h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "deadline"
    assert time.monotonic() - t0 < 3
    assert body.rstrip().endswith(b"data: [DONE]")


def test_slow_provider_is_raced_and_only_the_winner_streams(rgw: Server) -> None:
    status, h, body = chat(rgw, "r-slow", stream=True)
    assert status == 200 and h["x-hearth-backend"] == "smol"
    assert b"from upstream" not in body  # never text from two backends


def test_stall_after_commit_ends_with_an_error_not_mixed_text(rgw: Server) -> None:
    status, h, body = chat(rgw, "r-stall", stream=True)
    assert status == 200 and h["x-hearth-backend"] == "bad-stall"
    events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
    texts = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1] if '"choices"' in e]
    assert "".join(texts) == "Hello from"
    assert "error" in json.loads(events[-1]) and events[-1] != "[DONE]"


def test_every_backend_failing_is_a_clear_error(rgw: Server) -> None:
    status, _, body = chat(rgw, "r-all-bad")
    assert status == 502
    msg = body["error"]["message"]
    assert "refused" in msg and "bad-500" in msg and "every backend failed" in msg


def test_total_deadline(rgw: Server) -> None:
    t0 = time.monotonic()
    status, _, body = chat(rgw, "r-total")
    assert status == 504 and time.monotonic() - t0 < 3 and "1.0s" in body["error"]["message"]


def test_circuit_opens_and_is_visible(rgw: Server) -> None:
    for _ in range(3):
        status, h, _ = chat(rgw, "r-breaker")
        assert status == 200 and h["x-hearth-backend"] == "smol"
    with urllib.request.urlopen(rgw.url + "/health") as r:
        assert json.loads(r.read())["circuits"]["bad-500"] == "open"
    assert 'hearth_circuit_state{backend="bad-500"} 2' in metrics(rgw)


def test_overloaded_local_model_sheds_to_remote(rgw: Server) -> None:
    # smol-tight runs one sequence at a time. Occupy it, queue one more, then the next request is shed.
    from tests.engine.test_llama_engine import engine_value

    body = {"model": "r-shed", "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 150,
            "logit_bias": {"2": -100}}

    def send() -> tuple[int, dict[str, str]]:
        req = urllib.request.Request(rgw.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            return r.status, dict(r.headers)

    def until(what: str, value: float) -> None:
        deadline = time.monotonic() + 30
        while engine_value(rgw, "smol-tight", what) < value and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine_value(rgw, "smol-tight", what) >= value

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(send)
        until("active_sequences", 1)
        waiting = pool.submit(send)
        until("queue_depth", 1)
        status, h, _ = chat(rgw, "r-shed", "Say hi")
        assert status == 200 and (h["x-hearth-backend"], h["x-hearth-route"]) == ("good", "shed")
        for f in (running, waiting):
            s, hh = f.result()
            assert s == 200 and hh["x-hearth-backend"] == "smol-tight"
    assert re.search(r'hearth_route_decisions_total\{router="r-shed",target="good",reason="shed"\} [1-9]', metrics(rgw))


def test_low_confidence_escalates_and_high_confidence_stays(rgw: Server) -> None:
    status, h, _ = chat(rgw, "r-esc", "What is 2+2?")
    assert status == 200 and h["x-hearth-backend"] == "good" and h["x-hearth-route"] == "escalation"
    status, h, _ = chat(rgw, "r-keep", "What is 2+2?", stream=True)
    assert status == 200 and h["x-hearth-backend"] == "smol" and h["x-hearth-route"] == "default"


def test_hybrid_example_with_the_cache_on_counts_route_decisions(tmp_session: Path, upstream: Server) -> None:
    """examples/hybrid.yaml as shipped (cache on): the router's metrics hook reaches the router, not the cache."""
    text = (Path(__file__).parents[2] / "examples" / "hybrid.yaml").read_text()
    env = {"HEARTH_REMOTE_BASE_URL": f"{upstream.url}/v1", "HEARTH_REMOTE_MODEL": "smol"}
    gw = start_hearth(text, tmp_session, "hybrid-example", env=env)
    try:
        status, headers, _ = chat(gw, "auto", "hello there", max_tokens=4)
        assert status == 200 and headers["x-hearth-cache"] == "miss", headers
        decided = 'hearth_route_decisions_total{router="auto",target="qwen2.5-coder-0.5b",reason="rule"} 1'
        assert decided in metrics(gw)
        status, headers, _ = chat(gw, "auto", "hello there", max_tokens=4)
        assert (status, headers["x-hearth-cache"], headers["x-hearth-backend"]) == (200, "hit", "cache")
        assert decided in metrics(gw)  # a hit costs no routing
    finally:
        gw.stop()
