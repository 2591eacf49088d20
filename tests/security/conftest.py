"""A keyed gateway as a hostile tenant meets it, and the yardsticks every attack is held to.

One hearth process for the module (loopback, a real admin key, tenant keys made through `/admin/keys`): the
default local model (`local`), SmolLM2 for cheap generations, a remote provider at an address with
`user:password@` that answers 500 repeating the key it was sent, knowledge bases in the local store, and the
response cache on. `under_attack` runs an attack in threads while another tenant keeps asking a 3-token
question and polling `/health`, and checks the issue's bounds: the victim answers within 2x its quiet time
(plus a small allowance for these noisy 2-core machines), `/health` within 100 ms, and the process's RSS grows
by less than 500 MB.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_hearth

ADMIN = "hk-security-suite-admin-0123456789abcdef"
RSS_LIMIT = 500 * 1024 * 1024
HEALTH_LIMIT = 0.1


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


def call(url: str, method: str, path: str, body: Any = None, key: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 120) -> Reply:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None and not req.has_header("Content-type"):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status, h = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, h = e.read(), e.code, dict(e.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(status, h, parsed, raw)


def chat(url: str, key: str, content: str, model: str = "local", **extra: Any) -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 3,
            "temperature": 0, **extra}
    return call(url, "POST", "/v1/chat/completions", body, key)


@dataclass
class Gateway:
    server: Server
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def key(self, name: str, **spec: Any) -> str:
        """A tenant key (made once per name) with the given limits, scopes and models."""
        if name not in self.keys:
            r = call(self.url, "POST", "/admin/keys", {"name": name, **spec}, ADMIN)
            assert r.status == 200, r.body
            self.keys[name] = r.body["key"]
        return self.keys[name]

    def rss(self) -> int:
        for line in Path(f"/proc/{self.server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, bad: Server) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("security")
    host = bad.url.removeprefix("http://")
    config = f"""
server:
  max_body_bytes: 4194304
keys:
  path: {tmp / "keys.db"}
rag:
  path: {tmp / "rag"}
  embedding_model: all-minilm
models:
  local:
    kind: llamacpp
    threads: 2
    n_ctx: 4096
  smol:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 1024
    threads: 2
  leaky:
    kind: openai
    base_url: http://operator:hunter2@{host}/echokey/v1?token=abc
    model: bad
    api_key_env: SECURITY_PROVIDER_KEY
    timeouts: {{connect: 1.0, first_token: 5, total: 10}}
"""
    s = start_hearth(config, tmp, "security", env={"HEARTH_ADMIN_KEY": ADMIN,
                                                    "SECURITY_PROVIDER_KEY": "sk-provider-secret-42"})
    yield Gateway(s)
    s.stop()


@dataclass
class Attack:
    """What the victim saw while an attack ran."""

    quiet: float
    victim: list[float]
    health: list[float]
    rss_growth: int
    results: list[Any]


# Polls /health every 50 ms until its stdin closes; prints each answer's time.
_WATCH = """
import sys, threading, time, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).read()  # the first call sets urllib up: not timed
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    t0 = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        r.read()
    print(time.perf_counter() - t0, flush=True)
    time.sleep(0.05)
"""


def _victim_question(g: Gateway, key: str) -> float:
    t0 = time.perf_counter()
    # Never from the cache: the victim's question is answered by the model each time.
    r = chat(g.url, key, "Say hi.", hearth={"cache": {"no_cache": True, "no_store": True}})
    assert r.status == 200, r.body
    return time.perf_counter() - t0


def under_attack(g: Gateway, attack: Callable[[], Any], *, threads: int = 1, min_seconds: float = 0.0) -> Attack:
    """Run `attack` in `threads` threads (each repeating it until `min_seconds` passed, at least once) while a
    victim tenant asks a 3-token question over and over and polls /health; then check the bounds."""
    victim_key = g.key("victim")
    for _ in range(2):
        _victim_question(g, victim_key)  # warm: the prompt's prefix is cached, as a steady client's is
    quiet = statistics.median(_victim_question(g, victim_key) for _ in range(3))
    rss0 = g.rss()
    results: list[Any] = []
    stop = threading.Event()
    peak = [rss0]

    def attacker() -> None:
        t_end = time.monotonic() + min_seconds
        while True:
            results.append(attack())
            if time.monotonic() >= t_end:
                return

    workers = [threading.Thread(target=attacker) for _ in range(threads)]
    victim: list[float] = []

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], g.rss())
            time.sleep(0.05)

    # /health is timed from a process of its own: threads of this one would share its GIL with the attackers.
    watcher = subprocess.Popen([sys.executable, "-c", _WATCH, g.url + "/health"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    rss_watch = threading.Thread(target=watch)
    for w in workers:
        w.start()
    rss_watch.start()
    time.sleep(0.2)  # the attack is under way before the victim asks
    while any(w.is_alive() for w in workers) or not victim:
        victim.append(_victim_question(g, victim_key))
    for w in workers:
        w.join()
    stop.set()
    rss_watch.join()
    out_text, _ = watcher.communicate("", timeout=30)
    health = [float(x) for x in out_text.split()]
    out = Attack(quiet, victim, health, peak[0] - rss0, results)
    slowest = max(out.victim)
    print(f"\n[under attack] victim quiet {quiet * 1000:.0f} ms, worst {slowest * 1000:.0f} ms over {len(victim)} "
          f"answers; /health worst {max(health) * 1000:.1f} ms over {len(health)}; RSS +{out.rss_growth / 2**20:.0f} MB")
    # 2x the quiet time, plus 0.25 s: on 2 shared cores one scheduling hiccup is that long.
    assert slowest <= 2 * quiet + 0.25, f"the victim waited {slowest:.2f} s (quiet: {quiet:.2f} s): {out.victim}"
    assert max(out.health) <= HEALTH_LIMIT, f"/health took {max(out.health) * 1000:.0f} ms"
    assert out.rss_growth <= RSS_LIMIT, f"RSS grew by {out.rss_growth / 2**20:.0f} MB"
    return out
