"""Embedding throughput with micro-batching vs one request at a time, at concurrency 16 (issue 5).

Two gateways serving only the local embedding model, run one after the other in this script:
micro-batching on (`max_batch: 64`, the default) and off (`max_batch: 1`, every request its own
forward pass). 16 clients send one text per request over HTTP (`/v1/embeddings`) in a closed loop.
Texts: BoolQ questions (query-sized, what RAG and the semantic cache embed per request) and BoolQ
passages (chunk-sized). Goal: >= 3x texts/s for micro-batching.

    .venv/bin/python benchmarks/embed_batching.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _client import free_port, wait_ready
from _data import boolq


def start(max_batch: int, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = tmp / f"embed{max_batch}.yaml"
    cfg.write_text(f"models:\n  all-minilm: {{kind: embedding, max_batch: {max_batch}}}\ncache: {{enabled: false}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "serve", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port


async def load(port: int, texts: list[str], seconds: float, concurrency: int) -> tuple[int, list[float]]:
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    lat: list[float] = []
    done = 0
    stop = time.monotonic() + seconds

    async def worker(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = k
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            async with session.post(url, json={"model": "all-minilm", "input": texts[i % len(texts)]}) as r:
                await r.read()
                assert r.status == 200, r.status
            lat.append(time.perf_counter() - t0)
            done += 1
            i += concurrency

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        # warm-up: loads the model, fills the code paths
        async with s.post(url, json={"model": "all-minilm", "input": texts[:4]}) as r:
            await r.read()
        await asyncio.gather(*(worker(k, s) for k in range(concurrency)))
    return done, lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    rows = boolq()
    sets = {"questions": [r["question"] for r in rows], "passages": list(dict.fromkeys(r["passage"] for r in rows))}
    print(f"cores: {os.cpu_count()}, concurrency {args.concurrency}, {args.seconds:.0f} s per cell, one text per request")
    print(f"{'texts':<10} {'mode':<16} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    with tempfile.TemporaryDirectory() as d:
        for name, texts in sets.items():
            rates = {}
            for max_batch, mode in ((1, "one at a time"), (64, "micro-batched")):
                proc, port = start(max_batch, Path(d))
                try:
                    n, lat = asyncio.run(load(port, texts, args.seconds, args.concurrency))
                finally:
                    proc.terminate()
                    proc.wait()
                lat.sort()
                rates[mode] = n / args.seconds
                print(f"{name:<10} {mode:<16} {rates[mode]:>9.1f} {statistics.median(lat) * 1000:>8.1f} "
                      f"{lat[int(0.99 * (len(lat) - 1))] * 1000:>8.1f}")
            print(f"{name:<10} {'ratio':<16} {rates['micro-batched'] / rates['one at a time']:>8.2f}x")


if __name__ == "__main__":
    main()
