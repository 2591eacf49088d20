#!/usr/bin/env bash
# Installs everything the tests need (idempotent) and runs the whole suite, real models included.
# Extra arguments go to pytest (e.g. -m "not model" for the fast tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# From Debian: Redis for the cache and key-store tests, Prometheus (with promtool) for the deploy/ rules and
# dashboard tests, Chromium for the console tests, nginx for the replica fault tests. The tests start their own servers on free ports; nothing
# listens by default.
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# A real Chroma server for the knowledge-base store tests, in its own venv: it is a server the tests start
# (like redis-server), and its ~100 dependencies must not constrain hearth's.
if [ ! -x .venv-chroma/bin/chroma ]; then
  "${PYTHON:-python3}" -m venv .venv-chroma
  .venv-chroma/bin/python -m pip install -q --disable-pip-version-check "chromadb==1.5.9"
fi
# A provider plugin packaged as a third party would (its own pyproject and entry point): the plugin tests load it.
.venv/bin/python -c 'import hearth_echo_plugin' 2>/dev/null || \
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e tests/support/echo_plugin
.venv/bin/python -m ruff check src tests benchmarks examples
.venv/bin/python -m mypy
.venv/bin/lint-imports --no-cache  # the layer contracts in pyproject.toml
exec .venv/bin/python -m pytest -q "$@"
