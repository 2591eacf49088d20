#!/usr/bin/env bash
# Installs everything (idempotent) and runs the gateway on the default local model.
# Extra arguments go to `hearth serve` (e.g. --port 9000 --config hearth.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m hearth serve "$@"
