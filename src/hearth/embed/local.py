"""The local embedding model as a backend: one dedicated thread, micro-batching concurrent requests.

Requests put their texts on a queue; the thread takes everything queued (optionally waiting
`batch_window_ms` for more), sorts the texts by length so padding stays small, and runs one forward
pass per group of similar length. A lone request pays nothing for this; sixteen concurrent ones share
a few matrix products instead of queuing for sixteen. The model loads on first use, so a gateway that
never embeds never pays its ~150 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hearth.config import EmbeddingModel
from hearth.core.errors import BadRequest, HearthError
from hearth.core.types import ChatRequest, Chunk, Embeddings, ModelInfo

log = logging.getLogger("hearth")

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def shared_minilm(path: str = "builtin:all-minilm-l6-v2") -> Any:
    """One MiniLM per process, whoever asks (embeddings API, RAG, the semantic cache): the weights are
    mapped once."""
    with _shared_lock:
        if path not in _shared:
            from pathlib import Path

            from hearth.embed.minilm import MiniLM

            _shared[path] = MiniLM(None if path.startswith("builtin:") else Path(path))
        return _shared[path]


@dataclass(slots=True)
class _Job:
    texts: list[str]
    truncate: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Embeddings]
    result: list[Any] = field(default_factory=list)


class LocalEmbedder:
    """A Backend for an embedding-only model: `embed()` works, `stream()` (chat) is a clear 400."""

    kind = "embedding"

    def __init__(self, name: str, cfg: EmbeddingModel) -> None:
        self.name = name
        self.cfg = cfg
        self.dims = 384
        self.max_tokens = 256
        self._q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._model: Any = None
        self.batches = 0  # forward batches run, for tests and metrics
        self.texts = 0

    @property
    def ready(self) -> bool:
        return True  # loads on first use

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, backend="embedding", context_length=self.max_tokens, family="bert",
                         parameter_size="22M", quantization="F32", extra={"embedding_length": self.dims})  # fmt: skip

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        raise BadRequest(f"model {self.name!r} is an embedding model; use /v1/embeddings or /api/embed",
                         param="model", code="model_not_chat")  # fmt: skip
        yield  # pragma: no cover  (makes this an async generator)

    async def embed(self, texts: list[str], *, truncate: bool = True, dimensions: int | None = None) -> Embeddings:
        if dimensions is not None and dimensions != self.dims:
            raise BadRequest(f"dimensions: {self.name} produces {self.dims}-dimensional vectors and cannot shorten "
                             "them (it was not trained for truncated embeddings)", param="dimensions")  # fmt: skip
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), truncate, loop, loop.create_future())
        self._q.put(job)
        return await job.future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"embed-{self.name}", daemon=True)
                self._thread.start()

    # --- the embedding thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._model = shared_minilm(self.cfg.path)
        except Exception as e:  # a missing package or file: every waiting request gets the reason
            log.error("cannot load embedding model %s: %s", self.name, e)
            err = HearthError(f"embedding model {self.name!r} failed to load: {e}", code="model_load_failed")
            while (job := self._q.get()) is not None:
                _settle(job, err)
            return
        window = self.cfg.batch_window_ms / 1000
        while True:
            job = self._q.get()
            if job is None:
                return
            jobs, n = [job], len(job.texts)
            deadline = time.monotonic() + window
            while n < self.cfg.max_batch:
                try:
                    more = self._q.get_nowait() if window <= 0 else self._q.get(timeout=deadline - time.monotonic())
                except (queue.Empty, ValueError):  # ValueError: the window already passed (negative timeout)
                    break
                if more is None:
                    self._q.put(None)
                    break
                jobs.append(more)
                n += len(more.texts)
            self._batch([j for j in jobs if not j.future.cancelled()])

    def _batch(self, jobs: list[_Job]) -> None:
        import numpy as np

        m = self._model
        try:
            texts = [t for j in jobs for t in j.texts]
            enc = m.tok.encode_batch(texts)
            owner: list[int] = []
            for k, j in enumerate(jobs):
                owner.extend([k] * len(j.texts))
            failed: dict[int, HearthError] = {}
            for i, e in enumerate(enc):
                if e.overflowing and not jobs[owner[i]].truncate:
                    failed.setdefault(owner[i], BadRequest(
                        f"input {i - owner.index(owner[i])} is longer than the {self.max_tokens}-token context of "
                        f"{self.name}; shorten it or allow truncation", code="context_length_exceeded"))  # fmt: skip
            kept = [i for i in range(len(texts)) if owner[i] not in failed]
            out = np.zeros((len(texts), self.dims), np.float32)
            if kept:
                out[kept] = m.encode_tokenized([enc[i] for i in kept])
            self.batches += 1
            self.texts += len(kept)
            start = 0
            for k, j in enumerate(jobs):
                end = start + len(j.texts)
                if k in failed:
                    _settle(j, failed[k])
                else:
                    tokens = sum(len(enc[i].ids) for i in range(start, end))
                    _settle(j, Embeddings(out[start:end], tokens, self.name))
                start = end
        except Exception as e:
            log.exception("embedding batch failed")
            for j in jobs:
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
