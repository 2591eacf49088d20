"""Ingest and hybrid search over knowledge bases: what the HTTP API, the CLI and RAG chat share.

Search asks both retrievers for `candidates` hits, then fuses them:
- weighted: each list's scores are min-max normalised to [0, 1] (BM25 scores have no fixed
  scale), then `vector_weight * vector + (1 - vector_weight) * keyword`; a hit missing from one list
  gets 0 there;
- rrf: reciprocal-rank fusion, sum of 1 / (60 + rank), which ignores the scores altogether;
- adaptive (default): weighted, with this query's vector share scaled by how clearly each retriever's best
  hit stands out from its other candidates. A fixed share lets a retriever that found nothing outvote one
  that did (min-max normalisation makes every list's best hit a 1.0): on Chinese questions an English-only
  embedding model made hybrid search worse than keyword search alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hearth.config import RagConfig
from hearth.core.errors import BadRequest
from hearth.core.types import InputType
from hearth.rag import chunking, text
from hearth.rag.types import Catalog, DocInfo, Hit, KnowledgeStore, NewChunk

log = logging.getLogger("hearth")

# texts, the embedding model, and whether they are documents or a query (asymmetric models embed them apart)
EmbedFn = Callable[[list[str], str, InputType], Awaitable[np.ndarray]]
CountFn = Callable[[list[str]], list[int]]
ProgressFn = Callable[[int, int, str], None]
_RRF_K = 60
_FOREIGN_SCRIPT = re.compile(r"[^\x00-\u024f\u1e00-\u1eff\u2000-\u206f\s\d\W]")  # a letter beyond Latin


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
                "seconds": round(self.seconds, 3), "chunks_per_second": round(rate, 1)}


class RagService:
    def __init__(self, cfg: RagConfig, catalog: Catalog, embed: EmbedFn, count: CountFn | None = None, *,
                 models: Iterable[str] = (), english_only: Iterable[str] = (), english: str = "all-minilm",
                 multilingual: str | None = None,
                 on_search: Callable[[str, str, float], None] | None = None) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self._embed = embed
        self._count = count
        # With rag.embedding_model "auto", a new knowledge base gets `multilingual` when its first documents are
        # in other scripts than Latin, else `english` (faster, and a little better on English).
        self.english, self.multilingual = english, multilingual
        named = [cfg.embedding_model] if cfg.embedding_model != "auto" else [english, multilingual]
        self.models = sorted({*models, *(m for m in named if m)})  # the embedding models a knowledge base may use
        self._kb_models: dict[str, tuple[float, str | None]] = {}
        self.english_only = set(english_only)  # models whose vectors mean nothing for other scripts
        self.on_search = on_search  # (kb, mode, seconds), for metrics

    def count_tokens(self, texts: list[str]) -> list[int]:
        return (self._count or chunking.approx_tokens)(texts)

    def _params(self, model: str) -> str:
        # Part of every document's hash: changing the chunking or the model re-ingests everything.
        return f"c{self.cfg.chunk_tokens}o{self.cfg.chunk_overlap}m{model}t{text.TERMS_VERSION}"

    def _params_hash(self, model: str) -> str:
        return hashlib.sha256(self._params(model).encode()).hexdigest()[:12]

    def model_for(self, texts: Iterable[str]) -> str:
        """The model a new knowledge base gets for these texts: the configured one, or by their script."""
        if self.cfg.embedding_model != "auto":
            return self.cfg.embedding_model
        if self.multilingual is None:
            return self.english
        sample = "".join(t[:2000] for t, _ in zip(texts, range(50), strict=False))
        return self.multilingual if _mostly_foreign(sample) else self.english

    async def model_of(self, kb: str, store: KnowledgeStore, texts: Iterable[str] = ()) -> str:
        """The embedding model a knowledge base was built with, read from its documents' hashes (which carry
        the model among their parameters): a knowledge base keeps its model until `reembed`, whatever
        `rag.embedding_model` says meanwhile, since vectors of two models do not compare. Empty or
        unrecognised: the model for `texts` (what is being added, or asked)."""
        now = time.monotonic()
        hit = self._kb_models.get(kb)
        if hit is not None and now - hit[0] < 5.0:
            return hit[1] or self.model_for(texts)
        docs = await store.documents()
        counts = Counter(d.hash.split(":")[0] for d in docs.values())
        by_hash = {self._params_hash(m): m for m in self.models}
        model = next((by_hash[p] for p, _ in counts.most_common() if p in by_hash), None)
        if model is None and docs:
            # Built with other chunking parameters, or by a model not here: the model every knowledge base had
            # before they could differ. A re-ingest or `reembed` makes it known again.
            log.warning("knowledge base %r: cannot tell its embedding model; assuming %s", kb, self.english)
            model = self.english
        self._kb_models[kb] = (now, model)
        return model or self.model_for(texts)

    # --- ingest -------------------------------------------------------------------------------------

    async def ingest_documents(self, kb: str, docs: list[TextDocument], *, replace_all: bool = False,
                               progress: ProgressFn | None = None) -> IngestReport:
        store = await self.catalog.open(kb, create=True)
        report = IngestReport(kb)
        t0 = time.perf_counter()
        model = await self.model_of(kb, store, (d.text for d in docs))
        known = await store.documents()
        for i, d in enumerate(docs):
            await self._ingest_one(store, model, d.source, d.text, d.metadata, d.kind, known, report)
            if progress:
                progress(i + 1, len(docs), d.source)
        self._kb_models.pop(kb, None)
        if replace_all:
            gone = sorted(set(known) - {d.source for d in docs})
            if gone:
                await store.remove(gone)
                report.removed.extend(gone)
        report.seconds = time.perf_counter() - t0
        return report

    async def ingest_paths(self, kb: str, paths: Iterable[str | Path], *, progress: ProgressFn | None = None,
                           metadata: dict[str, Any] | None = None) -> IngestReport:
        """Files and folders; unchanged files are skipped, changed ones replaced, and files that were
        ingested from these folders but are gone now are removed."""
        store = await self.catalog.open(kb, create=True)
        report = IngestReport(kb)
        t0 = time.perf_counter()
        model: str | None = None
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
                model = model or await self.model_of(kb, store, [content])  # a new kb: by its first file
                kind = "markdown" if f.suffix.lower() in (".html", ".htm") else None  # read_file made it text
                await self._ingest_one(store, model, str(f), content, dict(metadata or {}), kind, known, report)
            if progress:
                progress(i + 1, len(files), str(f))
        seen = {str(f) for f in files}
        gone = sorted(s for s in known if s not in seen and any(s == r or s.startswith(r) for r in roots))
        if gone:
            await store.remove(gone)
            report.removed.extend(gone)
        report.seconds = time.perf_counter() - t0
        return report

    async def _ingest_one(self, store: KnowledgeStore, model: str, source: str, content: str,
                          metadata: dict[str, Any], kind: str | None, known: dict[str, DocInfo],
                          report: IngestReport) -> None:
        meta_sig = repr(sorted(metadata.items()))
        # "<params>:<content>": a changed document whose params prefix is unchanged may reuse its old vectors.
        params = self._params_hash(model)
        digest = params + ":" + hashlib.sha256(f"{meta_sig}|".encode() + content.encode()).hexdigest()
        old = known.get(source)
        if old is not None and old.hash == digest:
            report.unchanged.append(source)
            return
        if kind == "html" or (kind is None and source.lower().endswith((".html", ".htm")) and "<" in content):
            content, kind = text.html_to_text(content), "markdown"  # text sent over HTTP arrives as markup
        kind = kind or text.kind_of(source, content)
        pieces = await asyncio.to_thread(chunking.chunk, content, kind, self._count, self.cfg.chunk_tokens,
                                         self.cfg.chunk_overlap)
        if not pieces:
            report.skipped.append({"source": source, "reason": "no text"})
            return
        embedded = [f"{p.title}\n{p.text}" if p.title else p.text for p in pieces]
        reuse: dict[str, np.ndarray] = {}
        if old is not None and old.hash.split(":")[0] == params:
            reuse = await store.chunk_vectors(source)  # an edit to one section re-embeds that section only
        need = [i for i, e in enumerate(embedded) if e not in reuse]
        fresh = await self._embed([embedded[i] for i in need], model, "document") if need else None
        width = fresh.shape[1] if fresh is not None else len(next(iter(reuse.values())))
        vectors = np.zeros((len(pieces), width), np.float32)
        if fresh is not None:
            vectors[need] = fresh
        for i, e in enumerate(embedded):
            if e in reuse:
                vectors[i] = reuse[e]
        report.embedded += len(need)
        chunks = [NewChunk(p.text, p.title, p.line_start, p.line_end, text.terms(e))
                  for p, e in zip(pieces, embedded, strict=True)]
        await store.replace(DocInfo(source, digest, len(chunks), len(content), metadata=metadata), chunks, vectors)
        (report.updated if old is not None else report.added).append(source)
        known[source] = DocInfo(source, digest, len(chunks))
        report.chunks += len(chunks)

    async def reembed(self, kb: str, model: str | None = None, *, progress: ProgressFn | None = None) -> IngestReport:
        """Every document of `kb` embedded again with `model` (default: what `rag.embedding_model` gives its
        text), from the chunks it holds, so no source file is needed. Documents are switched one at a time, as
        an ingest does."""
        store = await self.catalog.open(kb)
        if model is None:
            first = next(iter(sorted(await store.documents())), None)
            model = self.model_for([c.text for c in await store.chunks(first)] if first else [])
        if model not in self.models:
            raise BadRequest(f"model: {model!r} is not an embedding model here; known: {', '.join(self.models)}",
                             param="model")
        report = IngestReport(kb)
        t0 = time.perf_counter()
        docs = await store.documents()
        params = self._params_hash(model)
        for i, d in enumerate(sorted(docs.values(), key=lambda d: d.source)):
            chunks = await store.chunks(d.source)
            if chunks:
                vectors = await self._embed([f"{c.title}\n{c.text}" if c.title else c.text for c in chunks], model,
                                            "document")
                digest = params + ":" + d.hash.split(":", 1)[-1]
                await store.replace(DocInfo(d.source, digest, len(chunks), d.size, metadata=d.metadata), chunks,
                                    vectors)
                report.updated.append(d.source)
                report.chunks += len(chunks)
                report.embedded += len(chunks)
            if progress:
                progress(i + 1, len(docs), d.source)
        self._kb_models[kb] = (time.monotonic(), model)
        report.seconds = time.perf_counter() - t0
        return report

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
        model = await self.model_of(kb, store, [query]) if mode != "keyword" else self.english
        hits = await self._search(store, model, query, top_k, where, mode, fusion, vector_weight)
        if self.on_search is not None:
            self.on_search(kb, mode, time.perf_counter() - t0)
        return hits

    async def _search(self, store: KnowledgeStore, model: str, query: str, top_k: int | None,
                      where: dict[str, Any] | None, mode: str, fusion: str | None,
                      vector_weight: float | None) -> list[Hit]:
        k = top_k or self.cfg.top_k
        n = max(self.cfg.candidates, k)
        vec_hits: list[Hit] = []
        kw_hits: list[Hit] = []
        if mode == "hybrid" and model in self.english_only and _mostly_foreign(query):
            # An English-only model's vectors for a Chinese (Japanese, Cyrillic...) question are close to
            # noise: fused in, they made hybrid search worse than keyword search alone.
            mode = "keyword"
        if mode != "keyword":
            vec = (await self._embed([query], model, "query"))[0]
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
        if method == "adaptive":
            vector_weight = _adaptive_weight(vec, kw, vector_weight)
        for hits, weight, attr in ((vec, vector_weight, "vector_score"), (kw, 1.0 - vector_weight, "keyword_score")):
            if not hits or weight == 0:
                continue
            vals = [getattr(h, attr) or 0.0 for h in hits]
            lo, hi = min(vals), max(vals)
            span = hi - lo
            for h, v in zip(hits, vals, strict=True):
                merged[h.id].score += weight * ((v - lo) / span if span > 0 else 1.0)
    return sorted(merged.values(), key=lambda h: h.score, reverse=True)


def _confidence(hits: list[Hit], attr: str) -> float:
    """How far the best hit stands out from the other candidates, in standard deviations: a retriever that
    found the answer puts it well above the rest; one that found nothing in particular (an English-only
    embedding model on a Chinese question, a keyword search whose terms are everywhere) does not."""
    vals = [getattr(h, attr) or 0.0 for h in hits]
    if len(vals) < 3:
        return 0.0
    std = float(np.std(vals))
    return max(0.0, (vals[0] - float(np.mean(vals))) / std) if std > 0 else 0.0


def _adaptive_weight(vec: list[Hit], kw: list[Hit], prior: float) -> float:
    """The vector share for this query: the configured weight, scaled by each retriever's confidence."""
    cv, ck = _confidence(vec, "vector_score"), _confidence(kw, "keyword_score")
    den = prior * cv + (1.0 - prior) * ck
    return prior * cv / den if den > 0 else prior


def _mostly_foreign(text: str) -> bool:
    """More than a tenth of the letters are beyond Latin script (one Greek letter in English is not)."""
    letters = sum(c.isalpha() for c in text)
    return bool(letters) and len(_FOREIGN_SCRIPT.findall(text)) / letters > 0.1


def _walk(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part in text.SKIP_DIRS or part.startswith(".") for part in rel):
            continue
        if p.is_file() and (p.suffix.lower() in text.TEXT_SUFFIXES or p.suffix.lower() in text.CODE_SUFFIXES):
            out.append(p)
    return out
