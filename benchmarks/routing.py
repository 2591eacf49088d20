"""Hybrid routing figures (issue 3), each against its anchor in the same run.

1. Decision time of the router policy (rules + complexity score) on a mixed prompt set: p50 / p99.
2. Mixed prompts through the router `auto` (local Qwen 0.5B + a remote mock with 1.5 s to first token):
   TTFT p50 and the share served locally; anchor: the same prompts sent to the remote model directly.
3. Failover: a primary that refuses connections, and one that hangs (first-token deadline 0.5 s), both
   falling back to the local model: time to first token p50; anchor: the local model directly.
4. Overload: 16 concurrent long prompts on the router with shedding on vs off: TTFT p50 / p99.

    .venv/bin/python benchmarks/routing.py          # needs ../shared/bench/setup.sh (its venv runs the mock)
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _client import free_port, stream_chat, wait_ready  # noqa: E402

BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
BENCH_PY = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "hearth-bench")) / "venv" / "bin" / "python"

EASY = ["hi", "你好", "thanks!", "谢谢你", "What is the capital of France?", "早上好", "Who are you?",
        "今天天气怎么样？", "How are you?", "What color is the sky?"]
HARD = ["Write a Python function that merges two sorted lists.", "帮我写一个快速排序的代码",
        "Translate into French: the weather is nice today.", "把这句话翻译成英文：我喜欢编程。",
        "Analyze the pros and cons of microservices for a small team.", "比较一下TCP和UDP的优缺点",
        "Write a short story about a robot learning to paint.", "Debug this: for i in range(10) print(i)",
        "Explain step by step how to solve 3x + 7 = 22.", "写一篇关于春天的短文"]
LONG = "Summarize the following notes. " + " ".join(
    f"Note {i}: the service handled {i * 7} requests." for i in range(40)
)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def ttft(port: int, model: str, prompt: str, max_tokens: int = 8) -> tuple[float, str, str]:
    r = stream_chat(port, {"model": model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": max_tokens, "temperature": 0})
    return (r.ttft if r.ttft is not None else float("nan")), r.headers.get("x-hearth-backend", ""), \
        r.headers.get("x-hearth-route", "")


def decision_times() -> tuple[float, float]:
    from hearth.config import load_config
    from hearth.core.types import ChatRequest, Message
    from hearth.routing.policy import RoutingPolicy

    cfg = load_config(ROOT / "examples" / "hybrid.yaml", env={})
    policy = RoutingPolicy(cfg.models["auto"], is_local=lambda n: n == "qwen2.5-coder-0.5b")  # type: ignore[arg-type]
    reqs = [ChatRequest(model="auto", messages=[Message("system", "You are helpful."), Message("user", p)])
            for p in [*EASY, *HARD, LONG]]
    times = []
    for _ in range(300):
        for r in reqs:
            t0 = time.perf_counter()
            policy.decide(r)
            times.append(time.perf_counter() - t0)
    return pct(times, 50), pct(times, 99)


def main() -> None:
    p50, p99 = decision_times()
    print("1. router decision time (rules + complexity score), 6,300 decisions over a mixed prompt set")
    print(f"   p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us (goal p99 < 1000 us)\n")

    tmp = Path(tempfile.mkdtemp())
    mock_port, bad_port, port = free_port(), free_port(), free_port()
    procs = [
        subprocess.Popen([str(BENCH_PY), str(BENCH / "mock_upstream.py"), "--port", str(mock_port), "--ttft-ms",
                          "1500", "--tokens", "20"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "bad_upstream.py"), str(bad_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    from hearth.model_files import resolve_model_path

    model = resolve_model_path("builtin:qwen2.5-coder-0.5b")
    routes = (ROOT / "examples" / "hybrid.yaml").read_text().split("    rules:\n", 1)[1].split("    tiers:")[0]
    tiers = "    tiers:\n      - {max_score: 0.45, target: local}\n      - {max_score: 1.0, target: remote}\n"
    router = ("    kind: router\n    default: local\n    health_interval: null\n    rules:\n"
              + routes.replace("qwen2.5-coder-0.5b", "local") + tiers
              + "    fallbacks: {local: [remote], remote: [local]}\n")
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"""models:
  local: {{kind: llamacpp, path: {model}, threads: 2, max_sequences: 4, max_queue: 32}}
  remote: {{kind: openai, base_url: "http://127.0.0.1:{mock_port}/v1", model: gpt-3.5-turbo}}
  refused: {{kind: openai, base_url: "http://127.0.0.1:{free_port()}/v1", timeouts: {{connect: 1}}}}
  hang: {{kind: openai, base_url: "http://127.0.0.1:{bad_port}/hang/v1", timeouts: {{first_token: 30}}}}
  auto:
{router}    shed_queue_depth: 1
  auto-noshed:
{router}    shed_queue_depth: null
  load-shed: {{kind: router, default: local, fallbacks: {{local: [remote]}}, shed_queue_depth: 1, health_interval: null}}
  load-noshed: {{kind: router, default: local, fallbacks: {{local: [remote]}}, shed_queue_depth: null, health_interval: null}}
  fo-refused: {{kind: router, default: refused, fallbacks: {{refused: [local]}}, health_interval: null}}
  fo-hang: {{kind: router, default: hang, fallbacks: {{hang: [local]}}, ttft_deadline: 0.5, health_interval: null}}
