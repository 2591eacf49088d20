"""What the Responses and Anthropic Messages routes add over chat completions, on the same model, in one run.

Two models behind one hearth: a remote one (the team's mock upstream, ../shared/bench/mock_upstream.py, which
answers at once: the figures are hearth's own cost) and the default local model (the figures are what a user
sees). Requests go one at a time, the three APIs interleaved round-robin so that drift in the machine hits
them alike; each is timed from the request to the last byte (non-streamed) or to the first content event and
the last byte (streamed), read as raw bytes with http.client so that no SDK's cost is in the figures.

The anchor is `/v1/chat/completions` on the same model in the same run; the added latency of a route is its
p50 minus the anchor's p50. Also printed: the CPU model and the local model's single-stream decode rate.

    .venv/bin/python benchmarks/dialects.py [--requests 300] [--local-requests 20]

Needs: bash ../shared/bench/setup.sh once (the mock upstream's venv).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _client import free_port, stream_chat, wait_ready
from hearth.engine.build import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
BENCH_HOME = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "hearth-bench"))
Q = "What is the capital of France? Answer in one short sentence."


def bodies(model: str, max_tokens: int, stream: bool) -> dict[str, tuple[str, dict[str, Any], bytes]]:
    """Per API: its path, its body, and the bytes that mark a content event in its stream."""
    user = [{"role": "user", "content": Q}]
    return {
        "chat": ("/v1/chat/completions", {"model": model, "messages": user, "max_tokens": max_tokens,
                                          "temperature": 0, "stream": stream}, b'"content":"'),
        # As clients send it: `store` left at its default (true), so each answer is written to SQLite too.
        "responses": ("/v1/responses", {"model": model, "input": Q, "max_output_tokens": max_tokens,
                                        "temperature": 0, "stream": stream}, b"response.output_text.delta"),
        "messages": ("/v1/messages", {"model": model, "messages": user, "max_tokens": max_tokens, "temperature": 0,
                                      "stream": stream}, b'"text_delta"'),
    }


def timed(conn: http.client.HTTPConnection, path: str, body: dict[str, Any], marker: bytes) -> tuple[float, float]:
    """(seconds to the first content event, seconds to the last byte); a non-streamed answer: both the same."""
    t0 = time.perf_counter()
    # The exact cache would answer every repeat: each request bypasses it (no-cache) and leaves nothing (no-store).
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, no-store"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {resp.read()[:300]!r}")
    first = None
    if body.get("stream"):
        while line := resp.readline():
            if first is None and marker in line:
                first = time.perf_counter() - t0
    else:
        resp.read()
    end = time.perf_counter() - t0
    return (first if first is not None else end), end


def run(port: int, model: str, n: int, max_tokens: int, stream: bool) -> dict[str, list[tuple[float, float]]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    apis = bodies(model, max_tokens, stream)
    for path, body, marker in apis.values():  # warm-up: connection, caches of each route
        timed(conn, path, body, marker)
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in apis}
    for _ in range(n):
        for name, (path, body, marker) in apis.items():
            out[name].append(timed(conn, path, body, marker))
    conn.close()
    return out


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


def table(title: str, got: dict[str, list[tuple[float, float]]], stream: bool) -> None:
    print(f"\n{title}")
    cols = "first event p50 / p90 ms | last byte p50 / p90 ms" if stream else "p50 / p90 ms"
    print(f"  {'API':<10} {cols:<48} added p50 vs chat (anchor)")
    anchor = statistics.median(e for _, e in got["chat"]) * 1000
    anchor_first = statistics.median(f for f, _ in got["chat"]) * 1000
    for name, xs in got.items():
        ends, firsts = [e for _, e in xs], [f for f, _ in xs]
        added = statistics.median(ends) * 1000 - anchor
        added_first = statistics.median(firsts) * 1000 - anchor_first
        if stream:
            figures = f"{pct(firsts, .5):7.2f} / {pct(firsts, .9):7.2f} | {pct(ends, .5):7.2f} / {pct(ends, .9):7.2f}"
            extra = f"first event {added_first:+.2f} ms, last byte {added:+.2f} ms"
        else:
            figures = f"{pct(ends, .5):7.2f} / {pct(ends, .9):7.2f}"
            extra = f"{added:+.2f} ms"
        print(f"  {name:<10} {figures:<48} {'(anchor)' if name == 'chat' else extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="per API and mode, on the remote model")
    ap.add_argument("--local-requests", type=int, default=20, help="per API and mode, on the local model")
    args = ap.parse_args()
    py = BENCH_HOME / "venv" / "bin" / "python"
    if not py.exists():
        sys.exit(f"run: bash {BENCH}/setup.sh")
    up_port, port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-dialects-"))
    cfg = tmp / "hearth.yaml"
    cfg.write_text(f"""
models:
  qwen2.5-coder-0.5b:
    kind: llamacpp
    aliases: [local]
  proxied:
    kind: openai
    base_url: http://127.0.0.1:{up_port}/v1
    model: gpt-3.5-turbo
""")
    env = {**os.environ, "HEARTH_HOME": str(tmp / "home")}
    log = (tmp / "hearth.log").open("wb")
    procs = [subprocess.Popen([str(py), str(BENCH / "mock_upstream.py"), "--port", str(up_port), "--tokens", "20"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_ready(up_port)
        procs.append(subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config",
                                       str(cfg), "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=log))
        wait_ready(port, timeout=300)
        rate = stream_chat(port, {"model": "local", "messages": [{"role": "user", "content": "Count from 1 to 100."}],
                                  "max_tokens": 96, "temperature": 0}).decode_rate()
        print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); local model single-stream decode: {rate or 0:.1f} tok/s")
        print("hearth", subprocess.run([sys.executable, "-c", "import hearth; print(hearth.__version__)"],
                                       capture_output=True, text=True).stdout.strip())
        for stream in (False, True):
            mode = "streamed" if stream else "non-streamed"
            got = run(port, "proxied", args.requests, 20, stream)
            table(f"remote model (mock upstream, 20 tokens), {mode}, {args.requests} requests per API, c=1", got,
                  stream)
            got = run(port, "local", args.local_requests, 16, stream)
            table(f"local model (Qwen2.5-Coder-0.5B), {mode}, 16 tokens, {args.local_requests} requests per API, c=1",
                  got, stream)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)
        log.close()


if __name__ == "__main__":
    main()
