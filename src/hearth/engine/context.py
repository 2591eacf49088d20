"""What llama.cpp holds for one loaded model: the weights, one context (its KV cache), the vocabulary, the
LoRA adapters; opened and freed on the engine thread, which is the only thread that decodes.

Apart from the engine's scheduling loop (llama_engine.py) because it is a different job: this part knows
llama.cpp's structures and parameters, the loop knows sequences, deadlines and slots.
"""

from __future__ import annotations

import ctypes
import logging
import time
from typing import Any

from hearth.core.errors import HearthError
from hearth.engine.adapters import AdapterSet
from hearth.engine.tokens import Tokenizer

log = logging.getLogger("hearth.engine")


class LlamaContext:
    def __init__(self, model_paths: list[str], *, threads: int, n_batch: int, extra_bufts: bool = True,
                 flash_attn: str = "auto") -> None:
        """`extra_bufts`: llama.cpp's extra weight buffers (repacked layouts, AMX tiles where compiled in); off
        only where a build crashes with them (engine/probe.py decides). `flash_attn`: on, off or auto (llama.cpp
        decides: on, for CPUs). Measured on a 2-core Xeon, neither wins everywhere: off, the next turn of a chat
        after a 1,900-token prefix prefills 50 tokens in 0.39 s instead of 1.56 s (one conversation cached) or
        0.93 s instead of 1.48 s (seven cached); but without flash attention every step attends over the KV
        cells of every cached conversation, so long prefills get 2.3x slower once several are cached (xiaozhi's
        tool turns on `local`: 70 s instead of 18 s). Auto stays the default."""
        self.model_paths = model_paths  # one file, or every part of a split model in order
        self.model_path = model_paths[0]
        self.threads = threads
        self.extra_bufts = extra_bufts
        self.flash_attn = flash_attn
        self.n_batch = n_batch
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.n_vocab = 0
        self.chat_template: str | None = None
        self.adapters: AdapterSet | None = None  # set when the model loads
        self.load_seconds = 0.0
        self._L: Any = None  # llama_cpp's low-level module, bound when the model loads
        self._batch: Any = None
        self._mem: Any = None
        self.tokenizer: Tokenizer = None  # type: ignore[assignment]  # set when the model loads

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Text a template made (control tokens' texts are the tokens); tenant text goes through
        `tokenizer.text` or `tokenizer.rendered` (engine/tokens.py). Thread-safe: the vocab is read-only."""
        return self.tokenizer.template(text, add_special)

    def token_text(self, token: int) -> str:
        L = self._L

        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def _open(self, *, kv_cells: int, batch: int, n_seq: int) -> None:
        """Load the weights and make the context: `kv_cells` KV cells shared by `n_seq` sequences, `batch`
        tokens per decode at most."""
        from llama_cpp import llama_cpp as L

        self._L = L  # imported once, here; the per-step and per-token paths only read the attribute

        t0 = time.perf_counter()
        if not log.isEnabledFor(logging.DEBUG):
            from llama_cpp import _logger

            _logger.set_verbose(False)  # llama.cpp prints hundreds of lines per load otherwise
        from hearth.engine.build import init_backends

        init_backends(L)
        mp = L.llama_model_default_params()
        mp.use_extra_bufts = self.extra_bufts
        if len(self.model_paths) > 1:
            paths = (ctypes.c_char_p * len(self.model_paths))(*(p.encode() for p in self.model_paths))
            self.model = L.llama_model_load_from_splits(paths, len(self.model_paths), mp)
        else:
            self.model = L.llama_model_load_from_file(self.model_path.encode(), mp)
        if not self.model:
            raise HearthError(f"llama.cpp could not load {self.model_path} (not a valid GGUF model?)")
        cp = L.llama_context_default_params()
        cp.n_ctx = kv_cells
        cp.n_batch = batch
        cp.n_ubatch = batch
        cp.n_seq_max = n_seq
        cp.kv_unified = True
        cp.flash_attn_type = {"on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}.get(
            self.flash_attn, L.LLAMA_FLASH_ATTN_TYPE_AUTO)
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise HearthError(f"llama.cpp could not create a context for {self.model_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.tokenizer = Tokenizer(L, self.vocab)
        tmpl = L.llama_model_chat_template(self.model, None)
        self.chat_template = tmpl.decode("utf-8") if tmpl else None
        self._batch = L.llama_batch_init(batch, 0, 1)
        self._mem = L.llama_get_memory(self.ctx)
        self.adapters = AdapterSet(L, self.model, self.ctx)
        self.load_seconds = time.perf_counter() - t0

    def check_decode(self) -> None:
        """A prompt's worth of tokens and one more through the model: what the engine check runs in its child
        (prefill and decode take different kernels; either may be the one that crashes)."""
        L = self._L
        tokens = self.tokenize("Engine check: hello, 你好, 1 2 3.", add_special=True)[: max(1, self.n_batch)]
        for part in (tokens, tokens[-1:]):
            arr = (L.llama_token * len(part))(*part)
            rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(part)))
            if rc != 0:
                raise HearthError(f"llama_decode returned {rc} in the engine check")

    def _free(self) -> None:
        L = self._L
        if self.adapters is not None:
            self.adapters.free_all()
            self.adapters = None
        if self.ctx:
            L.llama_batch_free(self._batch)
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None
