"""All configuration in one typed place: a YAML file, then `HEARTH_*` environment overrides.

With no file at all the defaults serve the built-in local model under its short name and the alias
`local`. Validation errors name the file, the line and the field, because a gateway that refuses to
start must say exactly why.

Environment overrides use `__` between levels: `HEARTH_SERVER__PORT=9000`,
`HEARTH_MODELS__LOCAL__N_CTX=8192` (model names match case-insensitively, `-`/`.` read as `_`).
Values are parsed as YAML scalars, so `true`, `8`, `[a, b]` work.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PORT = 8434
DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b"
DEFAULT_EMBEDDING_MODEL = "all-minilm"
_RESERVED_ENV = {"HEARTH_HOME", "HEARTH_CONFIG", "HEARTH_LOG_LEVEL"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timeouts(_Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    first_token: float = Field(60.0, gt=0, description="seconds until the first token (or whole body)")
    total: float = Field(600.0, gt=0, description="seconds for the whole response")


class LocalModel(_Strict):
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
    max_sequences: int = Field(4, ge=1, le=64, description="sequences decoded together in one batch")
    kv_cache_tokens: int | None = Field(
        None, ge=64, description="KV cells shared by all sequences and cached prefixes; default 4 x n_ctx"
    )
    prefix_slots: int = Field(8, ge=1, le=64, description="conversation prefixes kept in the KV cache")
    warmup: bool = True


class EmbeddingModel(_Strict):
    """A local sentence-embedding model (no chat): serves /v1/embeddings, /api/embed and RAG."""

    kind: Literal["embedding"]
    path: str = Field("builtin:all-minilm-l6-v2", description="builtin:all-minilm-l6-v2, or a folder holding "
                      "model.safetensors + tokenizer.json of a BERT sentence encoder")  # fmt: skip
    aliases: list[str] = Field(default_factory=list)
    max_batch: int = Field(64, ge=1, description="texts per forward pass when concurrent requests are merged")
    batch_window_ms: float = Field(
        0.0, ge=0, description="wait this long for more requests before a forward pass; 0: take what is queued"
    )


class OpenAIModel(_Strict):
    kind: Literal["openai"]
    base_url: str = Field(description="e.g. https://api.openai.com/v1")
    model: str | None = Field(None, description="the provider's model name; default: this entry's name")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    stream_usage: bool = Field(True, description="ask for stream_options.include_usage upstream")
    aliases: list[str] = Field(default_factory=list)
    context_length: int | None = None


class OllamaModel(_Strict):
    kind: Literal["ollama"]
    base_url: str = "http://127.0.0.1:11434"
    model: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    aliases: list[str] = Field(default_factory=list)
    context_length: int | None = None


class RuleConfig(_Strict):
    pattern: str = Field(description="regular expression (Python syntax; (?i) for case-insensitive)")
    target: str = Field(description="a model, or a group from `groups`")
    name: str | None = None
    scope: Literal["last_user", "conversation"] = "last_user"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v


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


class RouterModel(_Strict):
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


ModelConfig = Annotated[
    LocalModel | EmbeddingModel | OpenAIModel | OllamaModel | RouterModel, Field(discriminator="kind")
]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    log_prompts: bool = Field(False, description="log prompt text (off: prompts may hold personal data)")


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
    embedding_model: str = Field(DEFAULT_EMBEDDING_MODEL, description="embeds chunks and queries")
    chat_model: str | None = Field(None, description="answers `rag:<kb>` requests; default: the first chat model")
    chunk_tokens: int = Field(200, ge=16, le=2048, description="chunk size in embedding-model tokens")
    chunk_overlap: int = Field(30, ge=0, description="tokens repeated from the end of one chunk at the next")
    top_k: int = Field(5, ge=1, le=100, description="chunks retrieved per question")
    fusion: Literal["weighted", "rrf"] = Field("weighted", description="weighted scores, or reciprocal-rank fusion")
    vector_weight: float = Field(0.7, ge=0, le=1, description="weighted fusion: vector share; keyword gets the rest")
    candidates: int = Field(50, ge=1, description="hits taken from each retriever before fusion")
    profiles: dict[str, RagProfile] = Field(
        default_factory=dict, description="model names that answer from a knowledge base, e.g. {docs-bot: {kb: docs}}"
    )


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _defaults_and_unique_names(self) -> Config:
        if not self.models:
            self.models = {DEFAULT_MODEL_NAME: LocalModel(aliases=["local"])}
        if not any(isinstance(m, EmbeddingModel) for m in self.models.values()) and all(
            n not in self.models for n in (DEFAULT_EMBEDDING_MODEL, *_EMBEDDING_ALIASES)
        ):
            # Always there, loaded on first use: embeddings and RAG work with no config at all.
            self.models[DEFAULT_EMBEDDING_MODEL] = EmbeddingModel(kind="embedding", aliases=list(_EMBEDDING_ALIASES))
        seen: dict[str, str] = {p: f"rag.profiles.{p}" for p in self.rag.profiles}
        for name, m in self.models.items():
            for n in [name, *m.aliases]:
                if n in seen:
                    raise ValueError(f"model name or alias {n!r} is used by both {seen[n]!r} and {name!r}")
                seen[n] = name
        return self


_EMBEDDING_ALIASES = ("all-minilm:l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


class ConfigError(Exception):
    pass


def home_dir() -> Path:
    return Path(os.environ.get("HEARTH_HOME") or Path.home() / ".cache" / "hearth")


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the YAML file (flag, else $HEARTH_CONFIG, else none), apply env overrides, validate."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("HEARTH_CONFIG") or None
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config: {e.strerror or e}") from e
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: invalid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: line 1: the top level must be a mapping (server:, models:)")
        raw = loaded or {}
        if node is not None:
            _record_lines(node, (), lines)
        missing: list[str] = []
        raw = _interpolate(raw, env, (), missing)
        if missing:
            unset = [f"{source}:{lines.get(tuple(p.split('.')[:-1]), '?')}: {p}" for p in missing]
            raise ConfigError("invalid config: environment variable not set (and no ${VAR:-default}):\n  "
                              + "\n  ".join(unset))  # fmt: skip
    _apply_env(raw, env)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, source, lines)) from None
    problems = check_references(cfg)
    if problems:
        msgs = []
        for where_path, msg in problems:
            n = next((n for n in range(len(where_path), -1, -1) if where_path[:n] in lines), None)
            where = f"{source}:{lines[where_path[:n]]}" if n is not None else source
            msgs.append(f"{where}: {'.'.join(where_path)}: {msg}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(msgs))
    cfg.source = source
    return cfg


def check_references(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    """Routers may only name models (or their own groups) that exist, and fallbacks may not loop."""
    problems: list[tuple[tuple[str, ...], str]] = []
    for name, m in cfg.models.items():
        if not isinstance(m, RouterModel):
            continue
        base = ("models", name)
        leaves = {n for n, c in cfg.models.items() if not isinstance(c, RouterModel | EmbeddingModel)}
        targets = leaves | set(m.groups)

        def need(path: tuple[str, ...], target: str, allowed: set[str], base: tuple[str, ...] = base) -> None:
            if target not in allowed:
                problems.append((base + path, f"unknown target {target!r}; known: {', '.join(sorted(allowed))}"))

        for g, members in m.groups.items():
            if not members:
                problems.append(((*base, "groups", g), "a group needs at least one model"))
            for member, weight in members.items():
                need(("groups", g, member), member, leaves)
                if weight < 0:
                    problems.append(((*base, "groups", g, member), "weights must be >= 0"))
        for i, r in enumerate(m.rules):
            need(("rules", str(i), "target"), r.target, targets)
        last = -1.0
        for i, t in enumerate(m.tiers):
            need(("tiers", str(i), "target"), t.target, targets)
            if t.max_score <= last:
                problems.append(((*base, "tiers", str(i), "max_score"), "tiers must have ascending max_score"))
            last = t.max_score
        need(("default",), m.default, targets)
        if m.long_prompt_target:
            need(("long_prompt_target",), m.long_prompt_target, targets)
        for src, chain in m.fallbacks.items():
            need(("fallbacks", src), src, leaves)
            for i, dst in enumerate(chain):
                need(("fallbacks", src, str(i)), dst, leaves)
            if src in chain:
                problems.append(((*base, "fallbacks", src), f"fallbacks form a cycle: {src} -> {src}"))
            dupes = sorted({d for d in chain if chain.count(d) > 1})
            if dupes:
                problems.append(((*base, "fallbacks", src), f"{', '.join(dupes)} listed twice"))
    names = {n: m for name, m in cfg.models.items() for n in (name, *m.aliases)}
    chat = sorted(n for n, m in names.items() if not isinstance(m, EmbeddingModel))
    if cfg.rag.embedding_model not in names:
        problems.append((("rag", "embedding_model"), f"unknown model {cfg.rag.embedding_model!r}"))
    refs: list[tuple[tuple[str, ...], str | None]] = [(("rag", "chat_model"), cfg.rag.chat_model)]
    refs += [(("rag", "profiles", p, "model"), prof.model) for p, prof in cfg.rag.profiles.items()]
    for path, ref in refs:
        if ref is not None and ref not in chat:
            problems.append((path, f"unknown chat model {ref!r}; known: {', '.join(chat)}"))
    return problems


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str], path: tuple[str, ...], missing: list[str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values (not keys) from the environment."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env, (*path, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*path, str(i)), missing) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            if m.group(1) in env and env[m.group(1)] != "":
                return env[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            missing.append(f"{'.'.join(path)}.${{{m.group(1)}}}")
            return ""

        return _VAR.sub(repl, value)
    return value


def _record_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(k.value)
            out[(*path, key)] = k.start_mark.line + 1
            _record_lines(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _record_lines(v, (*path, str(i)), out)


def _describe(e: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    msgs = []
    for err in e.errors():
        # Drop the discriminator tags pydantic adds ("openai", "llamacpp") to get the YAML path.
        loc = [str(p) for p in err["loc"] if p not in ("llamacpp", "embedding", "openai", "ollama", "router")]
        field = ".".join(loc) or "(top level)"
        line = None
        for n in range(len(loc), -1, -1):
            if tuple(loc[:n]) in lines:
                line = lines[tuple(loc[:n])]
                break
        where = f"{source}:{line}" if line else source
        msgs.append(f"{where}: {field}: {err['msg']}")
    return "invalid config:\n  " + "\n  ".join(msgs)


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    for key, value in sorted(env.items()):
        if not key.startswith("HEARTH_") or key in _RESERVED_ENV or "__" not in key:
            continue
        parts = [p.lower() for p in key[len("HEARTH_") :].split("__")]
        node: dict[str, Any] = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            existing = _match_key(node, part)
            if last:
                node[existing or part] = yaml.safe_load(value) if value != "" else None
            else:
                child = node.get(existing or part)
                if not isinstance(child, dict):
                    child = {}
                    node[existing or part] = child
                node = child


def _match_key(node: dict[str, Any], part: str) -> str | None:
    norm = part.replace("-", "_").replace(".", "_")
    for k in node:
        if str(k).lower().replace("-", "_").replace(".", "_") == norm:
            return str(k)
    return None


def describe_config(cfg: Config) -> str:
    """Human summary for `hearth config check`."""
    out = [f"config: {cfg.source}", f"server: http://{cfg.server.host}:{cfg.server.port}"]
    for name, m in cfg.models.items():
        aliases = f" (aliases: {', '.join(m.aliases)})" if m.aliases else ""
        if isinstance(m, LocalModel):
            out.append(f"model {name}{aliases}: local llama.cpp, {m.path}, n_ctx {m.n_ctx}")
        elif isinstance(m, EmbeddingModel):
            out.append(f"model {name}{aliases}: local embeddings, {m.path}, loaded on first use")
        elif isinstance(m, RouterModel):
            out.append(
                f"model {name}{aliases}: router, {len(m.rules)} rules, {len(m.tiers)} score tiers, default {m.default}"
                + (f", fallbacks {m.fallbacks}" if m.fallbacks else "")
                + (f", first-token deadline {m.ttft_deadline}s" if m.ttft_deadline else "")
            )
        else:
            key = f", key from ${m.api_key_env}" if m.api_key_env else ""
            state = ""
            if m.api_key_env and not os.environ.get(m.api_key_env):
                state = f" [warning: ${m.api_key_env} is not set]"
            out.append(
                f"model {name}{aliases}: {m.kind} at {m.base_url} as {m.model or name}{key}, "
                f"timeouts connect {m.timeouts.connect}s / first token {m.timeouts.first_token}s / "
                f"total {m.timeouts.total}s{state}"
            )
    r = cfg.rag
    where = f"Chroma at {r.chroma_url}" if r.store == "chroma" else (r.path or "$HEARTH_HOME/rag")
    out.append(f"rag: {where}, embeddings by {r.embedding_model}, chunks of {r.chunk_tokens} tokens, top {r.top_k}, "
               f"{r.fusion} fusion" + (f", profiles: {', '.join(r.profiles)}" if r.profiles else ""))  # fmt: skip
    return "\n".join(out)
