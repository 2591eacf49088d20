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


def test_compaction_after_many_removals_matches_a_fresh_index() -> None:
    docs = {i: [f"t{i % 13}", f"u{i % 7}", "shared"] + [f"v{i % 5}"] * (i % 3) for i in range(3000)}
    idx = BM25Index()
    for i, d in docs.items():
        idx.add(i, d)
    for i in range(0, 3000, 3):
        idx.remove(i)
    for i in range(1, 3000, 3):
        idx.remove(i)  # two thirds gone: the arrays were compacted along the way
    assert len(idx._ids) < 3000
    fresh = BM25Index()
    for i, d in docs.items():
        if i % 3 == 2:
            fresh.add(i, d)
    for q in (["t5", "u3"], ["shared", "v2"], ["v4"]):
        got, want = idx.search(q, 30), fresh.search(q, 30)
        assert [c for c, _ in got] == [c for c, _ in want]
        assert all(abs(a[1] - b[1]) < 1e-4 for a, b in zip(got, want, strict=True))
    idx.add(5, ["brand", "new"])
    assert idx.search(["brand"], 1)[0][0] == 5
