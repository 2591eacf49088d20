"""A BERT sentence encoder (all-MiniLM-L6-v2) run by llama.cpp from an F16 GGUF made at first use.

Why: ingest was bound by the numpy forward pass (~38 texts/s for 120-token passages on 2 cores). llama.cpp's
BERT graph with flash attention runs the same model about twice as fast there, with the same vectors
(cosine 0.99999 against numpy, so knowledge bases embedded before keep working without re-embedding).

The GGUF is written once from the package's safetensors into `$HEARTH_HOME/models/` (numpy and the `gguf`
package; no torch), the way llama.cpp's own converter writes a BertModel: the same tensor names and types,
the WordPiece vocabulary in llama.cpp's form, mean pooling, non-causal attention. Tokenization stays with the
model's own `tokenizer.json` (the token ids are handed to llama.cpp), so every text is cut exactly as the numpy
engine cuts it, including scripts where llama.cpp's WordPiece differs (Hangul).

Two settings matter on a CPU (measured, see benchmarks/embed_engines.py): flash attention on (llama-cpp
disables it unless asked; without it this engine is slower than numpy), and few tokens per decode: llama.cpp
attends over all tokens of a decode and masks the other sequences out, so packing many texts into one decode
costs quadratically. Texts are packed up to GROUP_TOKENS like the numpy engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from hearth.embed.minilm import DIM, GROUP_TOKENS, BertTokens, find_model_dir, load_safetensors

log = logging.getLogger("hearth")

_BATCH = 512  # tokens a context takes per decode; a text is at most 256
_SEQS = 64  # texts per decode at most


def available() -> bool:
    """llama-cpp-python and gguf are installed (the `local` and `semantic` extras)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("gguf") is not None


def gguf_file(model_dir: Path, cache_dir: Path) -> Path:
    """The converted file for this model folder, written on first use (atomically: a crash leaves no half file)."""
    st = (model_dir / "model.safetensors").stat()
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        h.update((model_dir / name).read_bytes())
    h.update(f"{st.st_size}:{st.st_mtime_ns}:f16:v1".encode())
    out = cache_dir / f"bert-{h.hexdigest()[:16]}.f16.gguf"
    if not out.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{uuid.uuid4().hex}.tmp")  # not the pid: container replicas are all pid 1
        try:
            convert(model_dir, tmp)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())  # on disk before it has its name: a crash leaves no torn file behind
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


# HF BertModel tensor names -> llama.cpp's (gguf.TensorNameMap for MODEL_ARCH.BERT, written out to be read).
_GLOBAL = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER = {
    "attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
}


def _gguf_name(hf: str) -> str | None:
    hf = hf.replace(".gamma", ".weight").replace(".beta", ".bias")
    if hf in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias") or hf.startswith("cls."):
        return None  # unused by an embedder (llama.cpp's converter drops them too)
    if hf in _GLOBAL:
        return _GLOBAL[hf]
    parts = hf.split(".")  # encoder.layer.{i}.<module>.{weight|bias}
    if parts[:2] == ["encoder", "layer"] and ".".join(parts[3:-1]) in _LAYER:
        return f"blk.{parts[2]}.{_LAYER['.'.join(parts[3:-1])]}.{parts[-1]}"
    raise ValueError(f"unexpected tensor {hf!r} in a BERT model")


