"""What API keys, limits and budgets add to a request: hearth with keys on vs off, in the same run.

Two figures, both with the in-memory meter (SQLite keys, the default) and, when `redis-server` is installed,
with keys and limits in Redis (what replicas share):
- the access check alone, in-process: authenticate + admit (rpm, tpm, parallel, budget) + settle, p50 / p99;
- whole HTTP requests (`POST /v1/chat/completions`, non-streaming, keep-alive) against a gateway whose
  model is an instant scripted backend, so the figure is the gateway's own cost: p50 with keys on minus p50
  with keys off. Rounds alternate between the gateways so that machine noise hits both alike.

    .venv/bin/python benchmarks/auth_overhead.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from hearth.access import Access, MemoryMeter, PriceBook, SqliteKeyStore, open_access
from hearth.access.keys import KeySpec, mint
from hearth.assemble import assemble
from hearth.config import load_config
from hearth.core.types import ChatRequest, Message
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running

CONFIG = """
models:
  fast:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: m
prices:
  fast: {{input: 0.15, output: 0.6}}
keys:
  path: {db}
{redis}
observe:
  request_log: false
"""
LIMITS = {"rpm": 10**9, "tpm": 10**12, "max_parallel": 1000, "budget": 1e9, "budget_period": "30d"}


@contextlib.contextmanager
def redis() -> Iterator[str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def check_alone(access: Access, n: int) -> list[float]:
    """authenticate + admit + settle, as one request does, in microseconds."""
    key, secret = mint(KeySpec(name="bench", **LIMITS))  # type: ignore[arg-type]
    await access.store.put(key)
    req = ChatRequest(model="fast", messages=[Message("user", "What is the capital of France?")])
    req.sampling.max_tokens = 64
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = await access.authenticate(secret)
        t = await access.admit_chat(p, req, ("fast",))
        assert t is not None
        await access.settle(t, "fast", 12, 8)
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def http_times(url: str, key: str | None, n: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    body = json.dumps({"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, headers)
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, r.status
    conn.close()
    return out


def gateway(tmp: Path, name: str, redis_url: str | None, admin: str | None) -> Any:
    f = tmp / f"{name}.yaml"
    store = f"  store: redis\n  redis_url: {redis_url}" if redis_url else ""
    f.write_text(CONFIG.format(db=tmp / f"{name}.db", redis=store))
    cfg = load_config(f, {})

    def make() -> web.Application:
        assembly = assemble(cfg, leaves={"fast": FunctionBackend("fast", lambda r: Reply("ok", usage=(5, 1)))})
        return create_app(cfg, assembly, open_access(cfg, env={"HEARTH_ADMIN_KEY": admin} if admin else {}))

    return running(make)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-auth-"))
    with redis() as redis_url:
        print(f"access check alone, {a.requests} requests (authenticate + admit + settle):")

        async def alone(name: str, access: Access) -> None:
            times = await check_alone(access, a.requests)
            await access.close()
            print(f"  {name:24} p50 {pct(times, 0.5):7.1f} us   p99 {pct(times, 0.99):7.1f} us")

        cfg = load_config(None, {})
        store = SqliteKeyStore(tmp / "alone.db")
        asyncio.run(alone("memory (sqlite keys)", Access(store, MemoryMeter(ledger=store), PriceBook(cfg))))
        if redis_url:
            from hearth.access.redis_store import RedisAccess

            async def with_redis() -> None:
                shared = RedisAccess(redis_url)
                await alone("redis", Access(shared, shared, PriceBook(cfg)))

            asyncio.run(with_redis())

        print(f"\nwhole HTTP requests, {a.rounds} rounds x {a.requests // a.rounds} per gateway, instant model:")
        results: dict[str, list[float]] = {}
        with contextlib.ExitStack() as stack:
            targets: dict[str, tuple[str, str | None]] = {"keys off": (stack.enter_context(
                gateway(tmp, "off", None, None)), None)}
            for name, r in (("keys on, memory", None), ("keys on, redis", redis_url)):
                if name.endswith("redis") and not r:
                    continue
                url = stack.enter_context(gateway(tmp, name.replace(" ", "-").replace(",", ""), r, "adm"))
                req = http.client.HTTPConnection(*url.removeprefix("http://").split(":"))
                req.request("POST", "/admin/keys", json.dumps({"name": "bench", **LIMITS}),
                            {"Authorization": "Bearer adm"})
                targets[name] = (url, json.loads(req.getresponse().read())["key"])
            for url, key in targets.values():
                http_times(url, key, 200)  # warm-up
            for _ in range(a.rounds):
                for name, (url, key) in targets.items():
                    results.setdefault(name, []).extend(http_times(url, key, a.requests // a.rounds))
        base = statistics.median(results["keys off"])
        print(f"  {'target':18} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10}")
        for name, times in results.items():
            p50 = statistics.median(times)
            added = "(anchor)" if name == "keys off" else f"{(p50 - base) * 1000:+7.0f} us"
            print(f"  {name:18} {p50:8.3f} {pct(times, 0.99):8.3f} {added:>10}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
