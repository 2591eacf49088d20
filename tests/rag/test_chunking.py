"""Adaptive chunking, with the embedding model's real tokenizer."""

from __future__ import annotations

import pytest

from hearth.embed.local import shared_model
from hearth.rag.chunking import Piece, chunk
from hearth.rag.text import kind_of


@pytest.fixture(scope="module")
def count():  # type: ignore[no-untyped-def]
    return shared_model().count_tokens


def _lines_hold(text: str, p: Piece) -> None:
    """A chunk is a contiguous span of the document and its line range is exact."""
    lines = text.splitlines()
    span = "\n".join(lines[p.line_start - 1 : p.line_end])
    assert p.text in span
    assert lines[p.line_start - 1].strip() and p.text.startswith(lines[p.line_start - 1].strip()[:10])


def test_markdown_splits_at_headings_with_title_paths(count) -> None:  # type: ignore[no-untyped-def]
    doc = "# Guide\n\nIntro.\n\n## Install\n\nRun pip.\n\n```sh\n# a comment, not a heading\npip install x\n```\n\n" \
          "### Linux\n\nUse apt.\n\n## Use\n\nCall it.\n"
    pieces = chunk(doc, kind_of("a.md"), count, 200, 30)
    assert [p.title for p in pieces] == ["Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Use"]
    assert "# a comment, not a heading" in pieces[1].text  # fenced code stays with its section
    for p in pieces:
        _lines_hold(doc, p)


def test_code_splits_at_functions_and_classes_with_decorators(count) -> None:  # type: ignore[no-untyped-def]
    doc = "import os\n\n\n@cache\ndef alpha(x):\n    return x\n\n\nclass Beta:\n    def m(self):\n        pass\n\n\n" \
          "async def gamma():\n    await x\n"
    pieces = chunk(doc, kind_of("m.py"), count, 200, 30)
    assert [p.title for p in pieces] == ["", "alpha", "Beta", "gamma"]
    assert pieces[1].text.startswith("@cache") and (pieces[1].line_start, pieces[1].line_end) == (4, 6)
    js = "function one() {\n  return 1;\n}\n\nexport const two = () => {\n  return 2;\n};\n"
    assert [p.title for p in chunk(js, kind_of("a.js"), count)] == ["one", "two"]


def test_prose_cuts_at_sentences_including_chinese_punctuation_with_overlap(count) -> None:  # type: ignore[no-untyped-def]
    zh = "北京是中国的首都。上海是最大的城市！深圳在南方吗？广州也在南方；杭州有西湖。" * 8
    pieces = chunk(zh, "prose", count, 40, 10)
    assert len(pieces) > 3
    for p in pieces:
        assert p.text[-1] in "。！？；" and count([p.text])[0] <= 40 + 2  # whole sentences, within the budget
    assert pieces[1].text[:6] in pieces[0].text  # the next chunk starts with the end of the previous one
    en = " ".join(f"Sentence number {i} says something." for i in range(60))
    pieces = chunk(en, "prose", count, 50, 12)
    assert all(p.text.endswith(".") for p in pieces)
    assert all(count([p.text])[0] <= 52 for p in pieces)


def test_oversized_units_are_cut_and_rst_headings_are_found(count) -> None:  # type: ignore[no-untyped-def]
    blob = "字" * 900  # no punctuation at all
    pieces = chunk(blob, "prose", count, 100, 0)
    assert "".join(p.text for p in pieces) == blob and all(count([p.text])[0] <= 102 for p in pieces)
    rst = "Title\n=====\n\nHello.\n\nSub\n---\n\nWorld.\n\nOther\n=====\n\nEnd.\n"
    assert [p.title for p in chunk(rst, "rst", count)] == ["Title", "Title > Sub", "Other"]
    assert chunk("   \n\n ", "prose", count) == []
