"""Metadata filters as a tenant may send them: a list of accepted values is matched by set lookup, so its length
does not multiply with the number of documents."""

from __future__ import annotations

import time

from hearth.rag.types import matches, prepared


def test_long_value_lists_cost_one_lookup_per_document() -> None:
    where = prepared({"lang": [f"x{i}" for i in range(100_000)] + ["en"], "source_prefix": "docs/"})
    t0 = time.perf_counter()
    hits = sum(matches(f"docs/{i}.md", {"lang": "en" if i % 2 else "de"}, where) for i in range(5_000))
    assert hits == 2_500 and time.perf_counter() - t0 < 0.5
    assert matches("a", {"tags": {"k": 1}}, prepared({"tags": [{"k": 1}]}))  # unhashable values still compare
    assert not matches("a", {"n": 2}, prepared({"n": [1, 3]}))
