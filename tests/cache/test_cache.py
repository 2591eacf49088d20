"""The response cache through real gateways, a real Redis shared by two replicas, and a dead Redis."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.conftest import Server, free_port, redis_server, start_hearth

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_server() as port:
        yield port


def _config(redis_url: str) -> str:
    return f"""
cache:
  redis_url: {redis_url}
  semantic: {{enabled: true, threshold: 0.9}}
models:
  smol:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 512
    threads: 2
"""


@pytest.fixture(scope="module")
def replicas(tmp_session: Path, redis_port: int) -> Iterator[tuple[Server, Server]]:
    a = start_hearth(_config(f"redis://127.0.0.1:{redis_port}/0"), tmp_session, "cache-a")
    b = start_hearth(_config(f"redis://127.0.0.1:{redis_port}/0"), tmp_session, "cache-b")
    yield a, b
    a.stop()
    b.stop()


def ask(gw: Server, content: str, headers: dict[str, str] | None = None, system: str = "Answer briefly.",
        **extra: Any) -> tuple[dict[str, str], dict[str, Any]]:
    body = {"model": "smol", "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
            "max_tokens": 12, "temperature": 0, **extra}
    req = urllib.request.Request(gw.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return dict(r.headers), json.loads(r.read())


def text(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["content"])


def test_exact_hit_same_answer(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    h1, b1 = ask(a, "Name a primary color.")
    h2, b2 = ask(a, "Name a primary color.")
    assert h1["x-hearth-cache"] == "miss" and h2["x-hearth-cache"] == "hit" and h2["x-hearth-backend"] == "cache"
    assert text(b1) == text(b2) and b2["usage"]["completion_tokens"] == b1["usage"]["completion_tokens"]


def test_hit_replays_as_a_stream_in_both_apis(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    _, first = ask(a, "Say a long friendly greeting to a new colleague.", max_tokens=30)
    c = openai.OpenAI(base_url=a.url + "/v1", api_key="x")
    chunks = [ev.choices[0].delta.content for ev in c.chat.completions.create(
        model="smol", stream=True, max_tokens=30, temperature=0, messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Say a long friendly greeting to a new colleague."}]) if ev.choices and ev.choices[0].delta.content]
    assert len(chunks) > 1 and "".join(chunks) == text(first)
    r = ollama.Client(host=a.url).chat(model="smol", options={"temperature": 0, "num_predict": 30}, messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Say a long friendly greeting to a new colleague."}])
    assert r.message.content == text(first)


def test_random_sampling_is_not_cached_unless_asked(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    h, _ = ask(a, "Invent a word.", temperature=0.9)
    assert "x-hearth-cache" not in h
    ask(a, "Invent a word.", temperature=0.9, hearth={"cache": {"enabled": True}})
    h, _ = ask(a, "Invent a word.", temperature=0.9, hearth={"cache": {"enabled": True}})
    assert h["x-hearth-cache"] == "hit"


def test_cache_control_headers(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    ask(a, "Count to three.")
    h, _ = ask(a, "Count to three.", headers={"Cache-Control": "no-cache"})
    assert h["x-hearth-cache"] == "miss"
    ask(a, "Count to four.", headers={"Cache-Control": "no-store"})
    h, _ = ask(a, "Count to four.")
    assert h["x-hearth-cache"] == "miss"
    ask(a, "Count to five.", headers={"x-hearth-cache-namespace": "tenant-1"})
    h, _ = ask(a, "Count to five.", headers={"x-hearth-cache-namespace": "tenant-2"})
    assert h["x-hearth-cache"] == "miss"


def test_semantic_hit_on_a_paraphrase(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    _, first = ask(a, "How do I enable dark mode in the settings?")
    h, b = ask(a, "how do i enable dark mode in settings")
    assert h["x-hearth-cache"] == "semantic" and float(h["x-hearth-cache-similarity"]) >= 0.9
    assert text(b) == text(first)


@pytest.mark.parametrize(("first", "second"), [
    ("How do I enable dark mode in the settings?", "How do I disable dark mode in the settings?"),
    ("I have 3 apples and eat one. How many are left?", "I have 4 apples and eat one. How many are left?"),
    ("如何打开手机的蓝牙功能？", "如何关闭手机的蓝牙功能？"),
])
def test_semantic_guards_refuse_different_questions(replicas: tuple[Server, Server], first: str, second: str) -> None:
    a, _ = replicas
    ask(a, first)
    h, _ = ask(a, second)
    assert h["x-hearth-cache"] == "miss"


def test_same_follow_up_in_another_conversation_is_not_served(replicas: tuple[Server, Server]) -> None:
    a, _ = replicas
    ask(a, "And what about the second one?", system="We are talking about cars.")
    h, _ = ask(a, "And what about the second one?", system="We are talking about recipes.")
    assert h["x-hearth-cache"] == "miss"


def test_replicas_share_exact_and_semantic_entries_through_redis(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    _, first = ask(a, "What is a good name for a goldfish?")
    h, again = ask(b, "What is a good name for a goldfish?")
    assert h["x-hearth-cache"] == "hit" and text(again) == text(first)
    time.sleep(1.5)  # replicas tail the semantic stream every second
    h, _ = ask(b, "whats a good name for a goldfish?")
    assert h["x-hearth-cache"] == "semantic"


def test_dead_redis_never_fails_a_request(tmp_session: Path) -> None:
    gw = start_hearth(_config(f"redis://127.0.0.1:{free_port()}/0").replace("semantic: {enabled: true", "semantic: {enabled: false"),
                      tmp_session, "cache-dead-redis")
    try:
        h1, b1 = ask(gw, "Name an ocean.")
        h2, b2 = ask(gw, "Name an ocean.")
        assert (
            h1["x-hearth-cache"] == "miss" and h2["x-hearth-cache"] == "hit" and text(b1) == text(b2)
        )  # L1 still works
        with urllib.request.urlopen(gw.url + "/admin/cache") as r:
            assert json.loads(r.read())["redis_errors"] > 0
        with urllib.request.urlopen(gw.url + "/metrics") as r:
            assert 'hearth_cache_value{what="redis_errors"}' in r.read().decode()
    finally:
        gw.stop()


def test_cache_cli(replicas: tuple[Server, Server]) -> None:
    import sys

    a, _ = replicas
    out = subprocess.run([sys.executable, "-m", "hearth", "cache", "stats", "--url", a.url], capture_output=True,
                         text=True, check=True)
    stats = json.loads(out.stdout)
    assert stats["hit"] >= 1 and stats["semantic"]["entries"] >= 1
    out = subprocess.run([sys.executable, "-m", "hearth", "cache", "clear", "--url", a.url], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout)["cleared"]["memory_entries"] >= 1
    h, _ = ask(a, "Name a primary color.")
    assert h["x-hearth-cache"] == "miss"
