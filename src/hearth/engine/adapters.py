"""LoRA adapters on the engine's one context: loaded at run time, chosen per step.

llama.cpp sets adapters on a context, not on a sequence (`llama_set_adapters_lora`), so one decode step
runs under one adapter set: sequences of different adapters cannot share a batch. The engine therefore
groups its seated sequences by adapter and gives each step to the group whose most urgent sequence is
due first (the same deadline the scheduler already orders by); sequences of one adapter still decode
together. The KV cache is per adapter too (an adapter changes the keys and values of every layer it
touches and of every layer after it), which is why the slot table keys cached prefixes by adapter.

Everything here runs on the engine thread, the only thread that touches the context.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from hearth.core.errors import BadRequest

BASE = ""  # the key of "no adapter"


@dataclass
class Adapter:
    key: str
    path: str
    scale: float
    handle: Any  # llama_adapter_lora pointer


class AdapterSet:
    def __init__(self, L: Any, model: Any, ctx: Any) -> None:
        self._L = L
        self._model = model
        self._ctx = ctx
        self.loaded: dict[str, Adapter] = {}
        self.current = BASE
        self.switches = 0  # context adapter changes: each costs a graph rebuild on the next decode

    def load(self, key: str, path: str, scale: float) -> None:
        if key in self.loaded:
            old = self.loaded[key]
            if old.path == path:
                old.scale = scale
                return
            self.unload(key)
        handle = self._L.llama_adapter_lora_init(self._model, path.encode())
        if not handle:
            raise BadRequest(f"llama.cpp refused the adapter {path}: not a LoRA GGUF, or made for another base "
                             "model (its architecture or tensor shapes differ)", param="adapter")
        self.loaded[key] = Adapter(key, path, scale, handle)

    def unload(self, key: str) -> None:
        a = self.loaded.pop(key, None)
        if a is None:
            return
        if self.current == key:
            self.apply(BASE)
        self._L.llama_adapter_lora_free(a.handle)

    def apply(self, key: str) -> None:
        """Put `key`'s adapter (or none) on the context before a step, when it is not there already."""
        if key == self.current:
            return
        L = self._L
        if key == BASE:
            rc = L.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            a = self.loaded[key]
            handles = (L.llama_adapter_lora_p_ctypes * 1)(a.handle)
            scales = (ctypes.c_float * 1)(a.scale)
            rc = L.llama_set_adapters_lora(self._ctx, handles, 1, scales)
        if rc != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed with code {rc}")
        self.current = key
        self.switches += 1

    def free_all(self) -> None:
        for key in list(self.loaded):
            self.unload(key)
