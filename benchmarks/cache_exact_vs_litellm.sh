#!/usr/bin/env bash
# Exact cache hits over HTTP: hearth's in-memory cache vs LiteLLM's in-memory cache (cache_params.type local),
# both in front of the same mock upstream (50 ms to first token, so a miss is visible), measured by the team
# harness (../shared/bench) in one run. Every request of a run is identical, so after the warm-up all are hits.
#
#   benchmarks/cache_exact_vs_litellm.sh [--requests 2000] [--conc "1 16"] [...more run_compare.sh args]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
BENCH_HOME="${BENCH_HOME:-$HOME/.cache/hearth-bench}"
[ -x "$BENCH_HOME/litellm-venv/bin/litellm" ] || { echo "run: bash $BENCH/setup.sh" >&2; exit 2; }
OUT="${OUT:-$ROOT/benchmarks/results/cache-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
cat > "$OUT/hearth.yaml" <<YAML
cache: {policy: all}
models:
  gpt-3.5-turbo: {kind: openai, base_url: "http://127.0.0.1:8001/v1"}
YAML
cat > "$OUT/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-3.5-turbo
    litellm_params: {model: openai/gpt-3.5-turbo, api_base: "http://127.0.0.1:8001/v1", api_key: sk-upstream-dummy}
litellm_settings:
  set_verbose: false
  num_retries: 0
  cache: true
  cache_params: {type: local}
general_settings:
  master_key: sk-bench
YAML
HEARTH_CMD="exec $ROOT/.venv/bin/python -m hearth --log-level warning serve --config $OUT/hearth.yaml --port 4100"
LITELLM_CMD="LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR exec $BENCH_HOME/litellm-venv/bin/litellm --config $OUT/litellm.yaml --host 127.0.0.1 --port 4000 --num_workers 1"
cd "$BENCH"
./run_compare.sh --out "$OUT" --ttft-ms 50 \
  --proxy-url http://127.0.0.1:4100/v1 --proxy-name hearth-cache --proxy-cmd "$HEARTH_CMD" \
  --proxy-url http://127.0.0.1:4000/v1 --proxy-name litellm-cache --proxy-key sk-bench --proxy-cmd "$LITELLM_CMD" \
  "$@"
cat "$OUT/summary.md"
