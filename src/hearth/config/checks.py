"""Checks across models that pydantic cannot make one model at a time: router targets, groups, fallbacks, RAG.

A router may name only models (or its own groups) that exist, tiers must ascend, and fallbacks may not
loop; the RAG section may name only existing models. These run on the validated `Config`, after every
model has been parsed, and each problem comes back as a path into the config rather than an exception,
so load.py can report all of them at once, each with its file line.
"""

from __future__ import annotations

from hearth.config.models import EmbeddingModel, RouterModel
from hearth.config.schema import Config


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
    if cfg.rag.embedding_model != "auto" and cfg.rag.embedding_model not in names:
        problems.append((("rag", "embedding_model"), f"unknown model {cfg.rag.embedding_model!r}"))
    refs: list[tuple[tuple[str, ...], str | None]] = [(("rag", "chat_model"), cfg.rag.chat_model)]
    refs += [(("rag", "profiles", p, "model"), prof.model) for p, prof in cfg.rag.profiles.items()]
    refs += [(("conversation", "rewrite_model"), cfg.conversation.rewrite_model),
             (("conversation", "quality", "judge_model"), cfg.conversation.quality.judge_model)]
    for path, ref in refs:
        if ref is not None and ref not in chat:
            problems.append((path, f"unknown chat model {ref!r}; known: {', '.join(chat)}"))
    for priced in cfg.prices:
        if priced not in cfg.models:
            problems.append((("prices", priced), f"unknown model {priced!r}; prices are per model name (not alias)"))
    if cfg.keys.store == "redis" and not (cfg.keys.redis_url or cfg.cache.redis_url):
        problems.append((("keys", "redis_url"), "store: redis needs keys.redis_url (or cache.redis_url)"))
    if cfg.conversation.memory == "redis" and not (cfg.conversation.redis_url or cfg.cache.redis_url):
        need_url = "memory: redis needs conversation.redis_url (or cache.redis_url)"
        problems.append((("conversation", "redis_url"), need_url))
    return problems
