"""The one internal request type and the chunks every backend streams back.

Dialects (OpenAI, Ollama) parse into `ChatRequest` and render `Chunk`s; nothing below them knows
either wire format. Chunks are small slotted classes, not dicts, because a stream creates one per
token and the hot path should allocate as little as possible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

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
class RouteInfo:
    """Sent by a router before the first real chunk: which backend answers, and why."""

    backend: str
    reason: str  # rule | score | default | length | weight | fallback | deadline | shed | escalation
    detail: str = ""


@dataclass(slots=True)
class CacheInfo:
    """Sent by the cache before the first real chunk: hit, semantic (with the similarity) or miss."""

    status: str
    similarity: float | None = None


@dataclass(slots=True)
class SourcesInfo:
    """Sent by RAG before the first real chunk: the retrieved passages, numbered as the answer cites them."""

    sources: list[dict[str, Any]]


@dataclass(slots=True)
class ErrorChunk:
    """A failure after the stream began; dialects turn it into their own error event."""

    error: Exception


Chunk = TextDelta | ToolCallDelta | Usage | Finish | RouteInfo | CacheInfo | SourcesInfo | ErrorChunk


@dataclass(slots=True)
class ModelInfo:
    """What the model-listing endpoints say about a model."""

    name: str
    backend: str  # "llamacpp", "openai", "ollama"
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


@runtime_checkable
class Backend(Protocol):
    """Anything that turns a ChatRequest into a stream of chunks: an engine, a remote provider, or a
    wrapper (cache, router) around other backends."""

    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def info(self) -> ModelInfo: ...

    @property
    def ready(self) -> bool: ...


@dataclass(slots=True)
class Embeddings:
    """What an embedding backend returns: one row per input text (float32, shape (n, dims))."""

    vectors: Any  # numpy.ndarray; typed loosely so that importing this module never imports numpy
    prompt_tokens: int
    model: str = ""
