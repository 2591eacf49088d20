"""Adaptive fusion's weights and the script test, on hand-made hit lists (no model, no store)."""

from __future__ import annotations

import pytest

from hearth.rag.service import _adaptive_weight, _mostly_foreign, fuse
from hearth.rag.types import Hit


def hits(scores: list[float], attr: str, prefix: str) -> list[Hit]:
    out = []
    for i, s in enumerate(scores):
        h = Hit(f"{prefix}{i}", "t", f"{prefix}{i}", "", 1, 1, {})
        setattr(h, attr, s)
        out.append(h)
    return out


def test_a_retriever_that_stands_out_gets_the_weight() -> None:
    flat_vec = hits([0.50, 0.50, 0.50, 0.50, 0.49], "vector_score", "v")  # the best is where the rest are
    sharp_kw = hits([12.0, 1.0, 1.0, 1.0, 1.0], "keyword_score", "k")  # the best stands far above
    assert _adaptive_weight(flat_vec, sharp_kw, 0.7) < 0.5
    assert _adaptive_weight(hits([0.9, 0.3, 0.3, 0.2], "vector_score", "v"), hits([1, 1, 1, 1], "keyword_score", "k"),
                            0.7) == pytest.approx(1.0)
    assert fuse(flat_vec, sharp_kw, "adaptive", 0.7)[0].id == "k0"


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_extreme_weights_never_divide_by_zero(prior: float) -> None:
    vec = hits([0.5, 0.5, 0.5], "vector_score", "v")
    kw = hits([3.0, 1.0, 0.5], "keyword_score", "k")
    assert _adaptive_weight(vec, [], prior) == prior or _adaptive_weight(vec, [], prior) >= 0
    assert 0.0 <= _adaptive_weight(vec, kw, prior) <= 1.0
    assert fuse(vec, [], "adaptive", prior)


def test_the_script_test_needs_more_than_one_foreign_letter() -> None:
    assert _mostly_foreign("无线网络断开怎么办") and _mostly_foreign("как настроить роутер")
    assert not _mostly_foreign("the α parameter of the model") and not _mostly_foreign("café au lait")