""")
    procs.append(subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config",
                                   str(cfg), "--port", str(port)]))
    try:
        wait_ready(mock_port, "/health")
        wait_ready(port, "/health")
        ttft(port, "local", "warm up")
        prompts = [*EASY, *HARD]
        routed = [ttft(port, "auto", p) for p in prompts]
        direct = [ttft(port, "remote", p) for p in prompts]
        local_share = sum(1 for _, b, _ in routed if b == "local") / len(routed)
        print("2. mixed prompt set (10 easy, 10 hard), remote mock with 1.5 s to first token")
        print(
            f"   router auto: TTFT p50 {statistics.median(t for t, _, _ in routed) * 1000:.0f} ms, "
            f"served locally {local_share:.0%} "
            f"(easy local {sum(1 for (_, b, _), p in zip(routed, prompts, strict=True) if b == 'local' and p in EASY)}/10, "
            f"hard local {sum(1 for (_, b, _), p in zip(routed, prompts, strict=True) if b == 'local' and p in HARD)}/10)"
        )
        print(f"   anchor, all remote: TTFT p50 {statistics.median(t for t, _, _ in direct) * 1000:.0f} ms\n")

        base = [ttft(port, "local", f"Say hi #{i}")[0] for i in range(10)]
        refused = [ttft(port, "fo-refused", f"Say hi #{i}") for i in range(10)]
        hang = [ttft(port, "fo-hang", f"Say hi #{i}") for i in range(10)]
        print("3. failover to the local model, time to first token p50")
        print(f"   anchor, local directly: {statistics.median(base) * 1000:.0f} ms")
        print(
            f"   primary refuses connections: {statistics.median(t for t, _, _ in refused) * 1000:.0f} ms "
            f"(routes: {sorted({r for _, _, r in refused})})"
        )
        print(f"   primary hangs, first-token deadline 0.5 s: {statistics.median(t for t, _, _ in hang) * 1000:.0f} ms "
              f"(routes: {sorted({r for _, _, r in hang})})\n")

        print("4. 16 concurrent long prompts (~400 tokens) on a router whose default is the local model")
        for name in ("load-noshed", "load-shed"):
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                res = list(pool.map(lambda i, n=name: ttft(port, n, f"[{n} {i}] {LONG}", 16), range(16)))
            ts = [t for t, _, _ in res]
            shed = sum(1 for _, _, r in res if r == "shed")
            print(f"   {'shedding on ' if name == 'load-shed' else 'shedding off'}: TTFT p50 {pct(ts, 50) * 1000:.0f} ms, "
                  f"p99 {pct(ts, 99) * 1000:.0f} ms, shed to remote {shed}/16")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
