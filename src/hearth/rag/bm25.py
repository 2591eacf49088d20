"""An incremental BM25 index: documents come and go without a rebuild.

Postings are compact typed arrays (row numbers and term frequencies, 8 bytes a posting; Python dicts
took ~40), appended to as chunks arrive. A removed chunk's row is only marked dead: its postings stay
until dead rows pass a third of all rows, when every term's arrays are compacted in one vectorised pass.
A query is a few numpy operations per query term, never a Python loop over matching chunks.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any

import numpy as np


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._row: dict[int, int] = {}  # chunk id -> row
        self._ids = array("q")  # row -> chunk id
        self._len = array("f")  # row -> document length in terms (0 for dead rows)
        self._alive = array("b")  # row -> 1 live, 0 removed
        self._total = 0
        self._rows: dict[str, array[int]] = {}  # term -> rows holding it
        self._tf: dict[str, array[float]] = {}  # term -> its frequency in those rows

    def __len__(self) -> int:
        return len(self._row)

    def add(self, chunk_id: int, terms: list[str]) -> None:
        if chunk_id in self._row:
            self.remove(chunk_id)
        row = len(self._ids)
        self._ids.append(chunk_id)
        self._len.append(float(len(terms)))
        self._alive.append(1)
        self._row[chunk_id] = row
        self._total += len(terms)
        for t, tf in Counter(terms).items():
            rows = self._rows.get(t)
            if rows is None:
                rows = self._rows[t] = array("i")
                self._tf[t] = array("f")
            rows.append(row)
            self._tf[t].append(float(tf))

    def remove(self, chunk_id: int) -> None:
        row = self._row.pop(chunk_id, None)
        if row is None:
            return
        self._total -= int(self._len[row])
        self._len[row] = 0.0
        self._alive[row] = 0
        dead = len(self._ids) - len(self._row)
        if dead > 1000 and dead * 3 > len(self._ids):
            self._compact()

    def search(self, query_terms: list[str], k: int, allowed: Any = None) -> list[tuple[int, float]]:
        """Best `k` (chunk id, score); `allowed` (a float row mask from `mask()`) filters."""
        n = len(self._row)
        if not n or k <= 0:
            return []
        alive = np.frombuffer(self._alive, np.int8)
        lengths = np.frombuffer(self._len, np.float32)
        avgdl = max(self._total / n, 1e-9)
        scores: np.ndarray | None = None
        for t in set(query_terms):
            if t not in self._rows:
                continue
            rows = np.frombuffer(self._rows[t], np.int32)
            tf = np.frombuffer(self._tf[t], np.float32)
            df = int(np.count_nonzero(alive[rows]))
            if df == 0:
                continue
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            part = (idf * (self.k1 + 1.0)) * tf / (tf + self.k1 * (1.0 - self.b + self.b * lengths[rows] / avgdl))
            if scores is None:
                scores = np.zeros(len(self._ids), np.float32)
            scores[rows] += part  # a row holds a term once, so fancy-index += adds each posting
        if scores is None:
            return []
        scores *= alive
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

    def _compact(self) -> None:
        alive = np.frombuffer(self._alive, np.int8).astype(bool)
        new_row = np.cumsum(alive) - 1  # old row -> new row, for the live ones
        for t in list(self._rows):
            rows = np.frombuffer(self._rows[t], np.int32)
            keep = alive[rows]
            if not keep.any():
                del self._rows[t], self._tf[t]
                continue
            self._rows[t] = array("i", new_row[rows[keep]].astype(np.int32).tobytes())
            self._tf[t] = array("f", np.frombuffer(self._tf[t], np.float32)[keep].tobytes())
        ids = np.frombuffer(self._ids, np.int64)[alive]
        self._ids = array("q", ids.tobytes())
        self._len = array("f", np.frombuffer(self._len, np.float32)[alive].tobytes())
        self._alive = array("b", b"\x01" * len(ids))
        self._row = {int(cid): r for r, cid in enumerate(ids)}
