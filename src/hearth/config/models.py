"""The entries of `models:`, by kind: local llama.cpp models, embedding models, remote providers (built-in and
from plugins) and routers, and the union a config's models are validated as.

Split from schema.py (the config's sections and `Config` itself) to keep each readable; import from
`hearth.config`, which re-exports every public name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, SerializeAsAny, Tag, field_validator, model_validator

from hearth.config.local import KeepAlive, _Strict
from hearth.config.plugins import plugin_config, plugin_kinds
from hearth.core.errors import BadRequest
from hearth.core.pace import Pace, parse_pace

FallbackCriterion = Literal[
    "upstream", "timeout", "rate_limit", "overloaded", "connection", "server_error", "context_length", "empty",
    "invalid_json",
]
DEFAULT_FALLBACK_ON: tuple[FallbackCriterion, ...] = (
    "upstream", "timeout", "rate_limit", "overloaded", "connection", "server_error", "context_length",
)


class _Speech(_Strict):
    """Defaults for the speech stage, per chat model; a request's own `pace` / `segments` win."""

    pace: str | float | None = Field(
        None,
        description="how fast clients take this model's text: speech, reading, characters per second, or none; "
        "the local engine schedules paced streams by how far ahead of their listener they are",
    )
    segments: bool = Field(False, description="stream one TTS segment per chunk (first at a comma, then sentences)")
    stable_prefix: bool | None = Field(
        None, description="local models: move the system-prompt lines that change between requests (time, date, "
        "weather; learnt per model) next to the latest user message, so the long rest of the prompt stays in "
        "the KV cache; default: on for paced (voice) models; pays most with flash_attn: off (examples/voice.yaml)",
    )
    speech_max_tokens: int | None = Field(
        300, ge=1, description="answer length of paced (voice) requests that set no max_tokens: a voice device "
        "speaks every word, and clients such as xiaozhi send no limit (null: none)")

    @field_validator("pace", mode="before")
    @classmethod
    def _known_pace(cls, v: object) -> object:
        try:
            parse_pace(v, "pace")
        except BadRequest as e:
            raise ValueError(e.message.removeprefix("pace: ")) from None
        return v

    def speech_pace(self) -> Pace | None:
        return parse_pace(self.pace, "pace")


class Timeouts(_Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    first_token: float = Field(60.0, gt=0, description="seconds until the first token (or whole body)")
    total: float = Field(600.0, gt=0, description="seconds for the whole response")


class LocalModel(_Speech):
    kind: Literal["llamacpp"] = "llamacpp"
    path: str = Field(
        "builtin:qwen2.5-coder-0.5b",
        description="a GGUF file, or builtin:qwen2.5-coder-0.5b / builtin:qwen2.5-coder-1.5b / builtin:smollm2-135m",
    )
    n_ctx: int = Field(4096, ge=64, description="context window of one conversation, in tokens")
    threads: int | None = Field(None, ge=1, description="llama.cpp threads; default: all cores")
    chat_template: str | None = Field(None, description="Jinja chat template; default: the GGUF's own")
    aliases: list[str] = Field(default_factory=list)
    max_queue: int = Field(16, ge=0, description="requests that may wait for the engine; more get 503")
    n_batch: int = Field(256, ge=8, description="prompt tokens per engine step when no other sequence is decoding")
    prefill_chunk: int = Field(
        64, ge=1, description="prompt tokens per step while others decode: smaller keeps their streams moving"
    )
    max_sequences: int = Field(
        8,
        ge=1,
        le=63,
        description="sequences that hold a place at once (decoded together, or sitting out a step "
        "while ahead of their listener); as many paced streams again may be parked",
    )
    kv_cache_tokens: int | None = Field(
        None, ge=64, description="KV cells shared by all sequences and cached prefixes; default 4 x n_ctx"
    )
    prefix_slots: int = Field(8, ge=1, le=64, description="conversation prefixes kept in the KV cache")
    flash_attn: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp's flash attention (auto: llama.cpp decides, on for CPUs). Off makes a few "
        "new tokens after a long prefix up to 4x faster on a CPU, but long prefills 2.3x slower once the KV cache "
        "holds several conversations (engine/context.py)")

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _yaml_switch(cls, v: object) -> object:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # YAML reads `off` as false

    warmup: bool = True
    loop_guard: bool = Field(
        True, description="end an answer that repeats one unit of tokens over and over (3 times, 48 tokens at "
        "least) with finish reason stop; answers under a grammar are never cut")
    engine_check: bool = Field(
        True, description="before the first load with a new llama.cpp build or model file, decode once in a child "
        "process, so a build that crashes on this CPU takes only the child down (kept in $HEARTH_HOME)")
    preload: bool = Field(True, description="load at start (ready only once loaded); false: at its first request")
    keep_alive: KeepAlive | None = Field(
        None, description="how long it stays loaded after a request (\"5m\", seconds, -1 forever, 0 unload after "
        "each answer); default: forever when preloaded, else local.keep_alive")


