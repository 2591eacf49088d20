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

import concurrent.futures
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hearth.core.errors import HearthError, Overloaded
from hearth.core.types import Finish, FinishReason, Sampling, TextDelta, Usage
from hearth.engine.context import LlamaContext
from hearth.engine.costs import StepCosts
from hearth.engine.job import EngineStats, GenJob, stop_prefix_len
from hearth.engine.sampler import make_sampler
from hearth.engine.schedule import FILL_WIDTH, URGENT_LEAD, park_candidate, plan_step, resume_order
from hearth.engine.slots import SlotTable

log = logging.getLogger("hearth.engine")

MAX_SEQUENCES = 64  # llama.cpp's LLAMA_MAX_SEQ: a context with more sequence ids aborts the process


class LlamaEngine(LlamaContext):
    def __init__(
        self, model_paths: list[str], *, n_ctx: int, threads: int, n_batch: int, max_sequences: int,
        kv_tokens: int, n_slots: int, max_queue: int, prefill_chunk: int = 64, extra_bufts: bool = True,
        flash_attn: str = "auto",
    ) -> None:
        super().__init__(model_paths, threads=threads, n_batch=n_batch, extra_bufts=extra_bufts, flash_attn=flash_attn)
        self.n_ctx = n_ctx
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.max_sequences = max_sequences
        self.kv_tokens = kv_tokens
        self.max_queue = max_queue
        # Room for every place, as many parked streams, and one idle slot to seat a new turn in; llama.cpp
        # aborts the process past 64 sequences, so parking is what gives way above 31 places.
        self.slots = SlotTable(min(MAX_SEQUENCES, max(n_slots, 2 * max_sequences + 1)))
        self.max_parked = len(self.slots.slots) - max_sequences - 1
        self.stats = EngineStats()
        self.costs = StepCosts(max_sequences)
        self._inbox: deque[GenJob] = deque()
        self._active: list[GenJob] = []  # seated jobs holding a place: the scheduler picks among them
        self._parked: list[GenJob] = []  # seated jobs (KV and sampler kept) that gave their place away
        self._cv = threading.Condition()
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._last_group = ""  # the adapter the last step ran under
        self._stop = False
        self._loaded = threading.Event()
        self.load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"llama:{self.model_path.rsplit('/', 1)[-1]}",
                                        daemon=True)
        self._piece = ctypes.create_string_buffer(256)

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

    def call(self, fn: Callable[[LlamaEngine], Any]) -> concurrent.futures.Future[Any]:
        """Run `fn(engine)` on the engine thread between two steps (loading an adapter touches the model and
        the context, which only that thread may do); the future holds its result or its exception."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cv:
            if self._stop:
                raise HearthError("the engine is shutting down", status=503)
            self._calls.append((lambda: fn(self), fut))
            self._cv.notify()
        return fut

    # Adapter changes, run on the engine thread through `call`.

    def add_adapter(self, key: str, path: str, scale: float) -> None:
        assert self.adapters is not None
        self.adapters.load(key, path, scale)

    def remove_adapter(self, key: str) -> None:
        with self._cv:
            waiting = list(self._inbox)
        busy = sum(1 for j in [*self._active, *self._parked, *waiting] if j.adapter == key and not j.cancelled)
        if busy:
            name = key.split("@", 1)[0]
            raise HearthError(f"adapter {name!r} is answering {busy} request(s); remove it when they end", status=409)
        assert self.adapters is not None
        self.adapters.unload(key)
        for slot in self.slots.slots:  # its cached prefixes can never be reused: free their cells now
            if slot.adapter == key and not slot.busy and slot.tokens:
                self._L.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
                slot.tokens = []

    def cancel(self, job: GenJob) -> None:
        with self._cv:
            job.cancelled = True
            if job in self._inbox:  # frees its place in the queue now, not when the engine gets to it
                self._inbox.remove(job)
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

    def parked_count(self) -> int:
        return len(self._parked)

    # --- the engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open(kv_cells=self.kv_tokens, batch=self.n_batch + self.max_sequences,
                       n_seq=len(self.slots.slots))
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
                while not self._stop and not self._inbox and not self._active and not self._parked and not self._calls:
                    self._cv.wait()
                if self._stop:
                    return
                calls = list(self._calls)
                self._calls.clear()
            for fn, fut in calls:
                try:
                    fut.set_result(fn())
                except BaseException as e:  # the caller gets it; the engine goes on
                    fut.set_exception(e)
            for job in [j for j in self._active + self._parked if j.cancelled]:  # before admission: free places
                self._release(job)
            with self._cv:
                admitted = self._admit(time.perf_counter())
            for i, job in enumerate(admitted):
                if job.cancelled:
                    continue
                try:
                    seated = self._seat(job)
                except BaseException as e:
                    job.emit(e if isinstance(e, HearthError) else HearthError(f"local engine failed: {e}"))
                    continue
                if not seated:
                    if not self._active and not self._parked:  # nothing will free: waiting would spin forever
                        job.emit(HearthError("the request does not fit the local model's KV cache", status=503))
                        continue
                    with self._cv:  # every slot or the KV cache is held: wait for a job to end
                        self._inbox.extendleft(reversed([j for j in admitted[i:] if not j.cancelled]))
                    break
                self._active.append(job)
            self._resume()
            if self._active:
                try:
                    self._step()
                except Exception as e:  # a llama failure must not kill the thread: fail what ran
                    log.exception("engine step failed")
                    for job in list(self._active):
                        job.emit(HearthError(f"local engine failed: {e}"))
                        self._release(job)

    def _admit(self, now: float) -> list[GenJob]:
        """Take new jobs from the inbox (under the lock) while there are places, parking a paced stream that is
        far ahead of its listener when there are none."""
        admitted: list[GenJob] = []
        while self._inbox:
            if self._inbox[0].cancelled:
                self._inbox.popleft()
                continue
            if len(self._active) + len(admitted) >= self.max_sequences:
                victim = park_candidate(self._active, now) if len(self._parked) < self.max_parked else None
                if victim is None:
                    break
                self._park(victim)
            admitted.append(self._inbox.popleft())
        return admitted

    def _resume(self) -> None:
        """Parked streams take free places back, the closest to running dry first; one about to run dry trades
        places with the playing stream furthest ahead."""
        now = time.perf_counter()
        for job in resume_order(self._parked, now):
            if len(self._active) < self.max_sequences:
                self._parked.remove(job)
                self._active.append(job)
                continue
            if job.lead(now) >= URGENT_LEAD:
                break  # the rest are further ahead still: they wait for a free place
            victim = park_candidate(self._active, now)
            if victim is None:
                break
            self._park(victim)
            self._parked.remove(job)
            self._active.append(job)

    def _park(self, job: GenJob) -> None:
        """Take a place from a stream ahead of its listener; its slot stays busy, so its KV cells stay."""
        self._active.remove(job)
        self._parked.append(job)
        self.stats.parked += 1

    def _seat(self, job: GenJob) -> bool:
        L = self._L

        if job.adapter and (self.adapters is None or job.adapter not in self.adapters.loaded):
            raise HearthError(f"adapter {job.adapter!r} is not loaded", status=503)
        plan = self.slots.plan(job.prompt, job.adapter)
        if plan is None or not self._kv_room(job, plan.reuse):
            return False
        # The sampler first: it can fail (a grammar llama.cpp rejects) and must not leave a slot marked busy.
        job.sampler = self._make_sampler(job.sampling, job.grammar)
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
        slot.adapter = job.adapter
        slot.last_used = self.slots.tick()
        job.slot = slot
        job.cached = reuse
        job.pos = reuse
        job.todo = job.prompt[reuse:]
        job.t_admit = time.perf_counter()
        st = self.stats
        if reuse:
            st.prefix_hits += 1
            st.reused_tokens += reuse
        else:
            st.prefix_misses += 1
        return True

    def _kv_room(self, job: GenJob, reuse: int) -> bool:
        """Whether the KV cache can take this job beside the seated ones: what they hold, the prompt they still
        have to prefill and (up to 256) the tokens they may still generate. Their cells are not evictable; idle
        cached prefixes are. With nothing seated, any job that fits the context is tried."""
        seated = self._active + self._parked
        held = sum(len(j.slot.tokens) + len(j.todo) + min(j.max_new - j.n_gen, 256) for j in seated if j.slot)
        need = len(job.prompt) - reuse + min(job.max_new, 256)
        return not seated or held + need <= self.kv_tokens

    def _make_sampler(self, s: Sampling, grammar: str | None = None) -> Any:
        return make_sampler(self._L, self.vocab, self.n_vocab, s, grammar)

    def _step(self) -> None:
        L = self._L

        b = self._batch
        n = 0
        outputs: list[tuple[GenJob, int]] = []  # (job, batch index of its logits)
        fed: list[tuple[GenJob, list[int]]] = []
        now = time.perf_counter()
        plan = plan_step(self._group(), now, self.n_batch, self.prefill_chunk,
                         alone_pays=self.costs.alone_pays(FILL_WIDTH))
        self.stats.sat_out += plan.sat_out
        for job in plan.decode:  # decoding sequences first: one token each
            n = self._put(b, n, job.last_token, job.pos, job.slot.seq_id, True)
            outputs.append((job, n - 1))
            fed.append((job, [job.last_token]))
        # Then prompt chunks, oldest first. While others decode, a step must stay short (a 256-token chunk
        # takes ~1.2 s on 2 cores), so the budget shrinks to prefill_chunk and their streams keep moving.
        budget = plan.budget
        for job in plan.prefill:
            if budget > 0:
                take = job.todo[:budget]
                last = len(take) == len(job.todo)
                for i, tok in enumerate(take):
                    n = self._put(b, n, tok, job.pos + i, job.slot.seq_id, last and i == len(take) - 1)
                if last:
                    outputs.append((job, n - 1))
                fed.append((job, take))
                budget -= len(take)
        if not n:
            return
        b.n_tokens = n
        t0 = time.perf_counter()
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
        self.costs.step(len(plan.decode), n, time.perf_counter() - t0)  # what this machine's steps cost

    def _group(self) -> list[GenJob]:
        """The sequences this step may run: all of them, or, when several adapters are in use (llama.cpp
        applies adapters per context, not per sequence), those of the next adapter in turn, so that every
        adapter's streams move (by deadline alone, the oldest request's adapter would take every step)."""
        active = self._active
        first = active[0].adapter
        if all(j.adapter == first for j in active):
            chosen = first
        else:
            keys = sorted({j.adapter for j in active})
            chosen = next((k for k in keys if k > self._last_group), keys[0])
            active = [j for j in active if j.adapter == chosen]
        self._last_group = chosen
        if self.adapters is not None:
            self.adapters.apply(chosen)
        if chosen:
            self.stats.adapter_steps += 1
        return active

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
                    self._send(job, text[:hit])
                self._finish(job, "stop", flush=False)
                return
            keep = stop_prefix_len(text, job.stops)
            if keep:
                text, job.held = text[:-keep], text[-keep:]
        if text:
            self._send(job, text)
        if job.guard is not None and job.guard.looping(tok):  # the answer has become a loop: end it there
            self.stats.loops_stopped += 1
            return self._finish(job, "stop")
        if job.n_gen >= job.max_new or job.pos + 1 >= self.n_ctx:
            self._finish(job, "length")
            return
        job.last_token = tok

    def _finish(self, job: GenJob, reason: FinishReason, flush: bool = True) -> None:
        if flush:
            rest = job.held + job.decoder.decode(b"", True)
            if rest:
                self._send(job, rest)
        now = time.perf_counter()
        t_first = job.t_first or now
        job.emit(Usage(
            len(job.prompt), job.n_gen, prompt_seconds=t_first - job.t_admit,
            completion_seconds=now - t_first, cached_tokens=job.cached,
        ))
        job.emit(Finish(reason))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job done: admitted +%s ms, first token +%s ms, first segment +%s ms, end +%s ms; prompt %d "
                      "(%d cached), %d generated, %s", *(_ms(t, job.t_arrive) for t in (job.t_admit, job.t_first,
                      job.t_play, now)), len(job.prompt), job.cached, job.n_gen, reason)
        self._release(job)

    def _send(self, job: GenJob, text: str) -> None:
        job.emit(TextDelta(text, job.logprob if job.logprobs else None))
        if job.pace is not None:
            job.spoke(text, time.perf_counter())

    def _release(self, job: GenJob) -> None:
        L = self._L

        if job in self._active:
            self._active.remove(job)
        elif job in self._parked:
            self._parked.remove(job)
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
        with self._cv:  # cancel() may touch the inbox from the event loop meanwhile
            waiting = list(self._inbox)
            self._inbox.clear()
        for job in list(self._active) + list(self._parked) + waiting:
            job.emit(HearthError("the engine stopped", status=503))
            self._release(job)
        with self._cv:
            calls = list(self._calls)
            self._calls.clear()
        for _, fut in calls:
            fut.set_exception(HearthError("the engine stopped", status=503))
        self._free()


def _ms(t: float, since: float) -> str:
    return f"{(t - since) * 1000:.0f}" if t else "-"
