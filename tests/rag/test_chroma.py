"""Knowledge bases on a real Chroma server (`chroma run`, started by the fixture): two stateless
hearth replicas share it, and a half-written document version never shows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hearth.config import RagConfig
from hearth.embed.local import shared_model
from hearth.rag.chroma import ChromaCatalog
from hearth.rag.service import RagService, TextDocument
from hearth.rag.types import NewChunk
from tests.conftest import Server, start_hearth
from tests.support.httpcall import call

DOCS = {"documents": [
    {"source": "ops/backup.md", "text": "# Backups\n\nDatabases are backed up every night at 02:00 UTC.",
     "metadata": {"team": "ops"}},
    {"source": "ops/deploy.md", "text": "# Deploys\n\nProduction deploys happen on Thursdays after review.",
     "metadata": {"team": "ops"}},
    {"source": "people/经理.txt", "text": "张经理负责北京办公室。", "metadata": {"team": "people"}},
]}


@pytest.fixture(scope="module")
def replicas(chroma: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    tmp = tmp_path_factory.mktemp("chroma-replicas")
    config = f"""
models:
  all-minilm: {{kind: embedding}}
rag:
  store: chroma
  chroma_url: {chroma}
"""
    servers = [start_hearth(config, tmp, f"replica{i}") for i in range(2)]
    yield servers
    for s in servers:
        s.stop()


def test_replicas_share_knowledge_bases_on_chroma(replicas: list[Server]) -> None:
    a, b = replicas
    status, report = call(a.url + "/v1/rag/team-docs/documents", DOCS)
    assert status == 200 and len(report["added"]) == 3
    status, body = call(b.url + "/v1/rag/team-docs/search", {"query": "when are backups taken?", "top_k": 2})
    assert status == 200 and body["results"][0]["source"] == "ops/backup.md"
    _, body = call(b.url + "/v1/rag/team-docs/search", {"query": "北京办公室谁负责", "top_k": 1, "mode": "keyword"})
    assert body["results"][0]["source"] == "people/经理.txt"
    noise = {"documents": [{"source": f"ops/deploy-{i}.md", "text": f"Deploy note {i}: deploys happen on Thursdays.",
                            "metadata": {"team": "ops"}} for i in range(40)]}
    call(a.url + "/v1/rag/team-docs/documents", noise)
    time.sleep(1.1)  # replicas re-read the document registry at most once a second
    for mode in ("hybrid", "vector", "keyword"):  # a selective filter still finds its one document
        _, body = call(b.url + "/v1/rag/team-docs/search", {"query": "Thursday deploys office", "mode": mode,
                                                            "filter": {"team": "people"}})
        assert [r["source"] for r in body["results"]][:1] == (["people/经理.txt"] if mode != "keyword" else [])
    _, body = call(b.url + "/v1/rag/team-docs/search", {"query": "办公室", "filter": {"source_prefix": "people/"}})
    assert [r["source"] for r in body["results"]] == ["people/经理.txt"]
    call(a.url + "/v1/rag/team-docs/documents", {"documents": DOCS["documents"], "replace_all": True})
    _, report = call(b.url + "/v1/rag/team-docs/documents", DOCS)
    assert report["unchanged"] == 3  # the document registry lives in Chroma, not in a replica
    changed = {"documents": [{"source": "ops/backup.md", "text": "Backups now run every hour.",
                              "metadata": {"team": "ops"}}]}
    _, report = call(b.url + "/v1/rag/team-docs/documents", changed)
    assert report["updated"] == ["ops/backup.md"]
    _, body = call(a.url + "/v1/rag/team-docs", None)
    assert body["store"] == "chroma" and body["documents"] == 3 and body["chunks"] == 3
    _, body = call(a.url + "/v1/rag/team-docs/search", {"query": "how often do backups run?", "top_k": 1})
    assert "every hour" in body["results"][0]["text"]
    time.sleep(1.1)  # replicas re-read the document registry at most once a second
    _, body = call(b.url + "/v1/rag/team-docs/search", {"query": "backups hour nightly", "mode": "keyword"})
    assert [r["text"] for r in body["results"] if r["source"] == "ops/backup.md"] == ["Backups now run every hour."]
    status, _ = call(a.url + "/v1/rag/team-docs", method="DELETE")
    assert status == 200
    status, body = call(b.url + "/v1/rag/team-docs/search", {"query": "backups"})
    assert status == 404 and "not found" in body["error"]["message"]


def test_half_written_versions_stay_invisible(chroma: str, tmp_path: Path) -> None:
    model = shared_model()

    async def embed(texts: list[str], name: str = "", input_type: str = "document") -> np.ndarray:
        return model.encode(texts)  # type: ignore[no-any-return]

    async def go() -> None:
        catalog = ChromaCatalog(chroma)
        svc = RagService(RagConfig(store="chroma"), catalog, embed, model.count_tokens)
        await svc.ingest_documents("atomic", [TextDocument("a.txt", "The old policy allows pets in the office.")])
        store = await catalog.open("atomic")
        # What a killed replace leaves behind: the new version's chunks added, the registry not switched.
        vec = model.encode(["The new policy forbids pets in the office."])
        await store.c.call("POST", f"/collections/{store.chunks_id}/add", {
            "ids": ["orphan:1"], "embeddings": vec.tolist(), "documents": ["The new policy forbids pets."],
            "metadatas": [{"source": "a.txt", "version": "never-switched", "title": "", "line_start": 1,
                           "line_end": 1, "terms": "new policy forbids pets"}]})
        for mode in ("hybrid", "vector", "keyword"):
            hits = await svc.search("atomic", "policy forbids pets", mode=mode)
            assert [h.text for h in hits] == ["The old policy allows pets in the office."], mode
        # The next replace of that document clears the leftovers.
        await store.replace(*(await _doc(svc, "a.txt", "Pets are welcome on Fridays.")))
        got = await store.c.call("POST", f"/collections/{store.chunks_id}/get", {"include": ["documents"]})
        assert got["documents"] == ["Pets are welcome on Fridays."]
        assert await catalog.drop("atomic") and not await catalog.drop("atomic")
        await catalog.close()

    asyncio.run(go())


async def _doc(svc: RagService, source: str, text: str) -> tuple[object, list[NewChunk], np.ndarray]:
    from hearth.rag.text import terms
    from hearth.rag.types import DocInfo

    vec = await svc._embed([text], "", "document")
    return DocInfo(source, "h" * 64, 1, len(text)), [NewChunk(text, "", 1, 1, terms(text))], vec
