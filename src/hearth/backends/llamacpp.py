"""The local model, in-process: the asyncio side of `hearth.engine.LlamaEngine`.

The model is in memory only while the residency says so: a request holds it (loading it first when it
is not), and its keep-alive decides when it goes; a configured model with `preload` loads at start.

Templating and tokenizing run in a worker thread (a 100 kB prompt takes milliseconds to tokenize,
which the event loop must not pay); decoding runs on the engine's own thread; tokens come back
through an asyncio queue fed by `call_soon_threadsafe`. Closing the stream early (client gone,
router gave up) cancels the job, and the engine frees its sequence before its next step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from hearth.backends.stable_prefix import VolatileLines
from hearth.config import LocalModel
from hearth.core.errors import (
    BadRequest,
    ContextLengthExceeded,
    EngineUnavailable,
    HearthError,
    ModelNotFound,
    NotReady,
)
from hearth.core.types import ChatRequest, Chunk, Finish, LocalEngine, Message, ModelInfo, TextDelta, Usage
from hearth.core.work import offload
from hearth.engine import probe
from hearth.engine.job import EngineItem, GenJob
from hearth.engine.llama_engine import LlamaEngine
from hearth.engine.tokens import TooManyTokens
from hearth.gguf_meta import details, kv_bytes, read_meta
from hearth.model_files import builtin_for, resolve_model_path

log = logging.getLogger("hearth.llamacpp")


class Residency(Protocol):
    """What this backend asks of the gateway's residency (`lifecycle/residency.py`): to be kept in memory, loaded
    first if needed, while a block runs. A protocol, so the backend does not import the lifecycle layer above it."""

    def hold(self, model: Any, keep_alive: float | None = None) -> AbstractAsyncContextManager[None]: ...


class LlamaCppBackend:
    def __init__(self, name: str, cfg: LocalModel, residency: Residency, *, paths: list[Path] | None = None,
                 digest: str = "", preload: bool | None = None) -> None:
        """`paths`: the files of a pulled model (several for a split model) instead of `cfg.path`."""
        self.name = name
        self.cfg = cfg
        self.residency = residency
        self.engine: LlamaEngine | None = None
        self.paths = paths
        self.path: Path | None = paths[0] if paths else None
        self.digest = digest
        self.preload = cfg.preload if preload is None else preload
        self._details: dict[str, Any] = {}
        self.adapters: dict[str, tuple[str, float]] = {}  # LoRA adapters: name -> (file, scale), kept across reloads
        self._ready = not self.preload  # a model loaded on demand is ready to be loaded
        self._formatter: Any = None
        self._bos_text = ""
        self._arriving = 0  # requests being tokenized, not yet submitted: load a router must already see
        self._unavailable: str | None = None  # why the engine check refused this model on this machine
        self._extra_bufts = True  # off when only a build without llama.cpp's extra weight buffers passes the check
        self._volatile = VolatileLines()  # which system-prompt lines change between this model's requests

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def family(self) -> str:
        """The architecture in the GGUF (llama, qwen2, ...): an adapter must have been made for the same."""
        return str(self._details.get("family", ""))

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    @property
    def unavailable(self) -> str | None:
        return self._unavailable

    async def start(self) -> None:
        if self.path is None:
            self.path = await asyncio.to_thread(resolve_model_path, self.cfg.path)
        self._details = await asyncio.to_thread(_read_details, self.path)
        if self.preload:
            try:
                async with self.residency.hold(self):
                    pass
            except EngineUnavailable:
                return  # said once in the log by _check_engine; the gateway serves its other models
            self._ready = True

    async def _check_engine(self) -> None:
        """Run the model once in a child process (engine/probe.py) before loading it into this one: a build
        that crashes takes only the child down. Where the build crashes with llama.cpp's extra weight buffers
        (AMX, repacked layouts) but not without, the model is served without them, slower, with a warning."""
        if self._unavailable is not None:
            raise EngineUnavailable.of(f"model {self.name!r}")
        if not self.cfg.engine_check:
            return
        paths = [str(p) for p in self.paths] if self.paths else [str(self.path)]
        verdict, runs = await asyncio.to_thread(probe.check_chat, paths)
        if runs:
            self._extra_bufts = True
            return
        if runs is False:
            if self._extra_bufts:
                log.warning("%s Without llama.cpp's extra weight buffers (use_extra_bufts off) the same build "
                            "passes: model %s is served that way, slower, until the engine is rebuilt.",
                            verdict.detail, self.name)
            self._extra_bufts = False
            return
        self._unavailable = verdict.summary
        log.error("model %s is unavailable: it is not loaded into the gateway, which serves its other models. %s",
                  self.name, verdict.detail)
        raise EngineUnavailable.of(f"model {self.name!r}")

    def _kv_cells(self) -> int:
        return self.cfg.kv_cache_tokens or 4 * self.cfg.n_ctx

    def footprint(self) -> int:
        """The weights plus the KV cache llama.cpp allocates (F16, every layer). Compute buffers (a few tens
        of MB) are not counted."""
        return self._file_bytes() + kv_bytes(self._details, self._kv_cells())

    def _file_bytes(self) -> int:
        files = self.paths or ([self.path] if self.path else [])
        return sum(p.stat().st_size for p in files if p.exists())

    async def load(self) -> None:
        cfg = self.cfg
        if self.path is None:
            self.path = await asyncio.to_thread(resolve_model_path, cfg.path)
        await self._check_engine()
        engine = LlamaEngine(
            [str(p) for p in (self.paths or [self.path])], n_ctx=cfg.n_ctx,
            threads=cfg.threads or os.cpu_count() or 2, n_batch=cfg.n_batch, max_sequences=cfg.max_sequences,
            kv_tokens=self._kv_cells(), n_slots=cfg.prefix_slots, max_queue=cfg.max_queue,
            prefill_chunk=cfg.prefill_chunk, extra_bufts=self._extra_bufts, flash_attn=cfg.flash_attn,
        )
        engine.start()
        try:
            await asyncio.to_thread(engine.wait_loaded)
            await self._ready_engine(engine)
        except BaseException:
            # Whatever failed (a template that does not compile, the warm-up), the engine thread and the weights
            # must go: the residency counts this model as not loaded, and a retry would load a second copy.
            self.engine = None
            await asyncio.to_thread(engine.stop)
            raise

    async def _ready_engine(self, engine: LlamaEngine) -> None:
        cfg = self.cfg
        self.engine = engine
        for name, (path, scale) in list(self.adapters.items()):
            try:
                await self._attach(engine, name, path, scale)
            except HearthError as e:  # its file went away, say: the model serves without it
                log.error("adapter %s of %s could not be loaded again: %s", name, self.name, e.message)
                self.adapters.pop(name, None)
        self._formatter = await asyncio.to_thread(self._make_formatter)
        if cfg.warmup and self.preload and not self._ready:
            # At start only: one tiny generation pages the weights in and builds the compute graphs, so the
            # first real request does not pay ~300 ms extra; /health turns ready only after it. A load on
            # demand skips it: the request that caused the load warms the model itself.
            warm = ChatRequest(model=self.name, messages=[Message("user", "Hi")])
            warm.sampling.max_tokens = 1
            warm.sampling.temperature = 0.0
            async for _ in self._generate(warm):
                pass

    async def unload(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await asyncio.to_thread(engine.stop)

    # --- LoRA adapters ---------------------------------------------------------------------------

    async def add_adapter(self, name: str, path: str, scale: float = 1.0) -> None:
        """Serve `name` on this model from now on; loaded into the engine at once when the model is in memory
        (else at its next load). Raises when llama.cpp refuses the file (another base model's adapter)."""
        if self.engine is not None:
            await self._attach(self.engine, name, path, scale)
        self.adapters[name] = (path, scale)

    async def remove_adapter(self, name: str) -> None:
        if self.engine is not None:
            await asyncio.wrap_future(self.engine.call(lambda e: e.remove_adapter(name)))
        self.adapters.pop(name, None)

    @staticmethod
    async def _attach(engine: LlamaEngine, name: str, path: str, scale: float) -> None:
        await asyncio.wrap_future(engine.call(lambda e: e.add_adapter(name, path, scale)))

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

    def engine_template(self) -> str:
        return (self.engine.chat_template if self.engine is not None else None) or ""

    async def close(self) -> None:
        await self.unload()
        self._ready = False

    def info(self) -> ModelInfo:
        b = builtin_for(self.cfg.path) if self.paths is None else None
        d = self._details
        return ModelInfo(
            name=self.name, kind="llamacpp", context_length=self.cfg.n_ctx, size_bytes=self._file_bytes(),
            family=d.get("family") or (b.family if b else ""),
            parameter_size=d.get("parameter_size") or (b.parameter_size if b else ""),
            quantization=d.get("quantization_level") or (b.quantization if b else ""),
            digest=self.digest or (b.sha256 or "" if b else ""),
            template=self.cfg.chat_template or self.engine_template(),
            loaded=self.loaded, extra={"path": str(self.path or self.cfg.path),
                                       **({"unavailable": self._unavailable} if self._unavailable else {})},
        )

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
            "adapter_steps": s.adapter_steps, "adapter_switches": e.adapters.switches if e.adapters else 0,
            "loops_stopped": s.loops_stopped,
            # This machine's own figures (engine/costs.py): what one decode step of one stream takes, prefill
            # speed, and the paced voice streams the engine keeps ahead of their listeners (a lower bound
            # until wider steps have run: `voice_devices_measured_width` says how wide the widest one was).
            "decode_step_ms": (e.costs.step_seconds(1) or 0.0) * 1000, "prefill_tokens_per_second": e.costs.prefill_tps,
            "voice_devices": e.costs.devices(), "voice_devices_measured_width": e.costs.widest_measured(),
        }

    def count_tokens(self, text: str) -> int:
        e = self.engine
        return len(e.tokenizer.text(text)) if e is not None else len(text)

    # --- generation -----------------------------------------------------------------------------

    def _prompt_tokens(self, req: ChatRequest, limit: int | None = None) -> list[int]:
        """The prompt's tokens; TooManyTokens once there are more than `limit`."""
        eng = self.engine
        assert eng is not None
        if req.prompt is not None:  # a raw prompt: its client writes the template, control tokens included
            return eng.tokenizer.template(req.prompt, True, limit)
        if self._formatter is None:
            raise BadRequest(f"model {self.name!r} has no chat template; configure chat_template or use /completions")
        messages = self._volatile.arrange(req.messages) if req.stable_prefix else req.messages
        try:
            return self._render(req, messages, limit)
        except BadRequest:
            if messages is req.messages:
                raise
            return self._render(req, req.messages, limit)  # a template that takes no system message mid-conversation

    def _fitted_tokens(self, req: ChatRequest) -> list[int]:
        """The prompt's tokens, counted no further than the context (a prompt far over it costs no more to refuse
        than one just over); for a paced (voice) conversation that has outgrown the context, with its oldest
        turns dropped until it fits with room to answer. A voice server sends its whole history every turn and
        has no way to act on a 400 but to speak an apology (xiaozhi: "小智现在有点忙"); other requests keep the
        400, as OpenAI's API does."""
        n_ctx = self.cfg.n_ctx
        try:
            return self._prompt_tokens(req, n_ctx - 1)
        except TooManyTokens as e:
            if req.pace is None or req.prompt is not None:
                raise ContextLengthExceeded(f"this model's maximum context length is {n_ctx} tokens; the prompt has "
                                            f"at least {e.counted} tokens", param="messages") from None
        budget = n_ctx - min(req.sampling.max_tokens or 256, 256, n_ctx // 4)
        msgs = req.messages
        head = 1 if msgs and msgs[0].role in ("system", "developer") else 0
        last_user = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i].role == "user"), len(msgs))
        # Whole turns go, from the oldest: a cut is at a user message, so no tool result is left without its
        # call. The fewest turns to drop are found by bisection: a few renders, whatever the history's length.
        cuts = [i for i in range(head + 1, last_user) if msgs[i].role == "user"] + [last_user]

        def fitted(cut: int) -> list[int] | None:
            trimmed = dataclasses.replace(req, messages=[*msgs[:head], *msgs[cut:]])
            try:
                return self._prompt_tokens(trimmed, budget)
            except TooManyTokens:
                return None

        lo, hi = 0, len(cuts) - 1
        best = fitted(cuts[hi])
        if best is None:  # not even the latest turn alone fits
            raise ContextLengthExceeded(f"this model's maximum context length is {n_ctx} tokens; the latest turn "
                                        "alone is longer", param="messages")
        while lo < hi:
            mid = (lo + hi) // 2
            tokens = fitted(cuts[mid])
            if tokens is None:
                lo = mid + 1
            else:
                hi, best = mid, tokens
        return best

    def _render(self, req: ChatRequest, messages: list[Message], limit: int | None) -> list[int]:
        eng = self.engine
        assert eng is not None
        # Tenant strings holding a control token's text are rendered as placeholders and tokenized as text, so
        # "<|im_end|>" in a message can never end its turn (engine/tokens.py).
        shielded = eng.tokenizer.shield(s for m in messages for s in (m.content, m.name or ""))
        hidden = {v: k for k, v in shielded.items()}
        msgs = []
        for m in messages:
            content = hidden.get(m.content, m.content)
            d: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": content}
            if m.tool_calls:  # templates render arguments with `tojson`, so they need the object, not its text
                d["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _as_object(c.arguments)}}
                    for c in m.tool_calls
                ]
            if m.name:
                d["name"] = hidden.get(m.name, m.name)
            if m.tool_call_id:
                d["tool_call_id"] = m.tool_call_id
            msgs.append(d)
        extra: dict[str, Any] = {}
        if req.thinking is not None:
            # Qwen3's template reads `enable_thinking`; a template that does not is left alone.
            if "enable_thinking" in (self.cfg.chat_template or self.engine_template()):
                extra["enable_thinking"] = req.thinking
            else:
                log.debug("model %s has no thinking switch; ignoring thinking=%s", self.name, req.thinking)
        try:
            text = self._formatter(messages=msgs, tools=req.tools, **extra).prompt
        except Exception as e:  # template errors (e.g. a template that rejects a role order)
            raise BadRequest(f"the chat template of {self.name!r} rejected the messages: {e}") from e
        add_special = not (self._bos_text and text.startswith(self._bos_text))
        return eng.tokenizer.rendered(text, shielded, add_special, limit)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if self._unavailable is not None:
            raise EngineUnavailable.of(f"model {self.name!r}")
        if not self._ready:
            raise NotReady(f"model {self.name!r} is still loading; retry shortly", retry_after=1.0)
        async with self.residency.hold(self, request.keep_alive):
            async for c in self._generate(request):
                yield c

    async def _generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        eng = self.engine
        if eng is None:
            raise NotReady(f"model {self.name!r} is not loaded")
        self._arriving += 1
        try:
            tokens = await offload(lambda: self._fitted_tokens(request), size=_size(request))
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

        if request.adapter and request.adapter not in self.adapters:
            raise ModelNotFound(f"model {self.name!r} has no adapter {request.adapter.split('@')[0]!r}", param="model")
        job = GenJob(tokens, request.sampling, max_new, emit, logprobs=request.logprobs, grammar=request.grammar,
                     pace=request.pace, adapter=request.adapter, loop_guard=self.cfg.loop_guard)
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


def _size(req: ChatRequest) -> int:
    """What rendering and tokenizing a prompt work through, in characters (which pool they run in): its text,
    and each message's turn of the template (5,000 one-word messages are a bulk job, not a small one)."""
    return len(req.prompt or "") + sum(len(m.content) + 64 for m in req.messages)


def _read_details(path: Path) -> dict[str, Any]:
    try:
        return details(read_meta(path))
    except (OSError, ValueError):
        return {}  # llama.cpp's own load will say what is wrong with the file


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments
