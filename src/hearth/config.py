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
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PORT = 8434
DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b"
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


ModelConfig = Annotated[LocalModel | OpenAIModel | OllamaModel, Field(discriminator="kind")]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    log_prompts: bool = Field(False, description="log prompt text (off: prompts may hold personal data)")


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _defaults_and_unique_names(self) -> Config:
        if not self.models:
            self.models = {DEFAULT_MODEL_NAME: LocalModel(aliases=["local"])}
        seen: dict[str, str] = {}
        for name, m in self.models.items():
            for n in [name, *m.aliases]:
                if n in seen:
                    raise ValueError(f"model name or alias {n!r} is used by both {seen[n]!r} and {name!r}")
                seen[n] = name
        return self


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
    _apply_env(raw, env)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, source, lines)) from None
    cfg.source = source
    return cfg


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
        loc = [str(p) for p in err["loc"] if p not in ("llamacpp", "openai", "ollama")]
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
    return "\n".join(out)
