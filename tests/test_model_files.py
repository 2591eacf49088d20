"""Built-in models: joining the shipped slices, checking the sha256, atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hearth.model_files import BuiltinModel, ModelFileError, _join, resolve_model_path


def _spec(data: bytes, sha: str | None) -> BuiltinModel:
    return BuiltinModel("m.gguf", ("a", "b"), sha, len(data), "x", "1", "q")


def test_join_verifies_sha256(tmp_path: Path) -> None:
    parts = [tmp_path / "p1", tmp_path / "p2"]
    parts[0].write_bytes(b"hello ")
    parts[1].write_bytes(b"world")
    target = tmp_path / "out" / "m.gguf"
    _join(parts, target, _spec(b"hello world", hashlib.sha256(b"hello world").hexdigest()), progress=False)
    assert target.read_bytes() == b"hello world"
    bad = tmp_path / "out" / "bad.gguf"
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        _join(parts, bad, _spec(b"hello world", "0" * 64), progress=False)
    assert not bad.exists() and not list(bad.parent.glob(".*.tmp")), "no half-written file may remain"


def test_default_model_resolves_to_a_verified_file() -> None:
    p = resolve_model_path("builtin:qwen2.5-coder-0.5b", progress=False)
    assert p.stat().st_size == 491_400_064


def test_missing_file_and_unknown_builtin() -> None:
    with pytest.raises(ModelFileError, match="not found"):
        resolve_model_path("/nonexistent/model.gguf")
    with pytest.raises(ModelFileError, match="unknown built-in"):
        resolve_model_path("builtin:gpt-5")
