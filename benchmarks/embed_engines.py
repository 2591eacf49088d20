"""MiniLM's two engines side by side: numpy (today's) and llama.cpp over an F16 GGUF (the default now where
llama-cpp-python is installed): texts/s on BoolQ passages and questions, one query's latency, agreement of the
vectors (cosine), and knowledge-base ingest chunks/s and search p50 through the real RAG service.

    .venv/bin/python benchmarks/embed_engines.py [--passages 512] [--ingest 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _data import boolq
from hearth.config import RagConfig
from hearth.embed.bert_gguf import GgufBert
from hearth.embed.minilm import MiniLM
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog


def rate(model: Any, texts: list[str], repeats: int = 2) -> tuple[float, np.ndarray]:
    model.encode(texts[:16])
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = model.encode(texts)
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return len(texts) / best, out


def one_query_ms(model: Any, qs: list[str]) -> float:
    lat = []
    for q in qs:
        t0 = time.perf_counter()
        model.encode([q])
        lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat)


async def ingest(model: Any, docs: list[TextDocument], qs: list[str]) -> tuple[float, float, int]:
    async def embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
        return await asyncio.to_thread(model.encode, texts)  # type: ignore[no-any-return]

    with tempfile.TemporaryDirectory() as d:
        svc = RagService(RagConfig(embedding_model="minilm"), LocalCatalog(Path(d)), embed, model.count_tokens)
        t0 = time.perf_counter()
        report = await svc.ingest_documents("kb", docs)
        took = time.perf_counter() - t0
        lat = []
        for q in qs:
            t = time.perf_counter()
            await svc.search("kb", q, top_k=10)
            lat.append(time.perf_counter() - t)
        await svc.catalog.close()
    return report.chunks / took, statistics.median(lat) * 1000, report.chunks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=512)
    ap.add_argument("--ingest", type=int, default=1500, help="BoolQ passages ingested into a knowledge base")
    args = ap.parse_args()
    rows = boolq()
    passages = list(dict.fromkeys(r["passage"] for r in rows))
    questions = [r["question"] for r in rows][:512]
    with tempfile.TemporaryDirectory() as cache:
        engines = {"numpy (today)": MiniLM(), "llama.cpp F16": GgufBert(cache_dir=Path(cache))}
        print(f"{'engine':<16}{'passages/s':>12}{'questions/s':>13}{'1 query ms':>12}{'ingest chunks/s':>17}"
              f"{'search p50 ms':>15}")
        vecs = {}
        for name, m in engines.items():
            p_rate, vecs[name] = rate(m, passages[: args.passages])
            q_rate, _ = rate(m, questions)
            q_ms = one_query_ms(m, questions[:100])
            chunks_s, search_ms, n = asyncio.run(ingest(m, [TextDocument(f"p{i}", p) for i, p in
                                                            enumerate(passages[: args.ingest])], questions[:200]))
            print(f"{name:<16}{p_rate:>12.1f}{q_rate:>13.1f}{q_ms:>12.2f}{chunks_s:>17.1f}{search_ms:>15.1f}")
        a, b = vecs.values()
        cos = (a * b).sum(1)
        print(f"\n{args.passages} passages, {len(questions)} questions, {n} chunks ingested; "
              f"cosine numpy vs llama.cpp: mean {cos.mean():.6f}, min {cos.min():.6f}")


if __name__ == "__main__":
    main()
