#!/usr/bin/env bash
# Installs everything the tests need (idempotent) and runs the whole suite, real models included.
# Extra arguments go to pytest (e.g. -m "not model" for the fast tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m ruff check src tests benchmarks examples
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -q "$@"
