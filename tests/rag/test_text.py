"""File reading (text, HTML, PDF, binary, legacy encodings) and search terms (English, Chinese, mixed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.rag.text import Unreadable, html_to_text, kind_of, read_file, terms


def make_pdf(path: Path, text: str) -> None:
    """A minimal one-page PDF with `text` in Helvetica, written by hand (offsets computed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))


def test_terms_english_chinese_and_mixed() -> None:
    assert terms("The Quick brown fox, and THE dog!") == ["quick", "brown", "fox", "dog"]
    zh = terms("上海是中国最大的城市")
    assert "上海" in zh and "中国" in zh and "城市" in zh and "的" not in zh
    mixed = terms("hearth 支持中文检索 and BM25")
    assert "hearth" in mixed and "bm25" in mixed and "中文" in mixed and "检索" in mixed


def test_read_files_of_each_kind(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("<html><head><title>x</title><style>p{}</style></head><body>"
                                     "<h1>Top</h1><p>First &amp; second.</p><script>var x</script>"
                                     "<h2>Sub</h2><p>More.</p></body></html>")
    text = read_file(tmp_path / "a.html")
    assert text.startswith("# Top") and "## Sub" in text and "First & second." in text and "var x" not in text
    assert kind_of("a.html") == "markdown"
    make_pdf(tmp_path / "p.pdf", "Hello PDF world")
    assert "Hello PDF world" in read_file(tmp_path / "p.pdf")
    (tmp_path / "gb.txt").write_bytes("北京是中国的首都。".encode("gb18030"))
    assert read_file(tmp_path / "gb.txt") == "北京是中国的首都。"
    (tmp_path / "u16.txt").write_bytes("hello".encode("utf-16"))
    assert read_file(tmp_path / "u16.txt") == "hello"
    assert html_to_text("<p>a</p><p>b</p>") == "a\n\nb"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("blob.txt", b"\x00\x01\x02" * 100, "binary file"),
        ("broken.pdf", b"%PDF-1.4 garbage", "PDF"),
        ("empty.pdf", b"", "PDF"),
    ],
)
def test_unreadable_files_give_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(Unreadable, match=reason):
        read_file(tmp_path / name)
