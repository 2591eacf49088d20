"""What llama.cpp build is installed, what it was compiled with, and how to rebuild it.

Why this exists: llama-cpp-python ships as source, so every machine runs its own compile, and llama.cpp's
default (`-march=native`) compiles in whatever the build machine has. On Intel Xeons with AMX (Sapphire and
Granite Rapids, the default instances of the large clouds) that includes the AMX kernels, whose first forward
pass segfaults on virtualised hosts (llama.cpp #20824, Ollama #17006). `scripts/setup.sh` builds without AMX;
this module lets setup, `hearth doctor` and the engine check (`engine/probe.py`) say which build is loaded,
what it carries and the exact command that replaces it.

Nothing here loads a model; `system_info()` loads the shared library (no kernel runs at load).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Any

NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# The CMAKE_ARGS scripts/setup.sh uses where the compiler knows AMX (GCC >= 11, clang >= 12 on x86-64).
DEFAULT_CMAKE_ARGS = f"-DLLAVA_BUILD=OFF -DCMAKE_C_FLAGS='{NO_AMX_FLAGS}' -DCMAKE_CXX_FLAGS='{NO_AMX_FLAGS}'"


def lib_dir() -> Path | None:
    """The folder llama-cpp-python loads its libraries from, found without loading them.

    llama-cpp-python honours LLAMA_CPP_LIB_PATH before its own `lib/` folder; so does this.
    """
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


_backends_loaded = False
_backends_lock = threading.Lock()


def init_backends(L: Any) -> None:
    """`llama_backend_init`, and for a run-time dispatch build (GGML_BACKEND_DL with every CPU variant as a
    plugin, what deploy/Dockerfile builds) the plugins too: ggml scores each variant against this CPU and keeps
    the best. llama-cpp-python does not load them itself, so without this such a build has no CPU backend."""
    global _backends_loaded
    L.llama_backend_init()
    with _backends_lock:  # the engine and embedding threads may both be first
        if _backends_loaded:
            return
        _backends_loaded = True
        folder = lib_dir()
        if folder is None or not any(folder.glob("libggml-cpu-*.so")):
            return
        import ctypes

        # The plugins must register with the libggml that libllama uses. Wheels hold copies, not links, of
        # libggml.so and libggml.so.0, so opening the file by path could load a second, unused instance; opening
        # the name libllama was linked against (its soname) returns the one already loaded.
        sonames = sorted((p.name for p in folder.glob("libggml.so.*")), key=len)
        ggml = ctypes.CDLL(sonames[0] if sonames else str(folder / "libggml.so"))
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(folder).encode())


def identity() -> str:
    """Names, sizes and mtimes of the build's shared libraries: changes whenever the build is replaced."""
    folder = lib_dir()
    if folder is None or not folder.is_dir():
        return "none"
    parts = [str(folder.resolve())]
    for lib in sorted(folder.iterdir()):
        if ".so" in lib.name or lib.suffix in (".dylib", ".dll"):
            st = lib.stat()
            parts.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def version() -> str | None:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def system_info() -> str:
    """llama.cpp's own account of its backends and the CPU features it was compiled with."""
    from llama_cpp import llama_cpp as L

    init_backends(L)
    return str(L.llama_print_system_info().decode("utf-8", "replace"))


def system_info_isolated(timeout: float = 60.0) -> tuple[str | None, str]:
    """`system_info()` read by a child process: (the info, "") or (None, how the child ended). A library that
    crashes when loaded must not take down the command that is asking about it (`hearth doctor`)."""
    import subprocess

    code = "from hearth.engine.build import system_info; print(system_info())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"did not answer in {timeout:.0f} s"
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        return None, how + (f": {err[-1][:300]}" if err else "")
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()  # ggml may log plugin loads to stdout
    return next((ln for ln in reversed(lines) if " = " in ln), lines[-1] if lines else ""), ""


def compiled_features(info: str) -> dict[str, str]:
    """`CPU : SSE3 = 1 | AVX2 = 1 | ...` -> {"SSE3": "1", ...} (every backend's entries, merged)."""
    features: dict[str, str] = {}
    for part in info.replace("\n", "|").split("|"):
        if ":" in part and "=" not in part.split(":", 1)[0]:
            part = part.split(":", 1)[1]
        name, sep, value = part.partition("=")
        if sep and name.strip():
            features[name.strip()] = value.strip()
    return features


def has_amx_kernels(info: str) -> bool:
    feats = compiled_features(info)
    return feats.get("AMX_INT8") == "1" or feats.get("AMX") == "1"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def reinstall_command(python: str | None = None) -> str:
    """The exact command that replaces the installed engine with one built as scripts/setup.sh builds it."""
    py = python or sys.executable
    ver = version() or "0.3.36"
    return (
        f'CMAKE_ARGS="{DEFAULT_CMAKE_ARGS}" {py} -m pip install --no-cache-dir --force-reinstall --no-deps '
        f"llama-cpp-python=={ver}"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m hearth.engine.build --check-flags`: exit 1 when the installed build carries AMX kernels."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--check-flags"]:
        print("usage: python -m hearth.engine.build --check-flags", file=sys.stderr)
        return 2
    if version() is None:
        return 0
    return 1 if has_amx_kernels(system_info()) else 0


if __name__ == "__main__":
    sys.exit(main())
