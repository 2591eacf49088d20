"""A random LoRA adapter for a GGUF model, written with the `gguf` package: llama.cpp loads it like a trained
one (same keys, same shapes), and it changes what the model says, which is all adapter plumbing tests and
speed measurements need. It teaches nothing (`hearth finetune` trains real ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hearth.gguf_meta import details, read_meta

ATTENTION = ("attn_q", "attn_v")
ALL_LINEAR = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")  # as peft's all-linear


def random_lora(model: Path, out: Path, *, rank: int = 8, seed: int = 0, strength: float = 0.05,
                arch: str | None = None, modules: tuple[str, ...] = ATTENTION) -> Path:
    """LoRA on `modules` of every layer of `model`; `arch` writes another architecture's name (an adapter for
    another base model). Needs the `gguf` package."""
    import gguf

    meta = read_meta(model)
    d = details(meta)
    family = d["family"]
    n_embd = int(meta[f"{family}.embedding_length"])
    n_ff = int(meta[f"{family}.feed_forward_length"])
    q_out = int(meta[f"{family}.attention.head_count"]) * d["key_length"]
    kv_out = d["head_count_kv"] * d["value_length"]
    shapes = {"attn_q": (n_embd, q_out), "attn_k": (n_embd, kv_out), "attn_v": (n_embd, kv_out),
              "attn_output": (q_out, n_embd), "ffn_gate": (n_embd, n_ff), "ffn_up": (n_embd, n_ff),
              "ffn_down": (n_ff, n_embd)}  # (inputs, outputs)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(out), arch or family)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for i in range(d["block_count"]):
        for name in modules:
            n_in, n_out = shapes[name]
            # numpy shapes are ggml's reversed: A is (rank, n_in), B is (n_out, rank).
            a = rng.standard_normal((rank, n_in)).astype(np.float32) * strength
            b = rng.standard_normal((n_out, rank)).astype(np.float32) * strength
            w.add_tensor(f"blk.{i}.{name}.weight.lora_a", a)
            w.add_tensor(f"blk.{i}.{name}.weight.lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
