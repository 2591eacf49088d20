"""Files as weapons: a PDF that pypdf refuses (a page tree that loops, a compression bomb) is skipped with its
reason, a PDF of 20,000 pages is skipped before it is read, and what an upload ingests counts toward the key's
token rate. (Before: 500s; 74 s for the 20,000 pages; 267 s of CPU for 2 MB of text, with no limit per key.)"""

from __future__ import annotations

import io
import time
import uuid
import zlib

import pytest

from tests.security.conftest import ADMIN, Gateway, call, under_attack

pytestmark = pytest.mark.model


def upload(g: Gateway, key: str, kb: str, files: dict[str, bytes]) -> tuple[int, object, float]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in files.items()
    ) + f"--{boundary}--\r\n".encode()
    t0 = time.perf_counter()
    r = call(g.url, "POST", f"/v1/rag/{kb}/files", body, key,
             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return r.status, r.body, time.perf_counter() - t0


def pdf(objects: list[bytes]) -> bytes:
    """A PDF with these objects (1-based, in order), a cross-reference table and a trailer rooted at object 1."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def looping_page_tree() -> bytes:
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"])


def compression_bomb() -> bytes:
    text = b"BT /F1 1 Tf (" + b"A" * (400 * 1024 * 1024) + b") Tj ET"  # 400 MB once inflated
    packed = zlib.compress(text, 9)
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 4 0 R "
                b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>",
                b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream"])


def many_pages(n: int) -> bytes:
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(n))
    pages = [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * n
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n,
                *pages])


def test_hostile_pdfs_are_skipped_with_a_reason(gw: Gateway) -> None:
    files = {"loop.pdf": looping_page_tree(), "bomb.pdf": compression_bomb(), "huge.pdf": many_pages(20_000)}
    key = gw.key("uploader", scopes=["rag:read", "rag:write"])

    def attack() -> tuple[int, object, float]:
        return upload(gw, key, "uploads", files)

    seen = under_attack(gw, attack)
    status, body, took = seen.results[0]
    assert status == 200, body
    skipped = {s["source"]: s["reason"] for s in body["skipped"]}  # type: ignore[index]
    assert set(skipped) == set(files), body
    assert "20000 pages" in skipped["huge.pdf"] and took < 20, (skipped, took)


def test_uploads_count_toward_the_keys_token_rate(gw: Gateway) -> None:
    key = gw.key("uploader-tpm", scopes=["rag:read", "rag:write"], tpm=50_000)
    text = ("All work and no play makes Jack a dull boy. " * 45_000).encode()  # 2 MB
    status, body, took = upload(gw, key, "uploads", {"dull.txt": text})
    assert status == 429 and took < 2, (status, body)
    # the operator's admin key is not rate limited, and a small file goes in
    status, body, _ = upload(gw, ADMIN, "uploads", {"small.txt": b"Hearth keeps tenants apart."})
    assert status == 200 and body["added"] == ["small.txt"], body  # type: ignore[index]
