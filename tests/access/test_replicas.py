"""Two hearth processes sharing one real Redis: limits, budgets and revocations hold across replicas;
a Redis that goes away is a 503, never an open door; the SQLite store keeps working without any Redis;
and hearth will not listen beyond loopback with no key unless told so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, free_port, redis_server, start_hearth

ADMIN = "adm-replica-secret-0123456789abcdefgh"


def _config(upstream: str, keys: str, cache: str = "") -> str:
    return f"""
models:
  paid:
    kind: openai
    base_url: {upstream}/ok/v1
    model: gpt
prices:
  paid: {{input: 0, output: 1000000}}
keys:
{keys}
{cache}
"""


def call(url: str, method: str, path: str, body: Any = None, key: str | None = ADMIN) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ask(url: str, key: str, max_tokens: int = 4) -> tuple[int, Any]:
    return call(url, "POST", "/v1/chat/completions",
                {"model": "paid", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}, key)


@pytest.fixture(scope="module")
def replicas(tmp_session: Path, bad: Server) -> Iterator[tuple[Server, Server]]:
    with redis_server() as port:
        cfg = _config(bad.url, f"  store: redis\n  redis_url: redis://127.0.0.1:{port}/0")
        env = {"HEARTH_ADMIN_KEY": ADMIN}
        a = start_hearth(cfg, tmp_session, "keys-a", env=env)
        b = start_hearth(cfg, tmp_session, "keys-b", env=env)
        yield a, b
        a.stop()
        b.stop()


def new_key(url: str, **fields: Any) -> tuple[str, str]:
    status, body = call(url, "POST", "/admin/keys", {"name": "shared", **fields})
    assert status == 200, body
    return body["key"], body["id"]


def test_a_rate_limit_holds_across_replicas(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    key, _ = new_key(a.url, rpm=10)
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda i: ask((a, b)[i % 2].url, key)[0], range(40)))
    assert results.count(200) == 10 and results.count(429) == 30


def test_a_budget_is_never_overrun_by_concurrent_requests(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    key, kid = new_key(a.url, budget=20)  # 4 tokens reserved and spent per answer: 5 answers
    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(lambda i: ask((a, b)[i % 2].url, key), range(30)))
    answered = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status != 200]
    assert len(answered) == 5 and {r["error"]["code"] for r in refused} == {"insufficient_quota"}
    spend = call(b.url, "GET", f"/admin/spend?key={kid}")[1]
    row = spend["data"][0]
    used = sum(r["usage"]["completion_tokens"] for r in answered)
    assert row["spent"] == used == 20 and row["reserved"] == 0 and row["models"]["paid"]["requests"] == 5


def test_a_revocation_on_one_replica_bites_on_the_other_within_a_second(replicas: tuple[Server, Server]) -> None:
    a, b = replicas
    key, kid = new_key(a.url)
    assert ask(b.url, key)[0] == 200
    assert call(a.url, "DELETE", f"/admin/keys/{kid}")[0] == 200
    t0 = time.monotonic()
    while ask(b.url, key)[0] == 200:
        assert time.monotonic() - t0 < 1.0, "the other replica still accepts a revoked key"
        time.sleep(0.05)
    status, body = ask(b.url, key)
    assert status == 401 and "revoked" in body["error"]["message"]


def test_a_redis_that_goes_away_is_a_503_for_keyed_requests(tmp_session: Path, bad: Server) -> None:
    with redis_server() as port:
        cfg = _config(bad.url, f"  store: redis\n  redis_url: redis://127.0.0.1:{port}/0\n  redis_timeout: 0.3")
        s = start_hearth(cfg, tmp_session, "keys-redis-down", env={"HEARTH_ADMIN_KEY": ADMIN})
        try:
            key, _ = new_key(s.url, rpm=100)
            assert ask(s.url, key)[0] == 200
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
            time.sleep(0.2)
            status, body = ask(s.url, key)
            assert status == 503 and body["error"]["code"] == "key_store_unavailable"
        finally:
            s.stop()


def test_the_sqlite_store_needs_no_redis_even_when_the_cache_redis_is_dead(tmp_session: Path, bad: Server) -> None:
    cache = f"cache:\n  redis_url: redis://127.0.0.1:{free_port()}/0"
    cfg = _config(bad.url, f"  path: {tmp_session / 'replica-keys.db'}", cache)
    s = start_hearth(cfg, tmp_session, "keys-sqlite", env={"HEARTH_ADMIN_KEY": ADMIN})
    try:
        key, _ = new_key(s.url, rpm=3, budget=100)
        assert [ask(s.url, key)[0] for _ in range(4)] == [200, 200, 200, 429]
    finally:
        s.stop()


def test_the_cli_manages_keys_that_a_running_server_honours(tmp_session: Path, bad: Server) -> None:
    cfg = tmp_session / "cli-keys.yaml"
    cfg.write_text(_config(bad.url, f"  path: {tmp_session / 'cli-keys.db'}"))
    hearth = [sys.executable, "-m", "hearth", "keys"]

    def cli(*args: str) -> Any:
        out = subprocess.run([*hearth, *args, "--config", str(cfg), "--json"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    created = cli("create", "--name", "cli", "--models", "paid", "--rpm", "5", "--budget", "9")
    s = start_hearth(cfg.read_text(), tmp_session, "keys-cli")
    try:
        assert ask(s.url, created["key"])[0] == 200
        assert ask(s.url, "hk-wrong")[0] == 401
        assert cli("update", created["id"], "--rpm", "7")["rpm"] == 7
        time.sleep(1.2)  # the server writes spend at most once a second
        spend = cli("spend", created["id"])[0]
        assert spend["spent"] == 4 and spend["models"]["paid"]["requests"] == 1
        assert created["key"] not in json.dumps(cli("list"))
        cli("revoke", created["id"])
        time.sleep(0.6)
        assert ask(s.url, created["key"])[0] == 401
    finally:
        s.stop()


def test_no_listening_beyond_loopback_without_a_key_unless_insecure(tmp_session: Path, bad: Server) -> None:
    cfg = tmp_session / "open.yaml"
    cfg.write_text(_config(bad.url, f"  path: {tmp_session / 'open-keys.db'}"))
    port = str(free_port())
    serve = [sys.executable, "-m", "hearth", "serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", port]
    env = {k: v for k, v in os.environ.items() if k != "HEARTH_ADMIN_KEY"}
    out = subprocess.run(serve, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "--insecure" in out.stderr and "hearth keys create" in out.stderr
    proc = subprocess.Popen([*serve, "--insecure"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            raise AssertionError("hearth --insecure did not start")
    finally:
        proc.terminate()
        proc.wait(15)
