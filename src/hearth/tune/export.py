"""Turns a peft adapter into a GGUF LoRA with llama.cpp's own converter (`convert_lora_to_gguf.py`).

The converter is not in llama-cpp-python's wheel, only in its source distribution (with the `conversion`
package and the `gguf-py` version it was written against). hearth takes those files from the sdist of
the installed llama-cpp-python version, once, into `$HEARTH_HOME/tools/`: from `HEARTH_LLAMA_CPP_SRC` (a
llama.cpp checkout or an unpacked sdist) when set, else `pip download` (PyPI, or whatever index pip is
configured with). It runs in a child process, so its imports never touch the caller's.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from hearth.config import home_dir

_MEMBERS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class ExportError(RuntimeError):
    pass


def converter_dir() -> Path:
    """A folder holding llama.cpp's converter and what it imports, fetched at first use."""
    version = importlib.metadata.version("llama-cpp-python")
    target = home_dir() / "tools" / f"llama.cpp-{version}"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    src = os.environ.get("HEARTH_LLAMA_CPP_SRC")
    tmp = Path(tempfile.mkdtemp(prefix="hearth-llama-src-"))
    try:
        if src:
            _copy_tree(Path(src), tmp / "out")
        else:
            _from_sdist(version, tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".tmp")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(str(tmp / "out"), staged)
        if not (staged / "convert_lora_to_gguf.py").is_file():
            raise ExportError(f"no convert_lora_to_gguf.py in {src or 'the llama-cpp-python sdist'}")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _copy_tree(root: Path, out: Path) -> None:
    base = root / "vendor" / "llama.cpp" if (root / "vendor" / "llama.cpp").is_dir() else root
    out.mkdir(parents=True)
    for member in _MEMBERS:
        p = base / member.rstrip("/")
        if p.is_dir():
            shutil.copytree(p, out / member.rstrip("/"))
        elif p.is_file():
            shutil.copy2(p, out / member)


def _from_sdist(version: str, tmp: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
           "-q", "-d", str(tmp), f"llama-cpp-python=={version}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    archives = list(tmp.glob("llama_cpp_python-*.tar.gz"))
    if run.returncode != 0 or not archives:
        raise ExportError(f"could not fetch llama-cpp-python {version}'s source (which holds llama.cpp's LoRA "
                          f"converter): {run.stderr.strip()[-500:]}; set HEARTH_LLAMA_CPP_SRC to a llama.cpp "
                          "checkout to work offline")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    out = tmp / "out"
    with tarfile.open(archives[0]) as tar:
        for m in tar.getmembers():
            rel = m.name.removeprefix(prefix)
            if m.name.startswith(prefix) and (m.isfile() or m.isdir()) and rel.startswith(_MEMBERS):
                m.name = rel
                tar.extract(m, out, filter="data")


def export_gguf(adapter_dir: Path, base_config_dir: Path, out: Path) -> Path:
    """Write `out` (a GGUF LoRA, F16) from peft's adapter folder; atomically, so a failure leaves nothing."""
    tools = converter_dir()
    tmp = out.with_name(f".{out.name}.tmp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tools / "gguf-py"), str(tools)])}
    cmd = [sys.executable, str(tools / "convert_lora_to_gguf.py"), "--base", str(base_config_dir), "--outfile",
           str(tmp), "--outtype", "f16", str(adapter_dir)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if run.returncode != 0 or not tmp.is_file():
            raise ExportError(f"llama.cpp's LoRA converter failed: {(run.stderr or run.stdout).strip()[-1500:]}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
