#!/usr/bin/env bash
# Proxy overhead: hearth vs LiteLLM in front of the same mock upstream, measured by the team harness
# (../shared/bench) in one run: direct upstream, then each proxy, per mode and concurrency.
# Prints the harness's summary (added latency, throughput ratio, CPU per request, idle RSS, start-up), then
# hearth's CPU per request by stage (benchmarks/proxy_stages.py).
#
#   benchmarks/proxy_vs_litellm.sh [--requests 2000] [--conc "1 16"] [...more run_compare.sh args]
#
# Needs: bash ../shared/bench/setup.sh once (harness venv + LiteLLM venv); hearth installed in .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
BENCH_HOME="${BENCH_HOME:-$HOME/.cache/hearth-bench}"
[ -x "$BENCH_HOME/venv/bin/python" ] || { echo "run: bash $BENCH/setup.sh" >&2; exit 2; }
OUT="${OUT:-$ROOT/benchmarks/results/proxy-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
CFG="$OUT/hearth-proxy.yaml"
# No local model: a pure proxy, as the LiteLLM config is. The harness sends model gpt-3.5-turbo.
cat > "$CFG" <<YAML
models:
  gpt-3.5-turbo:
    kind: openai
    base_url: http://127.0.0.1:8001/v1
    api_key_env: HEARTH_BENCH_UPSTREAM_KEY
YAML
HEARTH_CMD="HEARTH_BENCH_UPSTREAM_KEY=sk-bench exec $ROOT/.venv/bin/python -m hearth --log-level warning serve --config $CFG --port 4100"
HVER="hearth $("$ROOT/.venv/bin/python" -c 'import hearth; print(hearth.__version__)')"
LVER="litellm $("$BENCH_HOME/litellm-venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
cd "$BENCH"
./run_compare.sh --out "$OUT" \
  --proxy-url http://127.0.0.1:4100/v1 --proxy-name hearth --proxy-version "$HVER" --proxy-cmd "$HEARTH_CMD" \
  --proxy-url http://127.0.0.1:4000/v1 --proxy-name litellm-w1 --proxy-key sk-bench --proxy-version "$LVER" \
    --proxy-cmd "proxies/litellm.sh 4000 1" \
  "$@"
cat "$OUT/summary.md"
# Where hearth's CPU per request goes, by stage, with the same shipped defaults (profiled run of its own).
echo
"$ROOT/.venv/bin/python" "$ROOT/benchmarks/proxy_stages.py" --requests 2000 --concurrency 16
