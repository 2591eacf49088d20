"""The in-process llama.cpp engine: one dedicated thread owns the model and its context.

Why one thread: this llama.cpp build uses OpenMP, whose worker pool belongs to the calling thread;
calling llama from several threads piles up pools and costs a third of decode speed (measured in
shared/local-anchor). So the loop below is the only caller of decode, and the rest of hearth talks
to it through `submit()` and per-job `emit` callbacks.

Each step of the loop builds one llama batch: the next token of every decoding sequence plus a
chunk of at most `n_batch` prompt tokens of the oldest sequence still prefilling. Sequences join and
leave between steps, so a long prompt never freezes the streams already running, and several
streams decode for little more than the cost of one (decoding on a CPU is memory-bound).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hearth.core.errors import BadRequest, HearthError, Overloaded
from hearth.core.types import Finish, FinishReason, Sampling, TextDelta, Usage
from hearth.engine.slots import SlotTable

log = logging.getLogger("hearth.engine")

# What the engine thread hands the event loop for a job: chunks, and at most one error that ends it.
EngineItem = TextDelta | Usage | Finish | HearthError
Emit = Callable[[EngineItem], None]

DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}


class GenJob:
    """One generation. Created on the event loop, then owned by the engine thread."""

    __slots__ = (
        "cached", "cancelled", "decoder", "emit", "grammar", "held", "last_token", "logprob", "logprobs", "max_new",
        "n_gen", "pos", "prompt", "sampler", "sampling", "slot", "stops", "t_admit", "t_first", "todo",
    )  # fmt: skip

    def __init__(
        self, prompt: list[int], sampling: Sampling, max_new: int, emit: Emit, logprobs: bool = False,
        grammar: str | None = None,
    ) -> None:  # fmt: skip
        self.prompt = prompt
        self.grammar = grammar
        self.logprobs = logprobs  # attach each token's log-probability to its text
        self.logprob = 0.0
        self.sampling = sampling
        self.max_new = max_new
        self.stops = [s for s in sampling.stop if s]
        self.emit = emit
        self.cancelled = False
        self.slot: Any = None
        self.sampler: Any = None
        self.todo: list[int] = []
        self.pos = 0
        self.cached = 0
        self.n_gen = 0
        self.last_token = -1
        self.held = ""  # text withheld because it may be the start of a stop string
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.t_admit = 0.0
        self.t_first = 0.0


class EngineStats:
    def __init__(self) -> None:
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.reused_tokens = 0
        self.prefilled_tokens = 0
        self.generated_tokens = 0
        self.evictions = 0


class LlamaEngine:
    def __init__(
        self, model_path: str, *, n_ctx: int, threads: int, n_batch: int, max_sequences: int,
        kv_tokens: int, n_slots: int, max_queue: int, prefill_chunk: int = 64,
    ) -> None:  # fmt: skip
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.n_batch = n_batch
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.max_sequences = max_sequences
        self.kv_tokens = kv_tokens
        self.max_queue = max_queue
        self.slots = SlotTable(max(n_slots, max_sequences + 1))
        self.stats = EngineStats()
        self._inbox: deque[GenJob] = deque()
        self._active: list[GenJob] = []
        self._cv = threading.Condition()
        self._stop = False
        self._loaded = threading.Event()
        self.load_error: BaseException | None = None
        self.load_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=f"llama:{model_path.rsplit('/', 1)[-1]}",
                                        daemon=True)  # fmt: skip
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.n_vocab = 0
        self.chat_template: str | None = None
        self._piece = ctypes.create_string_buffer(256)
        self._L: Any = None  # llama_cpp's low-level module, bound when the model loads

    # --- called from other threads -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self) -> None:
        self._loaded.wait()
        if self.load_error is not None:
            raise self.load_error

    def submit(self, job: GenJob) -> None:
        with self._cv:
            if self._stop:
                raise HearthError("the engine is shutting down", status=503)
            running, waiting = len(self._active), len(self._inbox)
            # Jobs in the inbox have not been seated yet, so capacity counts both places together.
            if running + waiting >= self.max_sequences + self.max_queue:
                raise Overloaded(
                    f"the local model is busy: {running} running and {waiting} waiting "
                    f"(max_sequences {self.max_sequences}, max_queue {self.max_queue}); retry later",
                    retry_after=1.0,
                )
            self._inbox.append(job)
            self._cv.notify()

    def cancel(self, job: GenJob) -> None:
        with self._cv:
            job.cancelled = True
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def queue_depth(self, arriving: int = 0) -> int:
        """Requests that cannot get a sequence slot now (the inbox also holds, for one step, jobs that can);
        `arriving` counts requests about to be submitted (still being tokenized)."""
        return max(0, len(self._inbox) + len(self._active) + arriving - self.max_sequences)

    def active_count(self) -> int:
        return len(self._active)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Thread-safe (the vocab is read-only) and OpenMP-free, so callers may use any thread."""
        L = self._L

        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (L.llama_token * n_max)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, True)
        if n < 0:
            n_max = -n
            buf = (L.llama_token * n_max)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, True)
        return list(buf[:n])

    def token_text(self, token: int) -> str:
        L = self._L

        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    # --- the engine thread ---------------------------------------------------------------------

    def _load(self) -> None:
        from llama_cpp import llama_cpp as L

        self._L = L  # imported once, here; the per-step and per-token paths only read the attribute

        t0 = time.perf_counter()
        if not log.isEnabledFor(logging.DEBUG):
            from llama_cpp import _logger

            _logger.set_verbose(False)  # llama.cpp prints hundreds of lines per load otherwise
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(self.model_path.encode(), mp)
        if not self.model:
            raise HearthError(f"llama.cpp could not load {self.model_path} (not a valid GGUF model?)")
        cp = L.llama_context_default_params()
        cp.n_ctx = self.kv_tokens
        cp.n_batch = self.n_batch + self.max_sequences
        cp.n_ubatch = cp.n_batch
        cp.n_seq_max = len(self.slots.slots)
        cp.kv_unified = True
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise HearthError(f"llama.cpp could not create a context for {self.model_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        tmpl = L.llama_model_chat_template(self.model, None)
        self.chat_template = tmpl.decode("utf-8") if tmpl else None
        self._batch = L.llama_batch_init(cp.n_batch, 0, 1)
        self._mem = L.llama_get_memory(self.ctx)
        self.load_seconds = time.perf_counter() - t0

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as e:  # reported to whoever waits for the load
            self.load_error = e
            self._loaded.set()
            return
        self._loaded.set()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._inbox and not self._active:
                    self._cv.wait()
                if self._stop:
                    return
                admitted: list[GenJob] = []
                while self._inbox and len(self._active) + len(admitted) < self.max_sequences:
                    admitted.append(self._inbox.popleft())
            for job in admitted:
                if job.cancelled:
                    continue
                try:
                    self._seat(job)
                except BaseException as e:
                    job.emit(e if isinstance(e, HearthError) else HearthError(f"local engine failed: {e}"))
                    continue
                self._active.append(job)
            for job in [j for j in self._active if j.cancelled]:
                self._release(job)
            if self._active:
                try:
                    self._step()
                except Exception as e:  # a llama failure must not kill the thread: fail what ran
                    log.exception("engine step failed")
                    for job in list(self._active):
                        job.emit(HearthError(f"local engine failed: {e}"))
                        self._release(job)

    def _seat(self, job: GenJob) -> None:
        L = self._L

        plan = self.slots.plan(job.prompt)
        assert plan is not None, "more active sequences than slots"
        slot, reuse = plan.slot, plan.reuse
        if plan.copy_from is not None:
            L.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            L.llama_memory_seq_cp(self._mem, plan.copy_from.seq_id, slot.seq_id, 0, reuse)
            slot.tokens = job.prompt[:reuse]
        elif not L.llama_memory_seq_rm(self._mem, slot.seq_id, reuse, -1):
            L.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            reuse = 0
            slot.tokens = []
        else:
            del slot.tokens[reuse:]
        slot.busy = True
        slot.last_used = self.slots.tick()
        job.slot = slot
        job.cached = reuse
        job.pos = reuse
        job.todo = job.prompt[reuse:]
        job.sampler = self._make_sampler(job.sampling, job.grammar)
        job.t_admit = time.perf_counter()
        st = self.stats
        if reuse:
            st.prefix_hits += 1
            st.reused_tokens += reuse
        else:
            st.prefix_misses += 1

    def _make_sampler(self, s: Sampling, grammar: str | None = None) -> Any:
        L = self._L

        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = L.llama_sampler_chain_add
        if grammar:  # first: it masks every token the grammar forbids, before any other sampler looks
            g = L.llama_sampler_init_grammar(self.vocab, grammar.encode("utf-8"), b"root")
            if not g:
                L.llama_sampler_free(chain)
                raise BadRequest("the output grammar could not be parsed by llama.cpp")
            add(chain, g)
        if s.logit_bias:
            arr = (L.llama_logit_bias * len(s.logit_bias))()
            for i, (tok, bias) in enumerate(s.logit_bias.items()):
                arr[i].token, arr[i].bias = int(tok), float(bias)
            add(chain, L.llama_sampler_init_logit_bias(self.n_vocab, len(s.logit_bias), arr))
        rp = s.repeat_penalty if s.repeat_penalty is not None else 1.0
        fp, pp = s.frequency_penalty or 0.0, s.presence_penalty or 0.0
        if rp != 1.0 or fp or pp:
            add(chain, L.llama_sampler_init_penalties(self.n_vocab, 64, rp, fp, pp))
        temp = s.temperature if s.temperature is not None else DEFAULTS["temperature"]
        if temp <= 0:
            add(chain, L.llama_sampler_init_greedy())
            return chain
        top_k = s.top_k if s.top_k is not None else DEFAULTS["top_k"]
        if top_k > 0:
            add(chain, L.llama_sampler_init_top_k(top_k))
        add(chain, L.llama_sampler_init_top_p(s.top_p if s.top_p is not None else DEFAULTS["top_p"], 1))
        add(chain, L.llama_sampler_init_min_p(s.min_p if s.min_p is not None else DEFAULTS["min_p"], 1))
        add(chain, L.llama_sampler_init_temp(temp))
        seed = s.seed if s.seed is not None else L.LLAMA_DEFAULT_SEED
        add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _step(self) -> None:
        L = self._L

        b = self._batch
        n = 0
        outputs: list[tuple[GenJob, int]] = []  # (job, batch index of its logits)
        fed: list[tuple[GenJob, list[int]]] = []
        for job in self._active:  # decoding sequences first: one token each
            if not job.todo:
                n = self._put(b, n, job.last_token, job.pos, job.slot.seq_id, True)
                outputs.append((job, n - 1))
                fed.append((job, [job.last_token]))
        # Then prompt chunks, oldest first. While others decode, a step must stay short (a 256-token chunk
        # takes ~1.2 s on 2 cores), so the budget shrinks to prefill_chunk and their streams keep moving.
        budget = self.prefill_chunk if outputs else self.n_batch
        for job in self._active:
            if job.todo and budget > 0:
                take = job.todo[:budget]
                last = len(take) == len(job.todo)
                for i, tok in enumerate(take):
                    n = self._put(b, n, tok, job.pos + i, job.slot.seq_id, last and i == len(take) - 1)
                if last:
                    outputs.append((job, n - 1))
                fed.append((job, take))
                budget -= len(take)
        b.n_tokens = n
        rc = L.llama_decode(self.ctx, b)
        if rc == 1:  # no room in the KV cache: drop the least recently used cached prefix, retry
            if self._evict_one():
                return
            victim = max(self._active, key=lambda j: len(j.todo) + j.pos)
            victim.emit(HearthError("the local model's KV cache is full; retry later", status=503))
            self._release(victim)
            return
        if rc != 0:
            raise HearthError(f"llama_decode failed with code {rc}")
        for job, toks in fed:
            job.slot.tokens.extend(toks)
            job.pos += len(toks)
            if job.todo:  # a prompt chunk (decoding jobs have nothing left to prefill)
                del job.todo[: len(toks)]
                self.stats.prefilled_tokens += len(toks)
        for job, idx in outputs:
            tok = L.llama_sampler_sample(job.sampler, self.ctx, idx)
            if job.logprobs:
                job.logprob = self._logprob(idx, tok)
            self._on_token(job, tok)

    def _logprob(self, idx: int, tok: int) -> float:
        """log p(tok) under the model's raw distribution, read before the next decode overwrites the logits."""
        import numpy as np

        L = self._L

        x = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, idx), shape=(self.n_vocab,))
        m = float(x.max())
        return float(x[tok]) - m - float(np.log(np.exp(x - m).sum()))

    @staticmethod
    def _put(b: Any, n: int, tok: int, pos: int, seq: int, logits: bool) -> int:
        b.token[n] = tok
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq
        b.logits[n] = logits
        return n + 1

    def _on_token(self, job: GenJob, tok: int) -> None:
        L = self._L

        if job.n_gen == 0:
            job.t_first = time.perf_counter()
        if L.llama_vocab_is_eog(self.vocab, tok):
            self._finish(job, "stop")
            return
        job.n_gen += 1
        self.stats.generated_tokens += 1
        buf = self._piece
        k = L.llama_token_to_piece(self.vocab, tok, buf, 256, 0, False)
        piece = buf.raw[:k] if k > 0 else b""
        text = job.held + job.decoder.decode(piece)
        job.held = ""
        if job.stops and text:
            hit = -1
            for s in job.stops:
                i = text.find(s)
                if i >= 0 and (hit < 0 or i < hit):
                    hit = i
            if hit >= 0:
                if hit:
                    job.emit(TextDelta(text[:hit], job.logprob if job.logprobs else None))
                self._finish(job, "stop", flush=False)
                return
            keep = _stop_prefix_len(text, job.stops)
            if keep:
                text, job.held = text[:-keep], text[-keep:]
        if text:
            job.emit(TextDelta(text, job.logprob if job.logprobs else None))
        if job.n_gen >= job.max_new or job.pos + 1 >= self.n_ctx:
            self._finish(job, "length")
            return
        job.last_token = tok

    def _finish(self, job: GenJob, reason: FinishReason, flush: bool = True) -> None:
        if flush:
            rest = job.held + job.decoder.decode(b"", True)
            if rest:
                job.emit(TextDelta(rest))
        now = time.perf_counter()
        t_first = job.t_first or now
        job.emit(Usage(
            len(job.prompt), job.n_gen, prompt_seconds=t_first - job.t_admit,
            completion_seconds=now - t_first, cached_tokens=job.cached,
        ))  # fmt: skip
        job.emit(Finish(reason))
        self._release(job)

    def _release(self, job: GenJob) -> None:
        L = self._L

        if job in self._active:
            self._active.remove(job)
        if job.sampler is not None:
            L.llama_sampler_free(job.sampler)
            job.sampler = None
        if job.slot is not None:
            job.slot.busy = False
            job.slot.last_used = self.slots.tick()
            job.slot = None

    def _evict_one(self) -> bool:
        L = self._L

        slot = self.slots.eviction_candidate()
        if slot is None:
            return False
        L.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.tokens = []
        self.stats.evictions += 1
        return True

    def _shutdown(self) -> None:
        L = self._L

        for job in list(self._active) + list(self._inbox):
            job.emit(HearthError("the engine stopped", status=503))
            self._release(job)
        self._inbox.clear()
        if self.ctx:
            L.llama_batch_free(self._batch)
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
