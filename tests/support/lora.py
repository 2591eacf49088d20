"""A random LoRA adapter for a GGUF model, written with the `gguf` package: llama.cpp loads it like a trained
one (same keys, same shapes), and it changes what the model says, which is all the engine's adapter
plumbing tests need. It teaches nothing (tests/lifecycle/test_finetune.py trains a real one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hearth.lifecycle.gguf_meta import details, read_meta


def random_lora(model: Path, out: Path, *, rank: int = 8, seed: int = 0, strength: float = 0.05,
                arch: str | None = None) -> Path:  # fmt: skip
    """LoRA on every layer's q and v projections of `model`; `arch` writes another architecture's name
    (an adapter for another base model)."""
    import gguf

    meta = read_meta(model)
    d = details(meta)
    family = d["family"]
    n_embd = int(meta[f"{family}.embedding_length"])
    q_out = int(meta[f"{family}.attention.head_count"]) * d["key_length"]
    v_out = d["head_count_kv"] * d["value_length"]
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(out), arch or family)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for i in range(d["block_count"]):
        for name, n_out in (("attn_q", q_out), ("attn_v", v_out)):
            # numpy shapes are ggml's reversed: A is (rank, n_in), B is (n_out, rank).
            a = rng.standard_normal((rank, n_embd)).astype(np.float32) * strength
            b = rng.standard_normal((n_out, rank)).astype(np.float32) * strength
            w.add_tensor(f"blk.{i}.{name}.weight.lora_a", a)
            w.add_tensor(f"blk.{i}.{name}.weight.lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