class EmbeddingModel(_Strict):
    """A local sentence-embedding model (no chat): serves /v1/embeddings, /api/embed and RAG."""

    kind: Literal["embedding"]
    path: str = Field("builtin:all-minilm-l6-v2", description="builtin:all-minilm-l6-v2 (English), "
                      "builtin:multilingual-e5-small (about 100 languages; x86-64 Linux with AVX2), or a folder "
                      "holding model.safetensors + tokenizer.json of a BERT sentence encoder")
    aliases: list[str] = Field(default_factory=list)
    multilingual: bool | None = Field(
        None,
        description="trained on many languages; default: true for builtin:multilingual-e5-small, else false "
        "(hybrid search then skips vectors for questions in other scripts than Latin)",
    )
    engine: Literal["auto", "llamacpp", "numpy"] = Field(
        "auto", description="runs a BERT model (not e5): llamacpp (an F16 GGUF made at first use under "
        "$HEARTH_HOME/models; ~2x numpy's speed, the same vectors), numpy, or auto: llamacpp where installed")
    max_batch: int = Field(64, ge=1, description="texts per forward pass when concurrent requests are merged")
    batch_window_ms: float = Field(
        0.0, ge=0, description="wait this long for more requests before a forward pass; 0: take what is queued"
    )

    def is_multilingual(self) -> bool:
        return self.multilingual if self.multilingual is not None else self.path == "builtin:multilingual-e5-small"


class RemoteModel(_Speech):
    """What every remote provider's entry has: where it is, what it calls the model, where its key is.

    A provider plugin's config subclasses this with its own `kind: Literal["name"]` and fields, and registers it
    with `hearth.providers.register_provider(kind, factory, config=TheClass)` (see `plugins.py`)."""

    kind: str
    base_url: str = Field(description="e.g. https://api.openai.com/v1")
    model: str | None = Field(None, description="the provider's model name; default: this entry's name")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    aliases: list[str] = Field(default_factory=list)
    context_length: int | None = None


class OpenAIModel(RemoteModel):
    kind: Literal["openai"]
    stream_usage: bool = Field(True, description="ask for stream_options.include_usage upstream")
    provider_fields: bool | None = Field(
        None,
        description="forward the extension fields clients send (enable_thinking, thinking, "
        "chat_template_kwargs); default: yes, except to api.openai.com and Azure OpenAI, which refuse them",
    )


class OllamaModel(RemoteModel):
    kind: Literal["ollama"]
    base_url: str = "http://127.0.0.1:11434"


class PluginModel(RemoteModel):
    """An entry whose `kind` is none of the built-in ones: validated as the config class its provider plugin
    registered (`plugins.py`), which it then is; an unknown kind is refused with the kinds there are."""

    model_config = ConfigDict(extra="allow")
    base_url: str = ""

    @model_validator(mode="wrap")
    @classmethod
    def _as_registered(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, RemoteModel) and type(data) is not PluginModel:
            return data  # already the plugin's own class (a Config built in code)
        if not isinstance(data, dict | PluginModel):
            raise ValueError(f"a model entry is a mapping with a `kind`, not {type(data).__name__}")
        kind = data.get("kind") if isinstance(data, dict) else data.kind
        config = plugin_config(kind) if isinstance(kind, str) else None
        if config is None:
            known = ", ".join([*BUILTIN_KINDS, *plugin_kinds()])
            raise ValueError(f"unknown kind {kind!r} (known: {known}; a provider plugin adds its own)")
        return config.model_validate(data if isinstance(data, dict) else data.model_dump())


IntentLabel = Literal[
    "greeting", "farewell", "thanks", "chit-chat", "question", "task", "task_continuation", "clarification",
    "correction", "topic_switch", "time_sensitive",
]


DEFAULT_STICKY: tuple[IntentLabel, ...] = ("task_continuation", "correction", "clarification")


class RuleConfig(_Strict):
    pattern: str | None = Field(None, description="regular expression (Python syntax; (?i) for case-insensitive)")
    intent: list[IntentLabel] = Field(
        default_factory=list, description="matches when the latest turn has any of these intents (with `pattern`: "
        "both must match)")
    tools: bool | None = Field(
        None, description="matches when the request offers tools (true) or offers none (false); with `pattern` or "
        "`intent`: all must match. A turn this rule sends elsewhere does not stay on the previous turn's model",
    )
    target: str = Field(description="a model, or a group from `groups`")
    name: str | None = None
    scope: Literal["last_user", "conversation"] = "last_user"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        try:
            re.compile(v or "")
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _matches_something(self) -> RuleConfig:
        if self.pattern is None and not self.intent and self.tools is None:
            raise ValueError("a rule needs a `pattern`, an `intent` list, or both (or `tools`)")
        return self


