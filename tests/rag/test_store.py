"""The embedded store: atomic replace, other processes' writes seen incrementally, the saved vector
index, and a killed ingest that leaves every document whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hearth.config import RagConfig
from hearth.embed.local import shared_model
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog, LocalStore


def service(root: Path, **cfg: object) -> RagService:
    model = shared_model()

    async def embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
        return model.encode(texts)  # type: ignore[no-any-return]

    return RagService(RagConfig(**cfg), LocalCatalog(root), embed, model.count_tokens)  # type: ignore[arg-type]


DOCS = [
    TextDocument("fruit.txt", "Apples are red or green. Bananas are yellow and grow in bunches.", {"topic": "food"}),
    TextDocument("space.txt", "The Moon orbits the Earth. Mars is called the red planet.", {"topic": "space"}),
    TextDocument("code.py", "def frobnicate(x):\n    return x * 42\n", {"topic": "code"}),
    TextDocument("城市.txt", "北京是中国的首都。上海是中国最大的城市。", {"topic": "geo"}),
]


def test_ingest_search_update_and_filters(tmp_path: Path) -> None:
    async def go() -> None:
        svc = service(tmp_path)
        rep = await svc.ingest_documents("kb1", DOCS)
        assert sorted(rep.added) == sorted(d.source for d in DOCS) and rep.chunks >= 4
        hits = await svc.search("kb1", "which planet is red?")
        assert hits[0].source == "space.txt" and hits[0].score == max(h.score for h in hits)
        assert (await svc.search("kb1", "frobnicate", mode="keyword"))[0].source == "code.py"
        assert (await svc.search("kb1", "中国最大的城市是哪里"))[0].source == "城市.txt"
        only = await svc.search("kb1", "red", where={"topic": "food"})
        assert {h.source for h in only} == {"fruit.txt"}
        assert await svc.search("kb1", "red", where={"source_prefix": "nothing/"}) == []
        rrf = await svc.search("kb1", "which planet is red?", fusion="rrf")
        assert rrf[0].source == "space.txt"
        again = await svc.ingest_documents("kb1", DOCS)
        assert len(again.unchanged) == 4 and again.chunks == 0
        changed = [TextDocument("space.txt", "Jupiter is the largest planet.", {"topic": "space"})]
        rep = await svc.ingest_documents("kb1", changed, replace_all=True)
        assert rep.updated == ["space.txt"] and sorted(rep.removed) == ["code.py", "fruit.txt", "城市.txt"]
        hits = await svc.search("kb1", "which planet is red?")
        assert [h.source for h in hits] == ["space.txt"] and "Jupiter" in hits[0].text
        with pytest.raises(Exception, match="not found"):
            await svc.search("missing-kb", "x")
        with pytest.raises(Exception, match="empty"):
            await svc.search("kb1", "   ")
        await svc.catalog.close()

    asyncio.run(go())


def test_a_second_process_sees_writes_incrementally_and_restarts_from_the_saved_index(tmp_path: Path) -> None:
    async def go() -> None:
        writer, reader = service(tmp_path), service(tmp_path)
        await writer.ingest_documents("kb", DOCS[:2])
        assert (await reader.search("kb", "bananas"))[0].source == "fruit.txt"
        await writer.ingest_documents("kb", DOCS[2:])  # the reader applies just these
        assert (await reader.search("kb", "frobnicate"))[0].source == "code.py"
        store = await reader.catalog.open("kb")
        assert isinstance(store, LocalStore) and len(store._bm25) == sum(d.chunks for d in (await store.documents()).values())
        await (await writer.catalog.open("kb")).remove(["fruit.txt"])
        assert all(h.source != "fruit.txt" for h in await reader.search("kb", "bananas yellow"))
        await writer.catalog.close()
        await reader.catalog.close()  # saves the graph
        assert (tmp_path / "kb" / "vectors.json").exists()
        fresh = service(tmp_path)
        assert (await fresh.search("kb", "frobnicate"))[0].source == "code.py"
        assert all(h.source != "fruit.txt" for h in await fresh.search("kb", "bananas yellow"))
        await fresh.catalog.close()

    asyncio.run(go())


def test_a_graph_file_this_hnswlib_cannot_read_is_rebuilt(tmp_path: Path) -> None:
    """hnswlib 0.8 and chroma-hnswlib write different graph files: a knowledge base saved by the other one (or a
    damaged file) rebuilds its graph from the vectors in SQLite, instead of failing."""

    async def go() -> None:
        svc = service(tmp_path)
        await svc.ingest_documents("kb", DOCS)
        await svc.catalog.close()
        meta = json.loads((tmp_path / "kb" / "vectors.json").read_text())
        (tmp_path / "kb" / meta["file"]).write_bytes(b"a graph from another hnswlib build" * 100)
        fresh = service(tmp_path)
        assert (await fresh.search("kb", "frobnicate", mode="vector"))[0].source == "code.py"
        await fresh.catalog.close()

    asyncio.run(go())


def test_killed_ingest_leaves_each_document_whole(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i:02}.md").write_text(f"# Doc {i}\n\n" + f"Paragraph about topic {i}. " * 120)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"rag:\n  path: {tmp_path / 'rag'}\n  chunk_tokens: 64\n")
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "rag", "ingest", str(docs), "--kb", "big", "--config",
                             str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "rag" / "big" / "kb.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once a few documents are in, mid-way through another
        if db.exists():
            with sqlite3.connect(db) as c:
                try:
                    if c.execute("SELECT COUNT(*) FROM documents").fetchone()[0] >= 3:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        docs_rows = c.execute("SELECT source, chunks FROM documents").fetchall()
        assert 3 <= len(docs_rows) < 30
        for source, n in docs_rows:
            assert c.execute("SELECT COUNT(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0] == n
        assert c.execute("SELECT COUNT(*) FROM chunks WHERE source NOT IN (SELECT source FROM documents)"
                         ).fetchone()[0] == 0
    done = subprocess.run([sys.executable, "-m", "hearth", "rag", "ingest", str(docs), "--kb", "big", "--config",
                           str(cfg)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(docs_rows)} unchanged" in done.stdout and f"{30 - len(docs_rows)} added" in done.stdout


def test_vector_width_is_fixed_by_the_first_write(tmp_path: Path) -> None:
    """A knowledge base built with one embedding model refuses vectors of another width, with a reason."""
    from hearth.core.errors import BadRequest
    from hearth.rag.types import DocInfo, NewChunk

    async def go() -> None:
        store = await LocalCatalog(tmp_path).open("wide", create=True)
        chunk = [NewChunk("some text", "", 1, 1, ["some", "text"])]
        await store.replace(DocInfo("a.txt", "h1"), chunk, np.eye(1, 1536, dtype=np.float32))
        other = await LocalCatalog(tmp_path).open("wide")  # another process sees the width too
        assert [h.source for h in await other.vector_search(np.eye(1, 1536, dtype=np.float32)[0], 5, None)] == ["a.txt"]
        with pytest.raises(BadRequest, match="1536-dimensional"):
            await store.replace(DocInfo("b.txt", "h2"), chunk, np.eye(1, 384, dtype=np.float32))
        with pytest.raises(BadRequest, match="1536-dimensional"):
            await other.vector_search(np.eye(1, 384, dtype=np.float32)[0], 5, None)
        assert list(await store.documents()) == ["a.txt"]

    asyncio.run(go())


def test_an_edited_section_is_the_only_one_embedded_again(tmp_path: Path) -> None:
    async def go() -> None:
        svc = service(tmp_path)
        sections = [f"## Part {i}\n\n" + f"Facts about subject {i}. " * 30 for i in range(4)]
        doc = "# Manual\n\n" + "\n\n".join(sections)
        first = await svc.ingest_documents("manual", [TextDocument("manual.md", doc)])
        assert first.embedded == first.chunks >= 4
        edited = doc.replace("Facts about subject 2.", "Changed facts about subject 2.", 1)
        second = await svc.ingest_documents("manual", [TextDocument("manual.md", edited)])
        assert second.updated == ["manual.md"] and second.embedded == 1 < second.chunks
        hit = (await svc.search("manual", "changed facts about subject 2", top_k=1))[0]
        assert hit.title == "Manual > Part 2" and "Changed facts" in hit.text
        fresh = (await svc.search("manual", "facts about subject 3", top_k=1, mode="vector"))[0]
        assert fresh.title == "Manual > Part 3" and (fresh.vector_score or 0) > 0.5  # reused vectors still match
        await svc.catalog.close()

    asyncio.run(go())
