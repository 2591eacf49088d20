#!/usr/bin/env bash
# The README's first command, the way a new user meets it: `bash scripts/serve.sh` installs (compiling
# llama.cpp on a fresh machine), starts the gateway on the default model, `/health` turns 200, and one chat
# gets an answer. Fails with the server's log if any step does not happen: this is what broke on Xeons with
# AMX (a segfault at the first forward pass) while every unit test passed on other CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t hearth-smoke.XXXXXX.log)"
t0=$(date +%s)
bash scripts/serve.sh --port "$port" >"$log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop EXIT
fail() { echo "smoke: $1" >&2; tail -n 60 "$log" >&2; exit 1; }
# Python's urllib, not curl: a fresh machine may lack curl, never the Python that installs hearth.
"$PY" - "$port" "$pid" "$t0" "${SMOKE_TIMEOUT:-1500}" <<'PYEOF' || fail "see above"
import json, os, sys, time, urllib.error, urllib.request
port, pid, t0, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}"
while True:  # a fresh machine compiles llama.cpp first
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("smoke: hearth exited before it was ready")
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            if r.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.time() - t0 > limit:
        sys.exit(f"smoke: not ready after {limit} s")
    time.sleep(1)
ready = time.time() - t0
body = {"model": "local", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
req = urllib.request.Request(base + "/v1/chat/completions", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=120) as r:
    text = json.load(r)["choices"][0]["message"]["content"]
if not text.strip():
    sys.exit("smoke: the first chat came back empty")
time.sleep(0.5)
try:
    os.kill(pid, 0)
except OSError:
    sys.exit("smoke: hearth died after answering")
print(f"smoke: serve.sh ready in {ready:.0f} s (install included); first answer: {text!r}")
PYEOF
