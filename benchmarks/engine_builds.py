"""Decode and prefill speed of the default model under different llama.cpp builds, in one run (issue 23).

Each build runs in its own child process (llama-cpp-python picks its libraries at import, through
LLAMA_CPP_LIB_PATH), with llama.cpp's extra weight buffers (repacked layouts, AMX tiles) on and off. A
build that crashes is reported as such: that is the point of the comparison on a Xeon with AMX.

The installed build is the anchor (ratio 1.00). Other builds are folders of llama.cpp shared libraries,
compiled from the same source as the installed llama-cpp-python (its sdist's vendor/llama.cpp):

    # native without AMX (what scripts/setup.sh installs), native with AMX, generic (GGML_NATIVE=OFF), and
    # run-time dispatch (all CPU variants as loadable backends; the AMX one deleted)
    cmake -S vendor/llama.cpp -B amx -G Ninja -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_COMMON=OFF && cmake --build amx
    cmake ... -B generic -DGGML_NATIVE=OFF
    cmake ... -B dispatch -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
    rm dispatch/bin/libggml-cpu-sapphirerapids.so

    python benchmarks/engine_builds.py --build amx=/tmp/builds/amx/bin --build generic=/tmp/builds/generic/bin \
        --build dispatch=/tmp/builds/dispatch/bin
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROMPT = ("You are a helpful assistant for a smart speaker. " * 12) + "Explain briefly why the sky is blue."

CHILD = r"""
import json, sys, time
path, extra, threads = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
from llama_cpp import llama_cpp as L
from llama_cpp import _logger
from hearth.engine.build import init_backends
_logger.set_verbose(False)
init_backends(L)  # a dispatch build's CPU plugins are loaded the way hearth loads them
info = L.llama_print_system_info().decode()
mp = L.llama_model_default_params()
mp.use_extra_bufts = extra
model = L.llama_model_load_from_file(path.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch = 2048, 512, 512
cp.n_threads = cp.n_threads_batch = threads
cp.no_perf = True
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
text = sys.stdin.read().encode()
buf = (L.llama_token * 4096)()
n = L.llama_tokenize(vocab, text, len(text), buf, 4096, True, True)
mem = L.llama_get_memory(ctx)

def prefill():
    L.llama_memory_clear(mem, True)
    t = time.perf_counter()
    assert L.llama_decode(ctx, L.llama_batch_get_one(buf, n)) == 0
    return n / (time.perf_counter() - t)

prefill()  # warm: pages in the weights, builds the graphs
pre = max(prefill() for _ in range(3))
smpl = L.llama_sampler_init_greedy()
best = 0.0
for _ in range(2):
    prefill()
    tok = (L.llama_token * 1)()
    t = time.perf_counter()
    steps = 64
    for _ in range(steps):
        tok[0] = L.llama_sampler_sample(smpl, ctx, -1)
        assert L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) == 0
    best = max(best, steps / (time.perf_counter() - t))
print(json.dumps({"prefill": pre, "decode": best, "prompt_tokens": n, "info": info}))
"""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run(label: str, lib: str | None, model: str, extra: bool, threads: int) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("LLAMA_CPP_LIB_PATH", None)
    if lib:
        env["LLAMA_CPP_LIB_PATH"] = lib
    done = subprocess.run([sys.executable, "-c", CHILD, model, "1" if extra else "0", str(threads)], input=PROMPT,
                          capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        return {"build": label, "extra_bufts": extra, "error": f"crashed ({how})"}
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"build": label, "extra_bufts": extra, **out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", default=[], help="NAME=FOLDER of llama.cpp shared libraries")
    ap.add_argument("--model", default="builtin:qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    from hearth.model_files import resolve_model_path

    model = str(resolve_model_path(args.model))
    builds: list[tuple[str, str | None]] = [("installed (setup.sh: native, no AMX)", None)]
    builds += [(b.rsplit("=", 1)[0], b.rsplit("=", 1)[1]) for b in args.build]
    rows = [run(label, lib, model, extra, args.threads) for label, lib in builds for extra in (True, False)]
    anchor = rows[0]
    print(f"CPU: {cpu_model()}; {args.threads} threads; model {Path(model).name}; "
          f"prompt {anchor.get('prompt_tokens', '?')} tokens; decode = 64 greedy tokens, best of 2")
    print(f"{'build':<42} {'extra bufts':>11} {'prefill tok/s':>14} {'decode tok/s':>13} {'vs anchor':>18}")
    for r in rows:
        if "error" in r:
            print(f"{r['build']:<42} {r['extra_bufts']!s:>11} {r['error']:>47}")
            continue
        ratio = ""
        if "error" not in anchor:
            ratio = (f"{float(str(r['prefill'])) / float(str(anchor['prefill'])):.2f}x / "
                     f"{float(str(r['decode'])) / float(str(anchor['decode'])):.2f}x")
        print(f"{r['build']:<42} {r['extra_bufts']!s:>11} {float(str(r['prefill'])):>14.1f} "
              f"{float(str(r['decode'])):>13.1f} {ratio:>18}")
    for r in rows:
        if r.get("extra_bufts") and "info" in r:
            print(f"  {r['build']}: {str(r['info']).strip()}")


if __name__ == "__main__":
    main()
