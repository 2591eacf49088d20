"""CPU per proxied request, by stage: where a pure proxy's time goes with the shipped defaults.

Starts the team harness's mock upstream and hearth (no local model, as `proxy_vs_litellm.sh` configures it)
under cProfile, drives it with the harness's load generator, stops it, and splits the profile's own time
(tottime) by the part of hearth (or of its libraries) each function belongs to. The figures are µs per
request under the profiler, which inflates every Python call about alike: read them as shares, and the
harness's `CPU ms per request` (printed by proxy_vs_litellm.sh) as the absolute figure.

    .venv/bin/python benchmarks/proxy_stages.py [--requests 3000] [--concurrency 16] [--stream]

Needs `bash ../shared/bench/setup.sh` once (the harness venv).
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
BENCH_PY = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "hearth-bench")) / "venv" / "bin" / "python"

# (name, path fragments of the functions that count toward it), first match wins.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("api: dialect, body parsing, SSE", ("hearth/api/openai", "hearth/api/common", "hearth/api/schemas",
                                         "hearth/api/options", "pydantic")),
    ("access: keys, limits, request log", ("hearth/access", "hearth/api/gate")),
    ("intent and conversation", ("hearth/convo",)),
    ("cache", ("hearth/cache",)),
    ("speech, structured, routing", ("hearth/speech", "hearth/structured", "hearth/routing")),
    ("pipeline and metrics", ("hearth/core", "hearth/metrics", "hearth/tracing")),
    ("provider client (hearth's HTTP/1.1 pool, the wire format)", ("hearth/backends",)),
    ("aiohttp (the server)", ("aiohttp", "multidict", "yarl", "propcache")),
    ("json (orjson, json)", ("orjson", "json/")),
    ("logging", ("logging/",)),
    ("asyncio and sockets", ("asyncio", "selectors", "socket", "ssl")),
]


_PROFILED = """
import cProfile, runpy, signal, sys
path = sys.argv.pop(1)
prof = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, lambda *_: (prof.disable(), prof.dump_stats(path)))
sys.argv[0] = "hearth"
runpy.run_module("hearth", run_name="__main__")
"""


def group_of(path: str) -> str:
    for name, parts in GROUPS:
        if any(p in path for p in parts):
            return name
    if path.startswith("~") or path == "":
        return "builtins"
    return "other"


def wait(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args()
    if not BENCH_PY.exists():
        raise SystemExit(f"run: bash {BENCH}/setup.sh")
    tmp = Path(tempfile.mkdtemp(prefix="hearth-stages-"))
    cfg = tmp / "proxy.yaml"
    cfg.write_text("models:\n  gpt-3.5-turbo:\n    kind: openai\n    base_url: http://127.0.0.1:8011/v1\n"
                   "    api_key_env: HEARTH_BENCH_UPSTREAM_KEY\n")
    upstream = subprocess.Popen([str(BENCH_PY), str(BENCH / "mock_upstream.py"), "--port", "8011"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prof = tmp / "hearth.prof"
    env = {**os.environ, "HEARTH_BENCH_UPSTREAM_KEY": "sk-bench", "HEARTH_HOME": str(tmp)}
    # The profiler runs only while the measured load does (SIGUSR1 on, SIGUSR2 off and written): start-up,
    # warm-up and shutdown stay out of the figures.
    hearth = subprocess.Popen([sys.executable, "-c", _PROFILED, str(prof), "--log-level", "warning", "serve",
                               "--config", str(cfg), "--port", "4111"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait("http://127.0.0.1:8011/health")
        wait("http://127.0.0.1:4111/health")
        load = [str(BENCH_PY), str(BENCH / "loadgen.py"), "--base-url", "http://127.0.0.1:4111/v1",
                "--concurrency", str(args.concurrency), "--warmup", "0"]
        if args.stream:
            load.append("--stream")
        subprocess.run([*load, "--requests", "500"], capture_output=True, timeout=600)  # warm-up
        hearth.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        out = subprocess.run([*load, "--requests", str(args.requests)], capture_output=True, text=True,
                             timeout=600).stdout
        hearth.send_signal(signal.SIGUSR2)
        for _ in range(100):
            if prof.exists():
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        hearth.send_signal(signal.SIGINT)
        hearth.wait(60)
        upstream.terminate()
        upstream.wait(10)
    n = args.requests
    stats = pstats.Stats(str(prof))
    by_group: dict[str, float] = {}
    for (path, _line, _fn), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        g = group_of(path)
        by_group[g] = by_group.get(g, 0.0) + tottime
    cpu = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")), "?")
    print(f"CPU: {model} ({os.cpu_count()} cores), Python {platform.python_version()}; "
          f"{'streaming' if args.stream else 'non-streaming'}, c={args.concurrency}, {n} requests profiled")
    print(next((ln for ln in out.splitlines() if "req/s" in ln), out.strip().splitlines()[0] if out.strip() else ""))
    total = sum(by_group.values())
    print(f"{'stage':40s} {'µs/request (profiled)':>22s} {'share':>7s}")
    for g, t in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"{g:40s} {t / n * 1e6:22.0f} {t / total:7.1%}")
    print(f"{'total':40s} {total / n * 1e6:22.0f}")
    items = stats.stats.items()  # type: ignore[attr-defined]
    for title, pick in (("hearth's own functions", lambda p: "hearth/" in p),
                        ("outside the groups above", lambda p: group_of(p) in ("other", "builtins"))):
        top = sorted(((v[2], k) for k, v in items if pick(k[0])), reverse=True)[:12]
        print(f"\n{title}, most time first (µs/request):")
        for t, (path, line, fn) in top:
            print(f"  {t / n * 1e6:7.1f}  {path.split('site-packages/')[-1].split('src/')[-1]}:{line} {fn}")


if __name__ == "__main__":
    main()
