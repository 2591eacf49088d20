"""Many conversations at once: hearth's batched engine vs `llama_cpp.server`, in one run (issue 7).

Figures, per target:
- 1, 4 and 8 concurrent short chats (different questions, released together, each forced to 64 tokens):
  TTFT p50 / max from the release, streams completed, aggregate tok/s (all tokens / wall time), and
  aggregate / the one-stream rate. Goal at 4: TTFT max <= 1 s, aggregate >= 1.5x one stream.
- A1 B1 A2 B2 with two different ~500-token system prompts: A2 TTFT / A1 TTFT (goal <= 0.3) and the
  server's RSS growth over the flow (goal <= 1 GB).

Targets: hearth; `llama_cpp.server` with its defaults (a new request interrupts the running one), with
`--interrupt_requests False`, and with `--cache True` (its RAM prefix cache). Same model, 2 threads,
n_ctx 4096, same prompts (../shared/local-anchor/common.py), greedy sampling, all on 127.0.0.1.

    .venv/bin/pip install 'llama-cpp-python[server]==0.3.36'   # the anchor's server deps, once
    .venv/bin/python benchmarks/concurrency_vs_server.py [--rounds 3] [--targets hearth,server,server-noint,server-cache]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = Path(os.environ.get("ANCHOR_DIR", ROOT.parent / "shared" / "local-anchor"))
sys.path.insert(0, str(ANCHOR))
from common import CONC_USERS, EOS_IDS, LONG_SYS_A, LONG_SYS_B, QA, QB, SYS_SHORT  # noqa: E402

from _client import stream_chat  # noqa: E402

USERS = [*CONC_USERS, "用一句话介绍上海。", "What is a CPU? One sentence.", "Name three colors.", "什么是TCP？一句话。"]
GREEDY = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0, "seed": 0}
FORCE = 64


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Target:
    def __init__(self, name: str, model: str, port: int) -> None:
        self.name, self.port = name, port
        tmp = tempfile.mkdtemp()
        if name == "hearth":
            cfg = Path(tmp) / "c.yaml"
            cfg.write_text(f"models:\n  m:\n    kind: llamacpp\n    path: {model}\n    n_ctx: 4096\n    threads: 2\n"
                           "    max_sequences: 8\n    prefix_slots: 12\n")
            cmd = [sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config", str(cfg),
                   "--port", str(port)]
        else:
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_threads", "2", "--n_ctx", "4096",
                   "--host", "127.0.0.1", "--port", str(port)]
            if name == "server-noint":
                cmd += ["--interrupt_requests", "False"]
            if name == "server-cache":
                cmd += ["--cache", "True"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health" if name == "hearth" else "/v1/models")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{name} did not start")

    def chat(self, msgs: list[dict[str, str]], max_tokens: int, force: bool, t0: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "m", "messages": msgs, "max_tokens": max_tokens, "stream": True, **GREEDY}
        if force:
            body["logit_bias"] = {str(i): -100 for i in EOS_IDS}
        r = stream_chat(self.port, body, t0=t0)
        end = (r.stamps[-1] if r.stamps else time.perf_counter()) - r.t0
        return {"ttft": r.ttft, "end": end, "n": len(r.stamps), "finish": r.finish, "text": r.text}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def concurrent(t: Target, n: int, rnd: int) -> dict[str, Any]:
    msgs = [[{"role": "system", "content": f"[r{rnd}] {SYS_SHORT}"}, {"role": "user", "content": USERS[i]}]
            for i in range(n)]
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    t0 = 0.0

    def run(i: int) -> None:
        barrier.wait()
        out[i] = t.chat(msgs[i], FORCE, True, t0=t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join()
    ttfts = [r["ttft"] for r in out if r["ttft"] is not None]
    complete = sum(1 for r in out if r["finish"] == "length")  # forced to 64 tokens: anything else was cut
    wall = max(r["end"] for r in out)
    return {"ttft_p50": statistics.median(ttfts) if ttfts else None, "ttft_max": max(ttfts) if ttfts else None,
            "complete": complete, "tokens": sum(r["n"] for r in out), "agg": sum(r["n"] for r in out) / wall}


def interleaved(t: Target, rnd: int) -> dict[str, float]:
    def conv(sys_prompt: str, q1: str, a1: str | None = None, q2: str | None = None) -> list[dict[str, str]]:
        m = [{"role": "system", "content": f"[i{rnd}] {sys_prompt}"}, {"role": "user", "content": q1}]
        return m + ([{"role": "assistant", "content": a1}, {"role": "user", "content": q2}] if a1 and q2 else [])

    rss0 = rss_mb(t.proc.pid)
    (qa1, qa2), (qb1, qb2) = QA[rnd % len(QA)], QB[rnd % len(QB)]
    a1 = t.chat(conv(LONG_SYS_A, qa1), 64, False)
    b1 = t.chat(conv(LONG_SYS_B, qb1), 64, False)
    a2 = t.chat(conv(LONG_SYS_A, qa1, a1["text"], qa2), 64, False)
    t.chat(conv(LONG_SYS_B, qb1, b1["text"], qb2), 64, False)
    return {
        "A1": a1["ttft"],
        "A2": a2["ttft"],
        "ratio": a2["ttft"] / a1["ttft"],
        "rss_growth": rss_mb(t.proc.pid) - rss0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default="hearth,server,server-noint,server-cache")
    ap.add_argument("--conc", default="1,4,8")
    a = ap.parse_args()
    from hearth.model_files import resolve_model_path

    model = str(resolve_model_path("builtin:qwen2.5-coder-0.5b"))
    concs = [int(c) for c in a.conc.split(",")]
    rows: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(a.targets.split(",")):
        t = Target(name, model, 18700 + i)
        try:
            rss_start = rss_mb(t.proc.pid)
            t.chat([{"role": "user", "content": "warm up"}], 4, False)
            res: dict[str, Any] = {}
            if name != "server-cache":  # the cache changes nothing for distinct short chats
                for n in concs:
                    runs = [concurrent(t, n, 1000 * n + r) for r in range(a.rounds)]
                    res[n] = {k: statistics.median([r[k] for r in runs if r[k] is not None] or [0]) for k in runs[0]}
            inter = [interleaved(t, r) for r in range(a.rounds)]
            res["inter"] = {k: statistics.median([x[k] for x in inter]) for k in inter[0]}
            res["rss_end"] = rss_mb(t.proc.pid) - rss_start
            rows[name] = res
        finally:
            t.close()
    print("Qwen2.5-Coder-0.5B Q4_K_M, 2 threads; medians over", a.rounds, "rounds; 64 forced tokens per stream")
    print(
        f"{'target':<14}{'conc':>5}{'TTFT p50 ms':>13}{'TTFT max ms':>13}{'complete':>10}{'agg tok/s':>11}{'vs 1 stream':>12}"
    )
    for name, res in rows.items():
        one = res.get(1, {}).get("agg")
        for n in concs:
            if n in res:
                r = res[n]
                rel = f"{r['agg'] / one:.2f}x" if one else "-"
                print(f"{name:<14}{n:>5}{r['ttft_p50'] * 1000:>13.0f}{r['ttft_max'] * 1000:>13.0f}"
                      f"{r['complete']:>7.0f}/{n:<2}{r['agg']:>11.1f}{rel:>12}")
    print(
        f"\n{'target':<14}{'A1 ms':>9}{'A2 ms':>9}{'A2/A1':>8}{'RSS growth MB (flow)':>22}{'RSS growth MB (all)':>21}"
    )
    for name, res in rows.items():
        r = res["inter"]
        print(f"{name:<14}{r['A1'] * 1000:>9.0f}{r['A2'] * 1000:>9.0f}{r['ratio']:>8.2f}{r['rss_growth']:>22.0f}"
              f"{res['rss_end']:>21.0f}")


if __name__ == "__main__":
    main()
