"""Ingest and hybrid search over knowledge bases: what the HTTP API, the CLI and RAG chat share.

Search asks both retrievers for `candidates` hits, then fuses them:
- weighted (default): each list's scores are min-max normalised to [0, 1] (BM25 scores have no fixed
  scale), then `vector_weight * vector + (1 - vector_weight) * keyword`; a hit missing from one list
  gets 0 there;
- rrf: reciprocal-rank fusion, sum of 1 / (60 + rank), which ignores the scores altogether.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hearth.config import RagConfig
from hearth.core.errors import BadRequest
from hearth.rag import chunking, text
from hearth.rag.types import Catalog, DocInfo, Hit, KnowledgeStore, NewChunk

EmbedFn = Callable[[list[str]], Awaitable[np.ndarray]]
CountFn = Callable[[list[str]], list[int]]
ProgressFn = Callable[[int, int, str], None]
_RRF_K = 60


@dataclass(slots=True)
class TextDocument:
    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None  # code | markdown | rst | prose; default: guessed from the source's suffix


@dataclass(slots=True)
class IngestReport:
    kb: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0  # chunks that needed the embedding model (the others kept their vectors)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rate = self.chunks / self.seconds if self.seconds > 0 else 0.0
        return {"kb": self.kb, "added": self.added, "updated": self.updated, "unchanged": len(self.unchanged),
                "removed": self.removed, "skipped": self.skipped, "chunks": self.chunks, "embedded": self.embedded,
                "seconds": round(self.seconds, 3), "chunks_per_second": round(rate, 1)}  # fmt: skip


class RagService:
    def __init__(self, cfg: RagConfig, catalog: Catalog, embed: EmbedFn, count: CountFn | None = None, *,
                 on_search: Callable[[str, str, float], None] | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.catalog = catalog
        self._embed = embed
        self._count = count
        self.on_search = on_search  # (kb, mode, seconds), for metrics

    def count_tokens(self, texts: list[str]) -> list[int]:
        return (self._count or chunking.approx_tokens)(texts)

    def _params(self) -> str:
        # Part of every document's hash: changing the chunking re-ingests everything.
        return f"c{self.cfg.chunk_tokens}o{self.cfg.chunk_overlap}m{self.cfg.embedding_model}t{text.TERMS_VERSION}"

    # --- ingest -------------------------------------------------------------------------------------

    async def ingest_documents(self, kb: str, docs: list[TextDocument], *, replace_all: bool = False,
                               progress: ProgressFn | None = None) -> IngestReport:  # fmt: skip
        store = await self.catalog.open(kb, create=True)
        report = IngestReport(kb)
        t0 = time.perf_counter()
        known = await store.documents()
        for i, d in enumerate(docs):
            await self._ingest_one(store, d.source, d.text, d.metadata, d.kind, known, report)
            if progress:
                progress(i + 1, len(docs), d.source)
        if replace_all:
            gone = sorted(set(known) - {d.source for d in docs})
            if gone:
                await store.remove(gone)
                report.removed.extend(gone)
        report.seconds = time.perf_counter() - t0
        return report

    async def ingest_paths(self, kb: str, paths: Iterable[str | Path], *, progress: ProgressFn | None = None,
                           metadata: dict[str, Any] | None = None) -> IngestReport:  # fmt: skip
        """Files and folders; unchanged files are skipped, changed ones replaced, and files that were
        ingested from these folders but are gone now are removed."""
        store = await self.catalog.open(kb, create=True)
        report = IngestReport(kb)
        t0 = time.perf_counter()
        known = await store.documents()
        files: list[Path] = []
        roots: list[str] = []
        for p in paths:
            path = Path(p).expanduser().resolve()
            if path.is_dir():
                roots.append(str(path) + "/")
                files.extend(_walk(path))
            elif path.is_file():
                files.append(path)
            elif str(path) in known:
                roots.append(str(path))  # an ingested file that is gone: removed below
            else:
                report.skipped.append({"source": str(p), "reason": "no such file or folder"})
        for i, f in enumerate(files):
            try:
                content = await asyncio.to_thread(text.read_file, f)
            except text.Unreadable as e:
                report.skipped.append({"source": str(f), "reason": str(e)})
            else:
                await self._ingest_one(store, str(f), content, dict(metadata or {}), None, known, report)
            if progress:
                progress(i + 1, len(files), str(f))
        seen = {str(f) for f in files}
        gone = sorted(s for s in known if s not in seen and any(s == r or s.startswith(r) for r in roots))
        if gone:
            await store.remove(gone)
            report.removed.extend(gone)
        report.seconds = time.perf_counter() - t0
        return report

    async def _ingest_one(self, store: KnowledgeStore, source: str, content: str, metadata: dict[str, Any],
                          kind: str | None, known: dict[str, DocInfo], report: IngestReport) -> None:  # fmt: skip
        meta_sig = repr(sorted(metadata.items()))
        # "<params>:<content>": a changed document whose params prefix is unchanged may reuse its old vectors.
        params = hashlib.sha256(self._params().encode()).hexdigest()[:12]
        digest = params + ":" + hashlib.sha256(f"{meta_sig}|".encode() + content.encode()).hexdigest()
        old = known.get(source)
        if old is not None and old.hash == digest:
            report.unchanged.append(source)
            return
        if kind == "html" or (kind is None and source.lower().endswith((".html", ".htm")) and "<" in content):
            content, kind = text.html_to_text(content), "markdown"  # text sent over HTTP arrives as markup
        kind = kind or text.kind_of(source, content)
        pieces = await asyncio.to_thread(chunking.chunk, content, kind, self._count, self.cfg.chunk_tokens,
                                         self.cfg.chunk_overlap)  # fmt: skip
        if not pieces:
            report.skipped.append({"source": source, "reason": "no text"})
            return
        embedded = [f"{p.title}\n{p.text}" if p.title else p.text for p in pieces]
        reuse: dict[str, np.ndarray] = {}
        if old is not None and old.hash.split(":")[0] == params:
            reuse = await store.chunk_vectors(source)  # an edit to one section re-embeds that section only
        need = [i for i, e in enumerate(embedded) if e not in reuse]
        fresh = await self._embed([embedded[i] for i in need]) if need else None
        width = fresh.shape[1] if fresh is not None else len(next(iter(reuse.values())))
        vectors = np.zeros((len(pieces), width), np.float32)
        if fresh is not None:
            vectors[need] = fresh
        for i, e in enumerate(embedded):
            if e in reuse:
                vectors[i] = reuse[e]
        report.embedded += len(need)
        chunks = [NewChunk(p.text, p.title, p.line_start, p.line_end, text.terms(e))
                  for p, e in zip(pieces, embedded, strict=True)]  # fmt: skip
        await store.replace(DocInfo(source, digest, len(chunks), len(content), metadata=metadata), chunks, vectors)
        (report.updated if old is not None else report.added).append(source)
        known[source] = DocInfo(source, digest, len(chunks))
        report.chunks += len(chunks)

    # --- search -------------------------------------------------------------------------------------

    async def search(
        self,
        kb: str,
        query: str,
        *,
        top_k: int | None = None,
        where: dict[str, Any] | None = None,
        mode: str = "hybrid",
        fusion: str | None = None,
        vector_weight: float | None = None,
    ) -> list[Hit]:
        if not query or not query.strip():
            raise BadRequest("query: must not be empty", param="query")
        if mode not in ("hybrid", "vector", "keyword"):
            raise BadRequest("mode: one of hybrid, vector, keyword", param="mode")
        store = await self.catalog.open(kb)
        t0 = time.perf_counter()
        hits = await self._search(store, query, top_k, where, mode, fusion, vector_weight)
        if self.on_search is not None:
            self.on_search(kb, mode, time.perf_counter() - t0)
        return hits

    async def _search(self, store: KnowledgeStore, query: str, top_k: int | None, where: dict[str, Any] | None,
                      mode: str, fusion: str | None, vector_weight: float | None) -> list[Hit]:  # fmt: skip
        k = top_k or self.cfg.top_k
        n = max(self.cfg.candidates, k)
        vec_hits: list[Hit] = []
        kw_hits: list[Hit] = []
        if mode != "keyword":
            vec = (await self._embed([query]))[0]
            vec_hits = await store.vector_search(vec, k if mode == "vector" else n, where)
        if mode != "vector":
            kw_hits = await store.keyword_search(text.terms(query), k if mode == "keyword" else n, where)
        if mode == "vector":
            return vec_hits[:k]
        if mode == "keyword":
            return kw_hits[:k]
        w = self.cfg.vector_weight if vector_weight is None else vector_weight
        return fuse(vec_hits, kw_hits, fusion or self.cfg.fusion, w)[:k]


def fuse(vec: list[Hit], kw: list[Hit], method: str, vector_weight: float) -> list[Hit]:
    merged: dict[str, Hit] = {}
    for h in vec:
        merged[h.id] = h
        h.score = 0.0
    for h in kw:
        if h.id in merged:
            merged[h.id].keyword_score = h.keyword_score
        else:
            merged[h.id] = h
            h.score = 0.0
    if method == "rrf":
        for rank, h in enumerate(vec):
            merged[h.id].score += 1.0 / (_RRF_K + rank + 1)
        for rank, h in enumerate(kw):
            merged[h.id].score += 1.0 / (_RRF_K + rank + 1)
    else:
        for hits, weight, attr in ((vec, vector_weight, "vector_score"), (kw, 1.0 - vector_weight, "keyword_score")):
            if not hits or weight == 0:
                continue
            vals = [getattr(h, attr) or 0.0 for h in hits]
            lo, hi = min(vals), max(vals)
            span = hi - lo
            for h, v in zip(hits, vals, strict=True):
                merged[h.id].score += weight * ((v - lo) / span if span > 0 else 1.0)
    return sorted(merged.values(), key=lambda h: h.score, reverse=True)


def _walk(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part in text.SKIP_DIRS or part.startswith(".") for part in rel):
            continue
        if p.is_file() and (p.suffix.lower() in text.TEXT_SUFFIXES or p.suffix.lower() in text.CODE_SUFFIXES):
            out.append(p)
    return out
