"""Soak: a gateway under mixed traffic for a long time, sampled every 30 s for memory, file descriptors,
latency and errors (issue 17: RSS growth <= 5% after warm-up, flat descriptors, 0 errors).

One hearth process serves: a local model (SmolLM2-135M, 2 threads), a remote model (a real HTTP server on
loopback that answers at once: tests/support/bad_upstream.py /ok/), the embedding model, and a knowledge base.
32 clients loop over a mix: local chat (streamed and not, max 16 tokens), remote chat (streamed and not),
repeated questions at temperature 0 (cache hits), embeddings, RAG search. Every request must succeed.

Writes `benchmarks/results/soak.csv` (one row per sample) and `soak.png` (RSS and descriptors over time).

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 32] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _client import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = ["What is the capital of France?", "Name three colours.", "What is 2 + 2?", "Say hello in Spanish.",
             "Why is the sky blue?", "Give me a fruit.", "What day comes after Monday?", "Spell cat."]


def rss_and_fds(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


class Stats:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.ok = 0
        self.errors: list[str] = []

    def take(self) -> tuple[list[float], int, list[str]]:
        out = (self.lat, self.ok, self.errors)
        self.lat, self.ok, self.errors = [], 0, []
        return out


async def one(session: aiohttp.ClientSession, base: str, rng: random.Random) -> None:
    kind = rng.choices(["local", "local-stream", "remote", "remote-stream", "cached", "embed", "search"],
                       [2, 2, 3, 3, 3, 2, 2])[0]
    q = rng.choice(QUESTIONS)
    if kind == "embed":
        url, body = "/v1/embeddings", {"model": "all-minilm", "input": [q, f"{q} {rng.random()}"]}
    elif kind == "search":
        url, body = "/v1/rag/soak/search", {"query": q, "top_k": 5}
    else:
        model = "smol" if kind.startswith("local") else "remote"
        body = {"model": model, "messages": [{"role": "user", "content": q if kind == "cached" else f"{q} ({rng.random():.6f})"}],
                "max_tokens": 16, "stream": kind.endswith("stream")}
        if kind == "cached":
            body["temperature"] = 0
        url = "/v1/chat/completions"
    async with session.post(base + url, json=body) as r:
        raw = await r.read()
        if r.status != 200:
            raise RuntimeError(f"{kind}: HTTP {r.status}: {raw[:200]!r}")
        if body.get("stream") and b"[DONE]" not in raw:
            raise RuntimeError(f"{kind}: the stream did not finish: {raw[-200:]!r}")


async def client(session: aiohttp.ClientSession, base: str, stats: Stats, stop: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            await one(session, base, rng)
            stats.ok += 1
            stats.lat.append(time.perf_counter() - t0)
        except Exception as e:
            stats.errors.append(repr(e)[:300])


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    up_port, port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "bad_upstream.py"), str(up_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = tmp / "soak.yaml"
    cfg.write_text(f"""cache: {{semantic: {{enabled: true}}}}
rag: {{path: {tmp / 'rag'}}}
conversation: {{quality: {{sample: 0.1}}}}
models:
  smol: {{kind: llamacpp, path: "builtin:smollm2-135m", n_ctx: 2048, threads: 2, max_sequences: 4, max_queue: 64}}
  remote: {{kind: openai, base_url: "http://127.0.0.1:{up_port}/ok/v1", model: x}}
""")
    env = {**os.environ, "HEARTH_HOME": str(tmp / "home")}
    (tmp / "home").mkdir()
    real = Path(os.environ.get("HEARTH_HOME") or Path.home() / ".cache" / "hearth") / "models"
    (tmp / "home" / "models").symlink_to(real, target_is_directory=True)
    gw = subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config", str(cfg),
                           "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "gw.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        wait_ready(port, timeout=300)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            docs = [{"source": f"doc{i}.md", "text": f"# Topic {i}\n\n" + " ".join(QUESTIONS) * 3} for i in range(50)]
            async with s.post(base + "/v1/rag/soak/documents", json={"documents": docs}) as r:
                assert r.status == 200, await r.text()
            stats = Stats()
            t_start = time.monotonic()
            stop = t_start + args.minutes * 60
            tasks = [asyncio.create_task(client(s, base, stats, stop, i)) for i in range(args.clients)]
            print(f"{'min':>5} {'rss MB':>8} {'fds':>5} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}", flush=True)
            next_sample = t_start + args.interval
            while time.monotonic() < stop:
                await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
                next_sample += args.interval
                lat, ok, errors = stats.take()
                rss, fds = rss_and_fds(gw.pid)
                lat.sort()
                row = {"minute": round((time.monotonic() - t_start) / 60, 2), "rss_mb": round(rss, 1), "fds": fds,
                       "requests_per_s": round(ok / args.interval, 2),
                       "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
                       "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
                       "errors": len(errors)}
                rows.append(row)
                print(f"{row['minute']:>5} {row['rss_mb']:>8} {row['fds']:>5} {row['requests_per_s']:>7} "
                      f"{row['p50_ms']!s:>8} {row['p99_ms']!s:>8} {row['errors']:>7}", flush=True)
                for e in errors[:3]:
                    print("   error:", e, flush=True)
            await asyncio.gather(*tasks)
    finally:
        gw.terminate()
        gw.wait(30)
        upstream.terminate()
        upstream.wait(10)
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "soak.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    after = [r for r in rows if r["minute"] >= args.warmup] or rows
    first, last = after[0], after[-1]
    peak = max(r["rss_mb"] for r in after)
    total = sum(r["requests_per_s"] * args.interval for r in rows)
    print(f"\nafter warm-up ({args.warmup} min): RSS {first['rss_mb']} -> {last['rss_mb']} MB "
          f"({(last['rss_mb'] / first['rss_mb'] - 1) * 100:+.1f}%), peak {peak} MB; descriptors {first['fds']} -> "
          f"{last['fds']} (max {max(r['fds'] for r in after)}); requests {total:.0f}; "
          f"errors {sum(r['errors'] for r in rows)}")
    print(json.dumps({"rows": len(rows)}))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot([r["minute"] for r in rows], [r["rss_mb"] for r in rows], label="RSS (MB)", color="tab:blue")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.axvline(args.warmup, color="grey", linestyle=":", label="end of warm-up")
    ax2 = ax.twinx()
    ax2.plot([r["minute"] for r in rows], [r["fds"] for r in rows], label="open descriptors", color="tab:orange")
    ax2.set_ylabel("open file descriptors")
    ax.set_ylim(0, peak * 1.2)
    ax2.set_ylim(0, max(r["fds"] for r in rows) * 1.5)
    fig.legend(loc="center right")
    ax.set_title(f"hearth soak: {args.clients} clients, mixed traffic")
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=100)
    print(f"wrote {RESULTS / 'soak.csv'} and {RESULTS / 'soak.png'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--interval", type=float, default=30)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
