"""Reads a GGUF file's header: is it one, and what does it hold (family, size, quantization, shape).

The `gguf` package's reader maps every tensor and decodes the whole vocabulary (1.8 s for a 98 MB file
here); listing models, checking a download and sizing a model before loading need only the scalar
keys, which this reads in milliseconds, skipping arrays without decoding them.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# general.file_type -> the quantization name Ollama shows (llama.cpp's LLAMA_FTYPE_MOSTLY_*).
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}


class NotGguf(ValueError):
    pass


def read_meta(path: Path) -> dict[str, Any]:
    """Every scalar and string key of the header (arrays are skipped)."""
    try:
        return _read(path)
    except (struct.error, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise NotGguf(f"{path.name}: a damaged or truncated GGUF header ({e})") from None


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb", buffering=1 << 16) as f:
        if f.read(4) != MAGIC:
            raise NotGguf(f"{path.name} is not a GGUF file")
        version, _, n_kv = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise NotGguf(f"{path.name}: GGUF version {version} is too old")
        out: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            if kind == _ARRAY:
                _skip_array(f)
            else:
                out[key] = _value(f, kind)
        return out


def details(meta: dict[str, Any]) -> dict[str, Any]:
    """What `/api/tags` and `/api/show` report, and the shape that sizes the KV cache."""
    arch = str(meta.get("general.architecture", ""))
    heads = int(meta.get(f"{arch}.attention.head_count", 0) or 0)
    embd = int(meta.get(f"{arch}.embedding_length", 0) or 0)
    head_dim = embd // heads if heads else 0
    return {
        "family": arch, "parameter_size": str(meta.get("general.size_label", "")),
        "quantization_level": FILE_TYPES.get(int(meta.get("general.file_type", -1)), ""),
        "context_length": int(meta.get(f"{arch}.context_length", 0) or 0),
        "block_count": int(meta.get(f"{arch}.block_count", 0) or 0),
        "head_count_kv": int(meta.get(f"{arch}.attention.head_count_kv", heads) or 0),
        "key_length": int(meta.get(f"{arch}.attention.key_length", head_dim) or 0),
        "value_length": int(meta.get(f"{arch}.attention.value_length", head_dim) or 0),
        "adapter": str(meta.get("adapter.type", "")), "base_name": str(meta.get("general.basename", "")),
    }


def kv_bytes(d: dict[str, Any], cells: int) -> int:
    """F16 K and V for `cells` tokens in every layer: what llama.cpp allocates for a context of that size."""
    width = d.get("key_length", 0) + d.get("value_length", 0)
    per_token = d.get("block_count", 0) * d.get("head_count_kv", 0) * width
    return 2 * cells * int(per_token)


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > 1 << 24:
        raise NotGguf("a GGUF string longer than 16 MB: not a GGUF header")
    return f.read(n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind == _STRING:
        return _string(f)
    fmt = _SCALAR.get(kind)
    if fmt is None:
        raise NotGguf(f"unknown GGUF value type {kind}")
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _skip_array(f: BinaryIO) -> None:
    kind, count = struct.unpack("<IQ", f.read(12))
    if kind == _STRING:
        for _ in range(count):
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(n, 1)
    elif kind == _ARRAY:
        for _ in range(count):
            _skip_array(f)
    else:
        fmt = _SCALAR.get(kind)
        if fmt is None:
            raise NotGguf(f"unknown GGUF array type {kind}")
        f.seek(struct.calcsize(fmt) * count, 1)
