"""Would `hearth serve --workers N` pay on this box? A remote-only gateway (the case a second process could
help: Python's per-request work spread over two processes) measured with the team harness's mock upstream
and load generator (../shared/bench), in one run:

- one hearth, clients straight to it;
- one hearth behind nginx (what a load balancer alone costs);
- two hearth processes behind nginx (round robin, keep-alive), i.e. what `--workers 2` would give.

For each: non-streaming and streaming, concurrency 16: req/s and p50, and the CPU of the gateway processes.
A local model is left out on purpose: one engine already uses both cores, and a second would be a second copy
of the weights competing for them.

    bash ../shared/bench/setup.sh   # once (only its harness venv is used)
    .venv/bin/python benchmarks/workers.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _client import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
BENCH_PY = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "hearth-bench")) / "venv" / "bin" / "python"


def nginx_conf(tmp: Path, listen: int, backends: list[int]) -> Path:
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in backends)
    conf = tmp / f"nginx-{listen}.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx-{listen}.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    upstream hearth {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://hearth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    return conf


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def load(port: int, stream: bool, requests: int, pids: list[int]) -> dict[str, float]:
    before = cpu_seconds(pids)
    cmd = [str(BENCH_PY), str(BENCH / "loadgen.py"), "--base-url", f"http://127.0.0.1:{port}/v1",
           "--model", "gpt-3.5-turbo", "--requests", str(requests), "--concurrency", "16", "--warmup", "200",
           "--max-seconds", "120"] + (["--stream"] if stream else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    used = cpu_seconds(pids) - before
    return {"rps": float(r["rps"]), "p50": float(r["lat_p50_ms"]),
            "cpu_ms": 1000 * used / requests}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    if not BENCH_PY.is_file():
        sys.exit(f"run: bash {BENCH}/setup.sh")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            upstream = free_port()
            procs.append(subprocess.Popen([str(BENCH_PY), str(BENCH / "mock_upstream.py"), "--port", str(upstream)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ready(upstream, "/health")
            cfg = tmp / "proxy.yaml"
            cfg.write_text(f"models:\n  gpt-3.5-turbo: {{kind: openai, base_url: 'http://127.0.0.1:{upstream}/v1', "
                           "api_key_env: BENCH_KEY}\n")
            ports = [free_port(), free_port()]
            gateways = []
            for p in ports:
                proc = subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve",
                                         "--config", str(cfg), "--port", str(p)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env={**os.environ, "BENCH_KEY": "sk-bench"})
                procs.append(proc)
                gateways.append(proc.pid)
                wait_ready(p)
            one_lb, two_lb = free_port(), free_port()
            for listen, backends in ((one_lb, ports[:1]), (two_lb, ports)):
                procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(nginx_conf(tmp, listen, backends))],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.5)
            setups = [("1 hearth, direct", ports[0], gateways[:1]), ("1 hearth behind nginx", one_lb, gateways[:1]),
                      ("2 hearth behind nginx", two_lb, gateways)]
            print(f"remote-only gateway, mock upstream (20 tokens), concurrency 16, {args.requests} requests each")
            print(f"{'setup':24} {'mode':11} {'req/s':>8} {'p50 ms':>8} {'gateway CPU ms/req':>19}")
            for mode, stream in (("non-stream", False), ("stream", True)):
                for label, port, pids in setups:
                    r = load(port, stream, args.requests, pids)
                    print(f"{label:24} {mode:11} {r['rps']:8.0f} {r['p50']:8.1f} {r['cpu_ms']:19.2f}")
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(10)


if __name__ == "__main__":
    main()
