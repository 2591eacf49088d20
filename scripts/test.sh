#!/usr/bin/env bash
# Installs everything the tests need (idempotent) and runs the whole suite, real models included.
# Extra arguments go to pytest (e.g. -m "not model" for the fast tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# Redis for the cache tests (they start their own redis-server on a free port; nothing listens by default).
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# A real Chroma server for the knowledge-base store tests, in its own venv: it is a server the tests start
# (like redis-server), and its ~100 dependencies must not constrain hearth's.
if [ ! -x .venv-chroma/bin/chroma ]; then
  "${PYTHON:-python3}" -m venv .venv-chroma
  .venv-chroma/bin/python -m pip install -q --disable-pip-version-check "chromadb==1.5.9"
fi
.venv/bin/python -m ruff check src tests benchmarks examples
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -q "$@"