def convert(model_dir: Path, out: Path) -> None:
    import gguf

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if cfg.get("model_type") != "bert" or tok["model"]["type"] != "WordPiece":
        raise ValueError(f"{model_dir} is not a BERT WordPiece model")
    w = gguf.GGUFWriter(out, "bert")
    w.add_type("model")
    w.add_name(model_dir.name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    # WordPiece in llama.cpp's form: "##x" continues a word ("x"), other pieces start one ("\u2581x").
    vocab: dict[str, int] = tok["model"]["vocab"]
    special = {t["id"]: t for t in tok.get("added_tokens", [])}
    by_id = sorted(vocab, key=vocab.__getitem__)
    tokens = [t if i in special else (t[2:] if t.startswith("##") else "\u2581" + t) for i, t in enumerate(by_id)]
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(by_id))]
    w.add_token_type_count(cfg.get("type_vocab_size", 1))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")  # what llama.cpp's converter derives for this vocabulary; unused by WPM
    w.add_token_list(tokens)
    w.add_token_types(types)
    ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    w.add_bos_token_id(ids["[CLS]"])
    w.add_eos_token_id(ids["[SEP]"])
    w.add_unk_token_id(ids["[UNK]"])
    w.add_sep_token_id(ids["[SEP]"])
    w.add_pad_token_id(ids["[PAD]"])
    w.add_mask_token_id(ids["[MASK]"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    weights = load_safetensors(model_dir / "model.safetensors")
    for hf in sorted(weights):
        name = _gguf_name(hf)
        if name is None:
            continue
        data = np.asarray(weights[hf], np.float32)
        f32 = data.ndim <= 1 or name.endswith("_norm.weight") or name.split(".")[0] in ("position_embd", "token_types")
        w.add_tensor(name, data if f32 else data.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class GgufBert(BertTokens):
    """Same interface as `MiniLM` (tokens, `prepare`, `encode_prepared`, `encode`), llama.cpp underneath.

    One llama.cpp context is not thread-safe: calls are serialized by a lock. The embedding thread of
    `LocalEmbedder` makes nearly all of them (its OpenMP pool stays with it); the semantic cache's thread the rest.
    """

    quantization = "F16"

    def __init__(self, model_dir: Path | None = None, cache_dir: Path | None = None,
                 threads: int | None = None) -> None:
        from llama_cpp import llama_cpp as L

        super().__init__(model_dir or find_model_dir())
        if cache_dir is None:
            from hearth.config.local import home_dir

            cache_dir = home_dir() / "models"
        self.path = gguf_file(self.dir, cache_dir)
        self._L = L
        self._lock = threading.Lock()
        if not log.isEnabledFor(logging.DEBUG):
            from llama_cpp import _logger

            _logger.set_verbose(False)  # llama.cpp prints dozens of lines per load otherwise
        from hearth.engine.build import init_backends

        init_backends(L)
        self.model = L.llama_model_load_from_file(str(self.path).encode(), L.llama_model_default_params())
        if not self.model:  # a damaged file (a full disk, a copy cut short): write it again, once
            self.path.unlink(missing_ok=True)
            self.path = gguf_file(self.dir, cache_dir)
            self.model = L.llama_model_load_from_file(str(self.path).encode(), L.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {self.path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = _BATCH
        cp.n_seq_max = _SEQS
        cp.kv_unified = True  # one cache for all sequences (each decode starts empty anyway)
        cp.embeddings = True
        cp.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.n_threads = cp.n_threads_batch = threads or min(4, os.cpu_count() or 1)
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create an embedding context for {self.path}")
        self._batch = L.llama_batch_init(_BATCH, 0, _SEQS)
        self._mem = L.llama_get_memory(self.ctx)

    def encode_tokenized(self, enc: list[Any]) -> np.ndarray:
        out = np.zeros((len(enc), DIM), np.float32)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        packs: list[list[int]] = []
        used = 0
        for i in order:
            n = len(enc[i].ids)
            if not packs or used + n > GROUP_TOKENS or len(packs[-1]) >= _SEQS:
                packs.append([])
                used = 0
            packs[-1].append(i)
            used += n
        with self._lock:
            if not self.ctx:
                raise RuntimeError("the embedding model was closed")
            for pack in packs:
                out[pack] = self._decode([enc[i].ids for i in pack])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _decode(self, seqs: list[list[int]]) -> np.ndarray:
        L, b = self._L, self._batch
        n = 0
        for s, ids in enumerate(seqs):
            for pos, t in enumerate(ids):
                b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = t, pos, 1, True
                b.seq_id[n][0] = s
                n += 1
        b.n_tokens = n
        if self._mem:
            L.llama_memory_clear(self._mem, True)
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}) on {len(seqs)} texts")
        rows = np.empty((len(seqs), DIM), np.float32)
        for s in range(len(seqs)):
            ptr = L.llama_get_embeddings_seq(self.ctx, s)
            rows[s] = np.ctypeslib.as_array(ptr, shape=(DIM,))
        return rows

    def close(self) -> None:
        L = self._L
        with self._lock:
            if self.ctx:
                L.llama_batch_free(self._batch)
                L.llama_free(self.ctx)
                L.llama_model_free(self.model)
                self.ctx = self.model = None
