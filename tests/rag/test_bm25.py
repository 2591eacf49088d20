from __future__ import annotations

from hearth.rag.bm25 import BM25Index


def test_ranking_removal_and_reuse() -> None:
    idx = BM25Index()
    idx.add(1, ["apple", "banana", "apple"])
    idx.add(2, ["banana", "cherry"])
    idx.add(3, ["cherry", "durian", "elderberry", "fig"])
    hits = idx.search(["apple", "banana"], 10)
    assert [h[0] for h in hits] == [1, 2] and hits[0][1] > hits[1][1] > 0
    assert idx.search(["zucchini"], 5) == []
    idx.remove(1)
    assert [h[0] for h in idx.search(["apple", "banana"], 10)] == [2]
    idx.add(7, ["apple"])  # reuses the freed row
    assert [h[0] for h in idx.search(["apple"], 10)] == [7] and len(idx) == 3
    assert [h[0] for h in idx.search(["cherry"], 10, idx.mask({3}))] == [3]
    idx.add(7, ["grape"])  # re-adding replaces
    assert idx.search(["apple"], 10) == [] and idx.search(["grape"], 1)[0][0] == 7


def test_top_k_is_exact_on_many_documents() -> None:
    idx = BM25Index()
    for i in range(5000):
        idx.add(i, ["common"] * (1 + i % 7) + [f"w{i % 50}"])
    hits = idx.search(["common", "w3"], 20)
    assert len(hits) == 20 and all(h[1] >= hits[-1][1] for h in hits)
    assert all(h[0] % 50 == 3 for h in hits[:5])
