"""The one internal request type and the chunks every backend streams back.

Dialects (OpenAI, Ollama) parse into `ChatRequest` and render `Chunk`s; nothing below them knows
either wire format. Chunks are small slotted classes, not dicts, because a stream creates one per
token and the hot path should allocate as little as possible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from hearth.core.pace import Pace

Role = Literal["system", "user", "assistant", "tool", "developer"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


@dataclass(slots=True)
class Message:
    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    images: list[str] | None = None


@dataclass(slots=True)
class Sampling:
    """Sampling parameters; None means "the backend's default", so remote providers see only what
    the client actually asked for."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    logit_bias: dict[int, float] | None = None


@dataclass(slots=True)
class ChatRequest:
    """One generation request, whichever API it came from.

    `prompt` is set instead of `messages` for raw completions (`/v1/completions`,
    `/api/generate` with `raw`): the backend then applies no chat template.
    """

    model: str
    messages: list[Message] = field(default_factory=list)
    prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    # Opaque per-request values for wrappers (cache control, routing hints); never sent upstream.
    extensions: dict[str, Any] = field(default_factory=dict)
    parallel_tool_calls: bool | None = None
    # Internal: ask a local backend for each token's log-probability (the router's confidence check).
    logprobs: bool = False
    # Internal: a GBNF grammar the local engine must follow (set by the structured-output wrapper).
    grammar: str | None = None
    # Internal: how fast the consumer takes the text (set by the speech stage); the local engine schedules
    # by how far each stream is ahead of it. None: as fast as possible.
    pace: Pace | None = None
    # Internal: what the latest turn is for (set before any stage runs, when intent tracking is on).
    intent: Intent | None = None
    # Seconds a local model stays loaded after this request (Ollama's keep_alive; math.inf: forever,
    # 0: unload after the answer). None: the model's default.
    keep_alive: float | None = None
    # Internal: the LoRA adapter a local model answers with (set from `model+adapter` or an adapter's alias).
    adapter: str = ""
    # Provider extension fields as the client sent them (`enable_thinking`, `thinking`, `chat_template_kwargs`):
    # OpenAI-compatible providers that take such fields get them as sent.
    provider_fields: dict[str, Any] = field(default_factory=dict)
    # What those fields (or Ollama's `think`) ask of a reasoning model: True, False, or None (the model's
    # default). Local models pass it to their chat template (Qwen3's `enable_thinking`), Ollama as `think`.
    thinking: bool | None = None
    # Internal: a local model moves the lines of the system prompt that change between requests (the time, the
    # weather) next to the latest user message, so the long rest stays a reusable KV prefix (set per model by
    # the speech stage from `stable_prefix`, on for paced models such as `voice`).
    stable_prefix: bool = False

    def question(self) -> str:
        """What the request asks now: the raw prompt, else the latest user message ("" when there is none)."""
        if self.prompt is not None:
            return self.prompt
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


@dataclass(frozen=True, slots=True)
class Intent:
    """What the latest user turn of a conversation is for, read from the conversation the request carries.

    Stages decide by it without knowing how it was found: a router rule matches `labels`, a continuation
    stays on the backend that answered before, the cache skips near matches of turns that depend on what
    came before or on the clock, and RAG rewrites a follow-up into a standalone query.
    """

    label: str  # the one label that decides routing (the most specific of `labels`)
    labels: tuple[str, ...]
    task: str | None = None  # code | translate | analyse | write | summarise, when a task is involved
    drift: float = 0.0  # 0: on the conversation's topic .. 1: nothing in common with it (0 with no history)
    follow_up: bool = False  # leans on earlier turns ("and its price?", "它呢"): not understandable alone
    conversation: str | None = None  # the client's conversation id, where it sent one

    def has(self, *labels: str) -> bool:
        return any(x in self.labels for x in labels)


# --- chunks -------------------------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    text: str
    logprob: float | None = None  # only when ChatRequest.logprobs asked for it


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # Durations in seconds, where the backend knows them (Ollama's final chunk reports them).
    prompt_seconds: float | None = None
    completion_seconds: float | None = None
    cached_tokens: int | None = None


@dataclass(slots=True)
class Finish:
    reason: FinishReason


@dataclass(slots=True)
class Note:
    """What a stage did, sent up the stream before the first real chunk. A note says itself what the client
    sees (response headers), what the request log records and what the trace span carries, so the pipeline,
    the dialects' headers, the request log and the tracer treat every stage's notes alike: a new stage shows
    what it did by yielding its own subclass, without a line in any of them."""

    stage: ClassVar[str] = ""

    def answered_by(self) -> str | None:
        """Who produced the answer, when this stage decided it (a router's pick, or "cache" for a hit)."""
        return None

    def headers(self) -> dict[str, str]:
        return {}

    def log_fields(self) -> dict[str, Any]:
        return {}

    def span_attributes(self) -> dict[str, Any]:
        return {}


