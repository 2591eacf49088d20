"""RAG chat: retrieve, put numbered sources in the prompt within the model's context, answer with
citations, and send the sources back.

Used for the model `rag:<kb>`, for profile names from `rag.profiles`, and for any model when the body
carries `"hearth": {"rag": {"kb": ...}}`. It sits outside the cache: the retrieved text is part of the
prompt the cache sees, so a changed knowledge base is never answered from an old cache entry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from hearth.core.errors import BadRequest
from hearth.core.types import Backend, ChatRequest, Chunk, Message, SourcesInfo
from hearth.core.wrapper import WrappingBackend
from hearth.rag.service import RagService
from hearth.rag.types import Hit, Rewrite

INSTRUCTIONS = (
    "Answer the question using only the numbered sources below. Cite the sources you use inline as [1], [2]. "
    "If the sources do not contain the answer, say that you don't know."
)
_RESERVED_ANSWER = 512  # completion tokens assumed when the request sets no max_tokens
_MARGIN = 64


class RagBackend(WrappingBackend):
    """Made per request around a registry model (readiness and model info are the inner model's)."""

    def __init__(self, service: RagService, inner: Backend, inner_name: str, kb: str, *, top_k: int | None = None,
                 where: dict[str, Any] | None = None, rewrite: Rewrite | None = None) -> None:
        super().__init__(inner)
        self.rewrite = rewrite
        self.name = f"rag:{kb}"
        self.service = service
        self.inner_name = inner_name
        self.kb = kb
        self.top_k = top_k
        self.where = where

    async def start(self) -> None:
        return None  # the inner model belongs to the registry, which starts and closes it

    async def close(self) -> None:
        return None

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        query = _question(request)
        if self.rewrite is not None:
            query = await self.rewrite(request)
        hits = await self.service.search(self.kb, query, top_k=self.top_k, where=self.where)
        hits = await asyncio.to_thread(self._within_budget, request, hits)  # the tokenizer may load on first use
        block = _sources_block(hits)
        req = dataclasses.replace(request, model=self.inner_name)
        if request.prompt is not None:
            req.prompt = f"{INSTRUCTIONS}\n\n{block}\n\nQuestion: {request.prompt}\nAnswer:"
        else:
            msgs = list(request.messages)
            text = f"{INSTRUCTIONS}\n\n{block}"
            if msgs and msgs[0].role == "system":
                msgs[0] = dataclasses.replace(msgs[0], content=f"{msgs[0].content}\n\n{text}")
            else:
                msgs.insert(0, Message("system", text))
            req.messages = msgs
        yield SourcesInfo([_source(i + 1, h) for i, h in enumerate(hits)])
        async for c in self.inner.stream(req):
            yield c

    def _within_budget(self, request: ChatRequest, hits: list[Hit]) -> list[Hit]:
        """Keep the best sources that fit: context minus the conversation, the answer and a margin. Tokens
        are counted with the embedding tokenizer (a different vocabulary), so with a 25% allowance."""
        ctx = self.inner.info().context_length or 4096
        count = self.service.count_tokens
        convo = request.prompt if request.prompt is not None else "\n".join(m.content for m in request.messages)
        used = int(1.25 * sum(count([convo, INSTRUCTIONS]))) + _MARGIN
        budget = ctx - used - (request.sampling.max_tokens or _RESERVED_ANSWER)
        if budget <= 0:
            return []
        kept = []
        sizes = count([h.text for h in hits]) if hits else []
        for h, n in zip(hits, sizes, strict=True):
            cost = int(1.25 * n) + 16
            if cost > budget:
                break
            kept.append(h)
            budget -= cost
        return kept


def _question(request: ChatRequest) -> str:
    q = request.question()
    if not q.strip():
        raise BadRequest("RAG needs a question: the last user message is empty", param="messages")
    return q


def _label(h: Hit) -> str:
    where = h.source + (f" > {h.title}" if h.title else "")
    if h.line_start:
        where += f" (lines {h.line_start}-{h.line_end})"
    return where


def _sources_block(hits: list[Hit]) -> str:
    if not hits:
        return "(The knowledge base has nothing relevant to this question.)"
    return "\n\n".join(f"[{i + 1}] {_label(h)}\n{h.text}" for i, h in enumerate(hits))


def _source(index: int, h: Hit) -> dict[str, Any]:
    return {"index": index, "source": h.source, "title": h.title, "line_start": h.line_start,
            "line_end": h.line_end, "score": round(h.score, 4), "text": h.text}
