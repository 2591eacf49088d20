"""Query latency at 100k chunks, retrieval only (issue 5; goal: p50 <= 20 ms).

The knowledge base: 100,000 chunks of ~90 words made of real BoolQ sentences (realistic term
statistics for BM25), with vectors made by jittering the embeddings of 1,000 real BoolQ passages
(cosine ~0.9 to their origin: tight clusters, the hard case for HNSW), written through the real
store (SQLite, BM25 postings, HNSW). Queries: BoolQ questions.

Timed per query: hybrid search with the query embedding (what `/v1/rag/{kb}/search` does), and
without it (BM25 + HNSW + fusion + fetching the hits). Anchor in the same run: exact vector search by
brute force (numpy matrix product over all 100k vectors), with HNSW's recall@10 against it. Also the
first-query time of a new process without and with the saved HNSW graph.

    .venv/bin/python benchmarks/rag_latency.py [--chunks 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import boolq
from hearth.config import RagConfig
from hearth.embed.local import shared_model
from hearth.rag.service import RagService, fuse
from hearth.rag.store import LocalCatalog, LocalStore
from hearth.rag.text import terms
from hearth.rag.types import DocInfo, NewChunk


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[int(q * (len(xs) - 1))] * 1000


async def run(n_chunks: int, n_queries: int) -> None:
    rng = random.Random(7)
    nrng = np.random.default_rng(7)
    rows = boolq()
    passages = list(dict.fromkeys(r["passage"] for r in rows))
    sentences = [s for p in passages for s in re.split(r"(?<=[.!?])\s+", p) if len(s) > 20]
    model = shared_model()  # llama.cpp's engine where installed (issue 18), else numpy
    t0 = time.perf_counter()
    base = model.encode(passages[:1000])
    print(f"embedded 1000 base passages in {time.perf_counter() - t0:.1f} s", flush=True)

    async def embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
        return model.encode(texts)  # type: ignore[no-any-return]

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        store = LocalStore("big", root / "big")
        all_vecs = np.zeros((n_chunks, 384), np.float32)
        t0 = time.perf_counter()
        per_doc = 50
        for doc in range(n_chunks // per_doc):
            chunks, idx = [], []
            for _ in range(per_doc):
                text = " ".join(rng.choice(sentences) for _ in range(4))
                chunks.append(NewChunk(text, "", 1, 1, terms(text)))
                idx.append(rng.randrange(len(base)))
            v = base[idx] + nrng.normal(0, 0.025, (per_doc, 384)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            all_vecs[doc * per_doc : (doc + 1) * per_doc] = v
            store._replace(DocInfo(f"doc{doc}", str(doc)), chunks, v)
        store.save()
        print(f"wrote {n_chunks} chunks through the store in {time.perf_counter() - t0:.1f} s", flush=True)
        store.close()

        for label, drop_snapshot in (("no saved graph (rebuild)", True), ("saved graph", False)):
            if drop_snapshot:
                (root / "big" / "vectors.json").rename(root / "big" / "vectors.json.off")
            svc = RagService(RagConfig(), LocalCatalog(root), embed, model.count_tokens)
            t0 = time.perf_counter()
            await svc.search("big", "warm up the index")
            print(f"first query of a new process, {label}: {time.perf_counter() - t0:.2f} s", flush=True)
            if drop_snapshot:
                await svc.catalog.close()
                (root / "big" / "vectors.json.off").rename(root / "big" / "vectors.json")
        kb = await svc.catalog.open("big")
        questions = [r["question"] for r in rows[:n_queries]]
        # The query embedding by the numpy engine (the only one before issue 18), for the same questions.
        numpy_model = shared_model(engine="numpy")
        numpy_model.encode(["warm up"])
        numpy_full = []
        for q in questions:
            t = time.perf_counter()
            qv = numpy_model.encode([q])[0]
            v = await kb.vector_search(qv, 50, None)
            k = await kb.keyword_search(terms(q), 50, None)
            fuse(v, k, "weighted", 0.7)[:10]
            numpy_full.append(time.perf_counter() - t)
        qvecs = model.encode(questions)
        full, retrieval, vec_only, kw_only, exact = [], [], [], [], []
        agree = 0
        for q, qv in zip(questions, qvecs, strict=True):
            t = time.perf_counter()
            await svc.search("big", q, top_k=10)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            v = await kb.vector_search(qv, 50, None)
            t1 = time.perf_counter()
            k = await kb.keyword_search(terms(q), 50, None)
            t2 = time.perf_counter()
            fuse(v, k, "weighted", 0.7)[:10]
            retrieval.append(time.perf_counter() - t)
            vec_only.append(t1 - t)
            kw_only.append(t2 - t1)
            t = time.perf_counter()
            sims = all_vecs @ qv
            top = np.argpartition(-sims, 10)[:10]
            top = top[np.argsort(-sims[top])]
            exact.append(time.perf_counter() - t)
            approx = {int(h.id) for h in (await kb.vector_search(qv, 10, None))}
            agree += len(approx & {int(i) + 1 for i in top})  # chunk ids start at 1, in insertion order
        n = len(questions)
        print(f"\n{n} queries over {n_chunks} chunks (2 cores)")
        print(f"{'':<50} {'p50 ms':>8} {'p99 ms':>8}")
        for name, xs in (("hybrid search incl. query embedding", full),
                         ("  the same with numpy's query embedding (before)", numpy_full),
                         ("hybrid retrieval (no embedding)", retrieval),
                         ("  vector part: HNSW top-50 + fetch", vec_only), ("  keyword part: BM25 top-50 + fetch", kw_only),
                         ("anchor: exact vector search, numpy", exact)):
            print(f"{name:<50} {pct(xs, 0.5):>8.2f} {pct(xs, 0.99):>8.2f}")
        print(f"HNSW recall@10 vs exact: {agree / (10 * n):.3f}; vector part vs exact: "
              f"{pct(vec_only, 0.5) / pct(exact, 0.5):.2f}x the time")
        import resource

        print(f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
              "(with the anchor's 150 MB matrix and the writer's copies)")
        await svc.catalog.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    a = ap.parse_args()
    asyncio.run(run(a.chunks, a.queries))