@dataclass(slots=True)
class RouteInfo(Note):
    """Sent by a router: which backend answers, and why."""

    stage: ClassVar[str] = "router"
    backend: str
    reason: str  # rule | score | default | length | sticky | fallback | deadline | shed | escalation
    detail: str = ""

    def answered_by(self) -> str | None:
        return self.backend

    def headers(self) -> dict[str, str]:
        h = {"x-hearth-route": self.reason}
        if self.detail:
            h["x-hearth-route-reason"] = self.detail.encode("ascii", "backslashreplace").decode()[:200]
        return h

    def log_fields(self) -> dict[str, Any]:
        return {"route": self.reason}

    def span_attributes(self) -> dict[str, Any]:
        return {"hearth.route": self.reason}


@dataclass(slots=True)
class CacheInfo(Note):
    """Sent by the cache: hit, semantic (with the similarity) or miss."""

    stage: ClassVar[str] = "cache"
    status: str
    similarity: float | None = None

    def answered_by(self) -> str | None:
        return None if self.status == "miss" else "cache"

    def headers(self) -> dict[str, str]:
        h = {"x-hearth-cache": self.status}
        if self.similarity is not None:
            h["x-hearth-cache-similarity"] = f"{self.similarity:.4f}"
        return h

    def log_fields(self) -> dict[str, Any]:
        return {"cache": self.status}

    def span_attributes(self) -> dict[str, Any]:
        return {"hearth.cache": self.status}


@dataclass(slots=True)
class SourcesInfo(Note):
    """Sent by RAG: the retrieved passages, numbered as the answer cites them."""

    stage: ClassVar[str] = "rag"
    sources: list[dict[str, Any]]

    def headers(self) -> dict[str, str]:
        return {"x-hearth-rag-sources": str(len(self.sources))}


@dataclass(slots=True)
class ErrorChunk:
    """A failure after the stream began; dialects turn it into their own error event."""

    error: Exception


Chunk = TextDelta | ToolCallDelta | Usage | Finish | Note | ErrorChunk


@dataclass(slots=True)
class ModelInfo:
    """What the model-listing endpoints say about a model."""

    name: str
    kind: str  # "llamacpp", "openai", "ollama", "router", "embedding": what serves it
    owned_by: str = "hearth"
    context_length: int | None = None
    size_bytes: int = 0
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    digest: str = ""
    template: str = ""
    loaded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class LocalEngine(Protocol):
    """What a backend that runs on this machine's cores tells the stages above it.

    The router sheds load from a local model whose queue is long and escalates only local answers;
    structured output constrains local decoding with a grammar instead of validating afterwards; the
    metrics export the engine's counters. A remote provider has none of this (`Backend.local` is None).
    """

    def queue_depth(self) -> int:
        """Requests waiting for a sequence slot (being tokenized or queued)."""
        ...

    def stats(self) -> dict[str, float]:
        """Engine counters, keyed by the names in `ENGINE_STATS`."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in the model's vocabulary (structured output fits schemas to a budget with it)."""
        ...

    @property
    def unavailable(self) -> str | None:
        """Why this engine cannot run on this machine (its build crashed the start-up check), else None: the
        router skips it, /health and `hearth ps` say why."""
        ...


ENGINE_STATS = (
    "queue_depth", "active_sequences", "parked_sequences", "prefix_hits", "prefix_misses", "reused_tokens",
    "prefilled_tokens", "generated_tokens", "evictions", "cached_prefix_tokens", "sat_out", "parked",
    "queue_limit", "max_sequences", "adapter_steps", "adapter_switches", "loops_stopped", "decode_step_ms",
    "prefill_tokens_per_second", "voice_devices", "voice_devices_measured_width",
)


class Backend(Protocol):
    """Anything that turns a ChatRequest into a stream of chunks: an engine, a remote provider, or a
    stage (cache, router, structured output, RAG) around other backends.

    Every capability a stage needs from another is declared here, so a wrapper forwards it explicitly
    and nothing is discovered by probing attributes.
    """

    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool: ...

    @property
    def local(self) -> LocalEngine | None:
        """The in-process engine behind this backend, or None for a remote provider or a router."""
        ...

    async def check_health(self) -> None:
        """A cheap probe (a remote provider's model list) that raises when the backend cannot serve;
        returns at once where there is nothing to probe (local engines, routers)."""
        ...


# What the texts are for, as asymmetric models (e5) embed them: a search query, or a document to be found.
InputType = Literal["query", "document"]


class Embedder(Protocol):
    """A model that turns texts into vectors: the local embedding model, or a remote provider's."""

    name: str

    async def embed(self, texts: list[str], *, truncate: bool = True, dimensions: int | None = None,
                    input_type: InputType | None = None) -> Embeddings:
        """`input_type` None: documents (what an OpenAI client sending text to index expects)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool: ...

    @property
    def unavailable(self) -> str | None:
        """Why this embedder cannot run on this machine (a local engine that failed its check), else None."""
        ...


@dataclass(slots=True)
class Embeddings:
    """What an embedding backend returns: one row per input text (float32, shape (n, dims))."""

    vectors: Any  # numpy.ndarray; typed loosely so that importing this module never imports numpy
    prompt_tokens: int
    model: str = ""
