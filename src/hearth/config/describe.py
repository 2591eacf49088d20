"""A human summary of a loaded config, printed by `hearth config check`.

Kept apart from loading because it is output only: what each model is, where remote ones live and how
they authenticate (warning when a key variable is unset), and the router and RAG settings that decide
where requests go. Defaults are left out where listing them would only hide what was configured.
"""

from __future__ import annotations

import os

from hearth.config.models import DEFAULT_FALLBACK_ON, EmbeddingModel, LocalModel, RouterModel
from hearth.config.schema import Config


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
                + (f", fallback on {m.fallback_on}" if set(m.fallback_on) != set(DEFAULT_FALLBACK_ON) else "")
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
               f"{r.fusion} fusion" + (f", profiles: {', '.join(r.profiles)}" if r.profiles else ""))
    k = cfg.keys
    keys = f"Redis at {_safe_url(k.redis_url or cfg.cache.redis_url)}" if k.store == "redis" else str(k.sqlite_path())
    admin = "set" if os.environ.get("HEARTH_ADMIN_KEY") else "not set"
    out.append(f"keys: {keys}; admin key (HEARTH_ADMIN_KEY) {admin}")
    if cfg.prices:
        out.append("prices per million tokens: " + ", ".join(
            f"{n} in {p.input:g} / out {p.output:g}" for n, p in cfg.prices.items()))
    return "\n".join(out)


def _safe_url(url: str | None) -> str:
    """A Redis URL without its password, for printing."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
