"""Intent tracking: accuracy, macro-F1 and latency of hearth's rules, next to nearest-prototype search over the
embedding models (the approach the issue suggests comparing with), on the labelled multi-turn set
`benchmarks/data/intents.jsonl` (374 turns, half Chinese, half English; written by hand for this purpose).

`benchmarks/data/intents_holdout.jsonl` (160 turns) was written afterwards by someone who saw neither the
rules nor the first set, and the rules were not changed after it was first scored: its figure is the honest
one (the rules were written while reading the first set's errors).

The prototype classifiers need labelled examples: the set is split by id parity, the even half serves as
prototypes and every classifier is scored on the odd half (the rules are also scored on the whole set).
Prototype search embeds the latest turn with the previous user turn before it (so that "continue" after a
task can be told from a cold "continue this story"), then takes the label of the nearest prototype.

    .venv/bin/python benchmarks/intent.py [--no-embeddings]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hearth.convo.intent import IntentTracker
from hearth.core.types import Message

DATA = Path(__file__).parent / "data" / "intents.jsonl"
# Written afterwards by someone who saw neither the rules nor the first set: the rules were never tuned on it.
HOLDOUT = Path(__file__).parent / "data" / "intents_holdout.jsonl"


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def messages(row: dict) -> list[Message]:
    return [Message(m["role"], m["content"]) for m in row["messages"]]


def scores(gold: list[str], pred: list[str]) -> tuple[float, float]:
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
    f1s = []
    for label in sorted(set(gold)):
        tp = sum(g == p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(p == label and g != label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return acc, sum(f1s) / len(f1s)


def rules(rows: list[dict]) -> tuple[list[str], list[float]]:
    t = IntentTracker()
    preds, times = [], []
    for r in rows:
        msgs = messages(r)
        t0 = time.perf_counter()
        intent = t.track(msgs)
        times.append(time.perf_counter() - t0)
        preds.append(intent.label)
    return preds, times


def _context_text(row: dict) -> str:
    users = [m["content"] for m in row["messages"] if m["role"] == "user"]
    prev = [m["content"] for m in row["messages"][:-1] if m["role"] in ("user", "assistant")]
    return (f"{prev[-1][:200]} || " if prev else "") + users[-1]


async def prototypes(train: list[dict], test: list[dict], model: str) -> tuple[list[str], list[float]]:
    from hearth.config import EmbeddingModel
    from hearth.embed.local import LocalEmbedder

    path = "builtin:multilingual-e5-small" if model == "e5" else "builtin:all-minilm-l6-v2"
    emb = LocalEmbedder(model, EmbeddingModel(kind="embedding", path=path))
    await emb.start()
    try:
        protos = (await emb.embed([_context_text(r) for r in train], input_type="query")).vectors
        labels = [r["label"] for r in train]
        await emb.embed(["warm up"], input_type="query")
        preds, times = [], []
        for r in test:
            t0 = time.perf_counter()
            v = (await emb.embed([_context_text(r)], input_type="query")).vectors[0]
            best = int((protos @ v).argmax())
            times.append(time.perf_counter() - t0)
            preds.append(labels[best])
        return preds, times
    finally:
        await emb.close()


def line(name: str, rows: list[dict], preds: list[str], times: list[float]) -> None:
    gold = [r["label"] for r in rows]
    acc, f1 = scores(gold, preds)
    parts = []
    for lang in ("en", "zh"):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        a, f = scores([gold[i] for i in idx], [preds[i] for i in idx])
        parts.append(f"{lang} {a:.3f}/{f:.3f}")
    ts = sorted(times)
    p50, p99 = statistics.median(ts) * 1000, ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000
    print(f"{name:<44} n={len(rows):>3}  accuracy {acc:.3f}  macro-F1 {f1:.3f}  ({', '.join(parts)})  "
          f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")


def confusion(rows: list[dict], preds: list[str], limit: int = 40) -> None:
    wrong = Counter((r["label"], p) for r, p in zip(rows, preds, strict=True) if r["label"] != p)
    print("most frequent confusions (gold -> predicted):")
    for (g, p), n in wrong.most_common(limit):
        print(f"  {n:>3}  {g} -> {p}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-embeddings", action="store_true")
    ap.add_argument("--errors", action="store_true", help="print every wrong row")
    args = ap.parse_args()
    rows = load()
    train = [r for i, r in enumerate(rows) if i % 2 == 0]
    test = [r for i, r in enumerate(rows) if i % 2 == 1]
    print(f"{len(rows)} labelled turns ({sum(r['lang'] == 'zh' for r in rows)} Chinese); primary label\n")
    preds, times = rules(rows)
    line("rules (hearth), all", rows, preds, times)
    line("rules (hearth), odd half", test, preds[1::2], times[1::2])
    held = load(HOLDOUT)
    hp, ht = rules(held)
    line("rules (hearth), held-out", held, hp, ht)
    if not args.no_embeddings:
        for model in ("minilm", "e5"):
            try:
                p, t = asyncio.run(prototypes(train, test, model))
            except Exception as e:  # e5 needs AVX2 and the semantic extra
                print(f"prototypes over {model}: not run ({e})")
                continue
            line(f"prototypes over {model}, odd half", test, p, t)
            p, t = asyncio.run(prototypes(rows, held, model))
            line(f"prototypes over {model} (all 374), held-out", held, p, t)
    print()
    confusion(held, hp)
    if args.errors:
        for r, p in zip(held, hp, strict=True):
            if r["label"] != p:
                print(f"{r['id']}: gold {r['label']} got {p}: {r['messages'][-1]['content'][:100]!r}")


if __name__ == "__main__":
    main()
