"""An incremental BM25 index: documents come and go without a rebuild.

Postings are dicts (cheap to change); a term's postings are turned into numpy arrays the first time
a query needs them after a change, so a query is a few vectorised operations per term, not a Python
loop over every matching chunk. Rows of removed chunks are reused by later additions.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from typing import Any

import numpy as np


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._row: dict[int, int] = {}  # chunk id -> row
        self._ids: list[int] = []  # row -> chunk id (-1: free)
        self._free: list[int] = []
        self._len = np.zeros(0, np.float32)
        self._total = 0
        # chunk id -> its distinct terms (interned, so shared with the postings' keys), to remove it later
        self._terms: dict[int, tuple[str, ...]] = {}
        self._postings: dict[str, dict[int, int]] = {}  # term -> row -> tf
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._row)

    def add(self, chunk_id: int, terms: list[str]) -> None:
        if chunk_id in self._row:
            self.remove(chunk_id)
        row = self._free.pop() if self._free else len(self._ids)
        if row == len(self._ids):
            self._ids.append(chunk_id)
            if row >= len(self._len):
                self._len = np.concatenate([self._len, np.zeros(max(1024, len(self._len)), np.float32)])
        else:
            self._ids[row] = chunk_id
        self._row[chunk_id] = row
        counts = Counter(map(sys.intern, terms))
        self._terms[chunk_id] = tuple(counts)
        self._len[row] = len(terms)
        self._total += len(terms)
        for t, tf in counts.items():
            self._postings.setdefault(t, {})[row] = tf
            self._arrays.pop(t, None)

    def remove(self, chunk_id: int) -> None:
        row = self._row.pop(chunk_id, None)
        if row is None:
            return
        counts = self._terms.pop(chunk_id)
        for t in counts:
            p = self._postings.get(t)
            if p is not None:
                p.pop(row, None)
                if not p:
                    del self._postings[t]
            self._arrays.pop(t, None)
        self._total -= int(self._len[row])
        self._len[row] = 0
        self._ids[row] = -1
        self._free.append(row)

    def search(self, query_terms: list[str], k: int, allowed: Any = None) -> list[tuple[int, float]]:
        """Best `k` (chunk id, score); `allowed` (a boolean row mask from `mask()`) filters."""
        n = len(self._row)
        if not n or k <= 0:
            return []
        avgdl = max(self._total / n, 1e-9)
        scores: np.ndarray | None = None
        for t in set(query_terms):
            arr = self._array(t)
            if arr is None:
                continue
            rows, tf = arr
            idf = math.log(1.0 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = tf + self.k1 * (1.0 - self.b + self.b * self._len[rows] / avgdl)
            part = (idf * (self.k1 + 1.0)) * tf / norm
            if scores is None:
                scores = np.zeros(len(self._ids), np.float32)
            scores[rows] += part
        if scores is None:
            return []
        if allowed is not None:
            scores[: len(allowed)] *= allowed[: len(scores)]
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        return [(self._ids[r], float(scores[r])) for r in hits]

    def mask(self, chunk_ids: set[int]) -> np.ndarray:
        m = np.zeros(len(self._ids), np.float32)
        for cid in chunk_ids:
            row = self._row.get(cid)
            if row is not None:
                m[row] = 1.0
        return m

    def _array(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        arr = self._arrays.get(term)
        if arr is None:
            p = self._postings.get(term)
            if not p:
                return None
            arr = (np.fromiter(p.keys(), np.int64, len(p)), np.fromiter(p.values(), np.float32, len(p)))
            self._arrays[term] = arr
        return arr