class TierConfig(_Strict):
    max_score: float = Field(ge=0, le=1, description="complexity scores up to this value go to `target`")
    target: str


class BreakerConfig(_Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    error_rate: float = Field(0.5, gt=0, le=1, description="or this failure share within `window`")
    min_requests: int = Field(10, ge=1)
    window: float = Field(30.0, gt=0)
    cooldown: float = Field(10.0, gt=0, description="seconds before a half-open probe")


class EscalationConfig(_Strict):
    window: int = Field(8, ge=1, description="tokens of the local answer judged before the client sees any")
    min_mean_logprob: float = Field(-2.0, description="below this mean token log-probability, escalate")
    on_refusal: bool = Field(True, description="escalate empty answers and refusals")
    min_quality: float | None = Field(
        None, ge=0, le=1, description="escalate when the quality score of the judged window (relevance to the "
        "question, language, repetition; see /v1/evaluate) is below this")


class RouterModel(_Speech):
    kind: Literal["router"]
    aliases: list[str] = Field(default_factory=list)
    default: str = Field(description="target when no rule, tier or length limit decides")
    groups: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="named sets of equivalent models with weights, e.g. {local: 80, cloud: 20}"
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="first match wins")
    tiers: list[TierConfig] = Field(default_factory=list, description="complexity score tiers, ascending max_score")
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="model -> the models to try after it, in order; chains are not followed further, so "
        "mutual fallbacks (local -> remote, remote -> local) are fine and no request loops",
    )
    fallback_on: list[FallbackCriterion] = Field(
        default_factory=lambda: list(DEFAULT_FALLBACK_ON),
        description="what makes the router try the next backend in the chain: errors another backend may not "
        "share (upstream, timeout, rate_limit, overloaded, connection, server_error, context_length) and, opt-in, "
        "bad answers: empty (no text and no tool call) and invalid_json (a JSON-mode answer that does not parse)",
    )
    max_local_prompt_tokens: int | None = Field(None, ge=1, description="longer prompts skip local models")
    long_prompt_target: str | None = None
    ttft_deadline: float | None = Field(None, gt=0, description="no first token by then: start the next in chain")
    total_deadline: float | None = Field(None, gt=0)
    shed_queue_depth: int | None = Field(
        1, ge=0, description="skip a local model when this many requests already wait for it (null: never shed)"
    )
    retries: int = Field(1, ge=0, description="retries of the same backend for retryable errors")
    retry_backoff: float = Field(0.2, ge=0, description="seconds, doubled per retry; Retry-After wins if given")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    escalation: EscalationConfig | None = None
    health_interval: float | None = Field(30.0, gt=0, description="seconds between health checks of remotes")
    response_format: dict[str, Any] | None = Field(
        None, description="given to requests that set none and offer no tools: {type: json_object} or {type: "
        "json_schema, json_schema: {name, schema}}; for clients that ask for JSON in words only (xiaozhi's memory "
        "and intent prompts), so that the answer is JSON however small the model")

    @field_validator("response_format")
    @classmethod
    def _json_format(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        kind = v.get("type")
        spec = v.get("json_schema")
        if kind == "json_object" or (kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"),
                                                                                                    dict)):
            return v
        raise ValueError("expected {type: json_object} or {type: json_schema, json_schema: {name, schema: {...}}}")

    @field_validator("fallback_on")
    @classmethod
    def _no_repeats(cls, v: list[FallbackCriterion]) -> list[FallbackCriterion]:
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} listed twice")
        return v


# The kinds hearth itself serves, and the entry each is read as (plugins add theirs through `plugins.py`).
BUILTIN_MODELS: dict[str, type[_Strict]] = {
    "llamacpp": LocalModel, "embedding": EmbeddingModel, "openai": OpenAIModel, "ollama": OllamaModel,
    "router": RouterModel,
}
BUILTIN_KINDS = tuple(BUILTIN_MODELS)


def _kind_tag(v: Any) -> str:
    kind = v.get("kind", "llamacpp") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in BUILTIN_KINDS else "plugin"


# One entry of `models:`: a built-in kind, or one a provider plugin registered (validated as its class).
ModelConfig = Annotated[
    Annotated[LocalModel, Tag("llamacpp")] | Annotated[EmbeddingModel, Tag("embedding")]
    | Annotated[OpenAIModel, Tag("openai")] | Annotated[OllamaModel, Tag("ollama")]
    | Annotated[RouterModel, Tag("router")] | Annotated[SerializeAsAny[PluginModel], Tag("plugin")],
    Discriminator(_kind_tag),
]
