"""What `hearth pull` accepts, which file it picks in a repository, and Ollama's keep_alive durations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hearth.config.keep_alive import FOREVER, parse_keep_alive
from hearth.core.errors import BadRequest
from hearth.gguf_meta import NotGguf, read_meta
from hearth.lifecycle.names import parse_ref, pick_files


def test_spellings() -> None:
    assert parse_ref("qwen2.5:1.5b") == parse_ref("QWEN2.5:1.5B")
    r = parse_ref("qwen2.5:1.5b")
    assert (r.repo, r.quant) == ("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "q4_k_m")
    r = parse_ref("hf.co/bartowski/Some-Model-GGUF:Q5_K_M")
    assert (r.name, r.repo, r.quant) == ("bartowski/Some-Model-GGUF:q5_k_m", "bartowski/Some-Model-GGUF", "q5_k_m")
    r = parse_ref("org/repo-GGUF/sub/file-Q8_0.gguf")
    assert (r.repo, r.file) == ("org/repo-GGUF", "sub/file-Q8_0.gguf")
    assert parse_ref("org/repo:latest").quant is None
    for bad in ("", "justaname", "a/b:bad tag", "/x.gguf"):
        with pytest.raises(BadRequest):
            parse_ref(bad)


def test_pick_files() -> None:
    files = ["README.md", "m-q4_k_m.gguf", "m-q8_0.gguf", "m-f16.gguf", "mmproj-m-f16.gguf",
             "big-q4_k_m-00001-of-00002.gguf", "big-q4_k_m-00002-of-00002.gguf"]
    assert pick_files(parse_ref("o/m:q8_0"), files) == ["m-q8_0.gguf"]
    assert pick_files(parse_ref("o/m"), files) == ["big-q4_k_m-00001-of-00002.gguf", "big-q4_k_m-00002-of-00002.gguf"]
    assert pick_files(parse_ref("o/m"), ["m-q4_k_m.gguf", "m-q8_0.gguf"]) == ["m-q4_k_m.gguf"]  # Ollama's default
    assert pick_files(parse_ref("o/m"), ["only-model.gguf"]) == ["only-model.gguf"]
    with pytest.raises(LookupError, match="has no iq2_xs file; it has: f16, q4_k_m, q8_0"):
        pick_files(parse_ref("o/m:iq2_xs"), files)
    with pytest.raises(ValueError, match="holds no GGUF"):
        pick_files(parse_ref("o/m"), ["model.safetensors"])
    with pytest.raises(LookupError, match="expected 3 parts"):
        pick_files(parse_ref("o/m"), ["x-q4_k_m-00001-of-00003.gguf", "x-q4_k_m-00002-of-00003.gguf"])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), (0, 0.0), ("0", 0.0), (300, 300.0), ("5m", 300.0), ("1h30m", 5400.0),
     ("300ms", 0.3), ("1.5h", 5400.0), (-1, FOREVER), ("-1", FOREVER), ("-1m", FOREVER), (2.5, 2.5)],
)
def test_keep_alive(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "m5", True, [1], "1x", math.nan])
def test_keep_alive_refused(value: object) -> None:
    with pytest.raises(BadRequest, match="keep_alive"):
        parse_keep_alive(value)


def test_damaged_gguf_headers(tmp_path: Path) -> None:
    for name, data in [("short.gguf", b"GGUF\x03\x00\x00\x00\x01"), ("text.gguf", b"hello"),
                       ("huge.gguf", b"GGUF\x03\x00\x00\x00" + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
                        + (2**40).to_bytes(8, "little"))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(NotGguf):
            read_meta(tmp_path / name)
