"""The model lifecycle, measured against its anchors in the same run:

1. pull throughput: hearth's `POST /api/pull` (huggingface_hub's transfer, sha256 check, NDJSON progress,
   the move into the store) vs a plain `huggingface_hub.hf_hub_download` of the same file from the same local
   Hub stand-in (the default model's 491 MB GGUF);
2. time to first token of a model that is not loaded (cold: the request loads it) vs loaded;
3. decode rate with a LoRA adapter (rank 16 on every linear layer, as `hearth finetune` makes) vs without.

    .venv/bin/python benchmarks/lifecycle.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _client import free_port, wait_ready
from hearth.model_files import resolve_model_path
from hearth.testing.hub import HubStandIn
from hearth.testing.lora import ALL_LINEAR, random_lora
from hearth.testing.server import running

REPO = "bench/Qwen2.5-Coder-0.5B-Instruct-GGUF"
FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def post(url: str, body: dict[str, Any], timeout: float = 600, method: str = "POST") -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
                                 method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def pull_hearth(base: str, name: str) -> float:
    t0 = time.perf_counter()
    lines = post(base + "/api/pull", {"model": name}).decode().splitlines()
    took = time.perf_counter() - t0
    assert json.loads(lines[-1]) == {"status": "success"}, lines[-3:]
    return took


def pull_plain(hub: str, folder: Path) -> float:
    code = ("import sys, time; from huggingface_hub import hf_hub_download; t = time.perf_counter(); "
            f"hf_hub_download({REPO!r}, {FILE!r}, local_dir=sys.argv[1], endpoint=sys.argv[2]); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(folder), hub], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    return float(out.stdout.strip().splitlines()[-1])


def stream(base: str, model: str, max_tokens: int, keep_alive: Any = None) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s after it, tokens) through the Ollama API."""
    body: dict[str, Any] = {"model": model, "messages": PROMPT, "stream": True,
                            "options": {"temperature": 0, "num_predict": max_tokens}}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    req = urllib.request.Request(base + "/api/chat", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = 0.0
    final: dict[str, Any] = {}
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            d = json.loads(line)
            if not first and d.get("message", {}).get("content"):
                first = time.perf_counter() - t0
            if d.get("done"):
                final = d
    n = int(final.get("eval_count", 0))
    rate = n / (final["eval_duration"] / 1e9) if final.get("eval_duration") else 0.0
    return first, rate, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pull-only", action="store_true")
    args = ap.parse_args()
    model_file = resolve_model_path("builtin:qwen2.5-coder-0.5b")
    size_mb = model_file.stat().st_size / 1e6
    hub = HubStandIn({REPO: {FILE: model_file}})
    with tempfile.TemporaryDirectory() as d, running(hub.app) as hub_url:
        tmp = Path(d)
        cfg = f"cache: {{enabled: false}}\nlocal: {{models_dir: {tmp / 'store'}, n_ctx: 2048}}\nmodels:\n" + (
            "  smol:\n    kind: llamacpp\n    path: builtin:smollm2-135m\n    preload: false\n")
        (tmp / "bench.yaml").write_text(cfg)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "hearth", "serve", "--config", str(tmp / "bench.yaml"), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_XET": "1"},
        )
        try:
            wait_ready(port)
            base = f"http://127.0.0.1:{port}"
            print(f"1. pull {size_mb:.0f} MB from a local Hub stand-in ({args.rounds} rounds, order alternating; "
                  "median)")
            ours, plain = [], []
            for i in range(args.rounds):
                if i % 2:
                    ours.append(pull_hearth(base, f"{REPO}:q4_k_m"))
                    plain.append(pull_plain(hub_url, tmp / f"plain{i}"))
                else:
                    plain.append(pull_plain(hub_url, tmp / f"plain{i}"))
                    ours.append(pull_hearth(base, f"{REPO}:q4_k_m"))
                if i < args.rounds - 1:
                    post(base + "/api/delete", {"model": f"{REPO}:q4_k_m"}, method="DELETE")
            a, b = statistics.median(plain), statistics.median(ours)
            print(f"   huggingface_hub.hf_hub_download: {size_mb / a:7.0f} MB/s ({a:.2f} s; all: "
                  f"{', '.join(f'{x:.2f}' for x in plain)})")
            print(f"   hearth POST /api/pull:           {size_mb / b:7.0f} MB/s ({b:.2f} s; all: "
                  f"{', '.join(f'{x:.2f}' for x in ours)}; sha256 verified, progress streamed) ratio {a / b:.2f}")
            if args.pull_only:
                return

            name = f"{REPO}:q4_k_m"
            print(f"\n2. time to first token, {name} ({args.rounds} rounds)")
            cold, warm = [], []
            for _ in range(args.rounds):
                post(base + "/api/generate", {"model": name, "keep_alive": 0})  # unloaded
                cold.append(stream(base, name, 8)[0])
                warm.append(stream(base, name, 8)[0])
            print(f"   cold (the request loads the model): p50 {statistics.median(cold) * 1000:6.0f} ms")
            print(f"   loaded:                             p50 {statistics.median(warm) * 1000:6.0f} ms")

            lora = random_lora(model_file, tmp / "lora.gguf", rank=16, modules=ALL_LINEAR)
            post(base + "/admin/adapters", {"name": "bench", "path": str(lora), "base": name})
            print(f"\n3. decode rate, 128 tokens, {args.rounds} rounds each (adapter: rank 16, all linear layers, "
                  f"{lora.stat().st_size / 1e6:.0f} MB)")
            plain_rate, lora_rate = [], []
            for _ in range(args.rounds):
                plain_rate.append(stream(base, name, 128)[1])
                lora_rate.append(stream(base, f"{name}+bench", 128)[1])
            p, q = statistics.median(plain_rate), statistics.median(lora_rate)
            print(f"   base model:   {p:5.1f} tok/s")
            print(f"   with adapter: {q:5.1f} tok/s  ratio {q / p:.2f}")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
