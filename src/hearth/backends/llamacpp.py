"""The local model, in-process: the asyncio side of `hearth.engine.LlamaEngine`.

Templating and tokenizing run in a worker thread (a 100 kB prompt takes milliseconds to tokenize,
which the event loop must not pay); decoding runs on the engine's own thread; tokens come back
through an asyncio queue fed by `call_soon_threadsafe`. Closing the stream early (client gone,
router gave up) cancels the job, and the engine frees its sequence before its next step.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hearth.config import LocalModel
from hearth.core.errors import BadRequest, ContextLengthExceeded, HearthError, NotReady
from hearth.core.types import ChatRequest, Chunk, Finish, LocalEngine, Message, ModelInfo, TextDelta, Usage
from hearth.engine.job import EngineItem, GenJob
from hearth.engine.llama_engine import LlamaEngine
from hearth.model_files import builtin_for, resolve_model_path


class LlamaCppBackend:
    def __init__(self, name: str, cfg: LocalModel) -> None:
        self.name = name
        self.cfg = cfg
        self.engine: LlamaEngine | None = None
        self.path: Path | None = None
        self._ready = False
        self._formatter: Any = None
        self._bos_text = ""
        self._arriving = 0  # requests being tokenized, not yet submitted: load a router must already see

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        cfg = self.cfg
        self.path = await asyncio.to_thread(resolve_model_path, cfg.path)
        engine = LlamaEngine(
            str(self.path), n_ctx=cfg.n_ctx, threads=cfg.threads or os.cpu_count() or 2, n_batch=cfg.n_batch,
            max_sequences=cfg.max_sequences, kv_tokens=cfg.kv_cache_tokens or 4 * cfg.n_ctx,
            n_slots=cfg.prefix_slots, max_queue=cfg.max_queue, prefill_chunk=cfg.prefill_chunk,
        )  # fmt: skip
        engine.start()
        await asyncio.to_thread(engine.wait_loaded)
        self.engine = engine
        self._formatter = await asyncio.to_thread(self._make_formatter)
        if cfg.warmup:
            # One tiny generation pages the weights in and builds the compute graphs, so the first real
            # request does not pay ~300 ms extra; /health turns ready only after it.
            warm = ChatRequest(model=self.name, messages=[Message("user", "Hi")])
            warm.sampling.max_tokens = 1
            warm.sampling.temperature = 0.0
            async for _ in self._generate(warm):
                pass
        self._ready = True

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        assert self.engine is not None
        template = self.cfg.chat_template or self.engine.chat_template
        if not template:
            return None
        from llama_cpp import llama_cpp as L

        eng = self.engine
        eos = eng.token_text(L.llama_vocab_eos(eng.vocab))
        bos_id = L.llama_vocab_bos(eng.vocab)
        self._bos_text = eng.token_text(bos_id) if bos_id >= 0 else ""
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=self._bos_text)

    async def close(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.stop)
            self.engine = None
        self._ready = False

    def info(self) -> ModelInfo:
        b = builtin_for(self.cfg.path)
        size = self.path.stat().st_size if self.path and self.path.exists() else 0
        return ModelInfo(
            name=self.name, kind="llamacpp", context_length=self.cfg.n_ctx, size_bytes=size,
            family=b.family if b else "", parameter_size=b.parameter_size if b else "",
            quantization=b.quantization if b else "", digest=b.sha256 or "" if b else "",
            template=(self.cfg.chat_template or (self.engine.chat_template if self.engine else "") or ""),
            loaded=self._ready, extra={"path": str(self.path or self.cfg.path)},
        )  # fmt: skip

    @property
    def local(self) -> LocalEngine:
        return self  # the backend itself reports the engine's queue and counters (zero until loaded)

    async def check_health(self) -> None:
        return None

    def queue_depth(self) -> int:
        """Requests waiting for a sequence slot (a router sheds to another model when this is high)."""
        return self.engine.queue_depth(self._arriving) if self.engine is not None else 0

    def stats(self) -> dict[str, float]:
        e = self.engine
        if e is None:
            return {}
        s = e.stats
        return {
            "queue_depth": e.queue_depth(), "active_sequences": e.active_count(), "parked_sequences": e.parked_count(),
            "prefix_hits": s.prefix_hits, "prefix_misses": s.prefix_misses, "reused_tokens": s.reused_tokens,
            "prefilled_tokens": s.prefilled_tokens, "generated_tokens": s.generated_tokens,
            "evictions": s.evictions, "cached_prefix_tokens": e.slots.cached_tokens(), "sat_out": s.sat_out,
            "parked": s.parked, "queue_limit": e.max_queue, "max_sequences": e.max_sequences,
        }  # fmt: skip

    def count_tokens(self, text: str) -> int:
        e = self.engine
        return len(e.tokenize(text, add_special=False)) if e is not None else len(text)

    # --- generation -----------------------------------------------------------------------------

    def _prompt_tokens(self, req: ChatRequest) -> list[int]:
        eng = self.engine
        assert eng is not None
        if req.prompt is not None:
            return eng.tokenize(req.prompt, add_special=True)
        if self._formatter is None:
            raise BadRequest(f"model {self.name!r} has no chat template; configure chat_template or use /completions")
        msgs = []
        for m in req.messages:
            d: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            if m.tool_calls:  # templates render arguments with `tojson`, so they need the object, not its text
                d["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _as_object(c.arguments)}}
                    for c in m.tool_calls
                ]
            if m.name:
                d["name"] = m.name
            if m.tool_call_id:
                d["tool_call_id"] = m.tool_call_id
            msgs.append(d)
        try:
            text = self._formatter(messages=msgs, tools=req.tools).prompt
        except Exception as e:  # template errors (e.g. a template that rejects a role order)
            raise BadRequest(f"the chat template of {self.name!r} rejected the messages: {e}") from e
        add_special = not (self._bos_text and text.startswith(self._bos_text))
        return eng.tokenize(text, add_special=add_special)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if not self._ready:
            raise NotReady(f"model {self.name!r} is still loading; retry shortly", retry_after=1.0)
        async for c in self._generate(request):
            yield c

    async def _generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        eng = self.engine
        if eng is None:
            raise NotReady(f"model {self.name!r} is not loaded")
        self._arriving += 1
        try:
            tokens = await asyncio.to_thread(self._prompt_tokens, request)
        finally:
            self._arriving -= 1
        n_ctx = self.cfg.n_ctx
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"this model's maximum context length is {n_ctx} tokens; the prompt has {len(tokens)} tokens",
                param="messages",
            )
        room = n_ctx - len(tokens)
        want = request.sampling.max_tokens
        max_new = room if want is None else min(want, room)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineItem] = asyncio.Queue()
        put = queue.put_nowait

        def emit(item: EngineItem) -> None:
            loop.call_soon_threadsafe(put, item)

        job = GenJob(tokens, request.sampling, max_new, emit, logprobs=request.logprobs, grammar=request.grammar,
                     pace=request.pace)  # fmt: skip
        eng.submit(job)  # raises Overloaded when the wait queue is full
        finished = False
        try:
            while True:
                item = await queue.get()
                if type(item) is TextDelta or type(item) is Usage:
                    yield item
                elif type(item) is Finish:
                    finished = True
                    yield item
                    return
                elif isinstance(item, HearthError):
                    finished = True
                    raise item
        finally:
            if not finished:
                eng.cancel(job)


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments
