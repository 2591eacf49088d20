"""Trains a LoRA adapter on the CPU: transformers loads the GGUF base model (it dequantizes the weights to
float32), peft adds the LoRA matrices on every linear layer, and a plain loop trains them on the
assistant's answers only (the prompt is context, not something to learn to say).

Checkpoints are written every `save_every` steps and at the end of each epoch; a run started again with the
same data and options carries on from the last one (an interrupted two-hour run does not start over).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.tune.data import Example

Progress = Callable[[int, int, float, float], None]  # step, total steps, loss, seconds so far


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 3
    learning_rate: float = 1e-3
    rank: int = 16
    alpha: int = 32
    batch_size: int = 4
    max_length: int = 512
    seed: int = 0
    save_every: int = 20


@dataclass(frozen=True)
class Trained:
    adapter_dir: Path  # peft's adapter_model.safetensors + adapter_config.json
    base_config_dir: Path  # the base model's config.json, which llama.cpp's converter reads
    steps: int
    final_loss: float
    resumed_from: int


def _imports() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as e:
        raise RuntimeError(f"fine-tuning needs the finetune extra: pip install 'hearth[finetune]' ({e.name} is "
                           "missing)") from None
    return torch, transformers, peft


def train(base: Path, examples: list[Example], work: Path, opts: TrainOptions, progress: Progress) -> Trained:
    torch, transformers, peft = _imports()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(os.cpu_count() or 2)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "base"
    model_dir.mkdir(exist_ok=True)
    link = model_dir / "model.gguf"  # transformers wants a folder and a file name; blobs have no extension
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(base.resolve())
    tok = transformers.AutoTokenizer.from_pretrained(model_dir, gguf_file=link.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=link.name, dtype=torch.float32)
    config_dir = _save_base_config(model, work / "base_config")
    lora = peft.LoraConfig(r=opts.rank, lora_alpha=opts.alpha, target_modules="all-linear", lora_dropout=0.0,
                           task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, lora)
    params = [p for p in pm.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.learning_rate)
    encoded = [_encode(tok, ex, opts.max_length) for ex in examples]
    batches_per_epoch = -(-len(encoded) // opts.batch_size)
    total = batches_per_epoch * opts.epochs
    fingerprint = _fingerprint(base, examples, opts)
    ckpt = work / "checkpoint"
    start = _resume(ckpt, fingerprint, pm, optim, torch, peft)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    pm.train()
    t0 = time.perf_counter()
    loss_value = float("nan")
    step = start
    for step in range(start, total):
        epoch, index = divmod(step, batches_per_epoch)
        order = list(range(len(encoded)))
        random.Random(opts.seed + epoch).shuffle(order)
        chunk = [encoded[i] for i in order[index * opts.batch_size : (index + 1) * opts.batch_size]]
        ids, labels, mask = _pad(chunk, pad, torch)
        loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        loss_value = float(loss.detach())
        done = step + 1
        progress(done, total, loss_value, time.perf_counter() - t0)
        if done % opts.save_every == 0 or index == batches_per_epoch - 1:
            _checkpoint(ckpt, pm, optim, done, fingerprint, torch)
    pm.eval()
    out = work / "adapter"
    shutil.rmtree(out, ignore_errors=True)
    pm.save_pretrained(out)
    return Trained(out, config_dir, total, loss_value, start)


def _encode(tok: Any, ex: Example, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation, and labels that keep only the final answer's tokens."""
    full = tok.apply_chat_template(ex.messages, tokenize=False)
    prompt = tok.apply_chat_template(ex.prompt, tokenize=False, add_generation_prompt=True)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    labels = [-100] * n_prompt + ids[n_prompt:]
    if len(ids) > max_length:  # keep the answer: cut the oldest context
        ids, labels = ids[-max_length:], labels[-max_length:]
    return ids, labels


def _pad(chunk: list[tuple[list[int], list[int]]], pad: int, torch: Any) -> tuple[Any, Any, Any]:
    width = max(len(ids) for ids, _ in chunk)
    ids = [i + [pad] * (width - len(i)) for i, _ in chunk]
    labels = [lab + [-100] * (width - len(lab)) for _, lab in chunk]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk]
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def _save_base_config(model: Any, folder: Path) -> Path:
    """The base model's config as llama.cpp's converter reads it: with its architecture, without the note
    that it came from a GGUF (the converter would take the adapter for a quantized model)."""
    folder.mkdir(parents=True, exist_ok=True)
    d = model.config.to_dict()
    d.pop("quantization_config", None)
    d["architectures"] = [type(model).__name__]
    (folder / "config.json").write_text(json.dumps(d, indent=1, default=str))
    return folder


def _fingerprint(base: Path, examples: list[Example], opts: TrainOptions) -> str:
    h = hashlib.sha256()
    h.update(f"{base.resolve()}:{base.stat().st_size}".encode())
    h.update(json.dumps([e.messages for e in examples]).encode())
    h.update(json.dumps(asdict(opts), sort_keys=True).encode())
    return h.hexdigest()


def _checkpoint(folder: Path, pm: Any, optim: Any, step: int, fingerprint: str, torch: Any) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pm.save_pretrained(tmp)
    torch.save(optim.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a checkpoint is whole or absent


def _resume(folder: Path, fingerprint: str, pm: Any, optim: Any, torch: Any, peft: Any) -> int:
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return 0
    if state.get("fingerprint") != fingerprint:
        return 0  # other data or options: a checkpoint of another run
    from safetensors.torch import load_file

    peft.set_peft_model_state_dict(pm, load_file(str(folder / "adapter_model.safetensors")))
    optim.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return int(state["step"])
