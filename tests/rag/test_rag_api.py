"""Knowledge bases over HTTP, RAG chat through the real clients, and the CLI on the same store."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import ollama
import openai
import pytest

from tests.conftest import Server
from tests.support.httpcall import call

pytestmark = pytest.mark.model

DOCS = {
    "documents": [
        {"source": "handbook/vacation.md", "text": "# Vacation\n\n## Allowance\n\nEvery employee gets 27 vacation "
         "days per year. Unused days expire on March 31.\n", "metadata": {"team": "hr"}},
        {"source": "handbook/laptops.md", "text": "# Laptops\n\nEngineers receive a laptop with 32 GB of memory. "
         "Broken laptops are replaced within two days.\n", "metadata": {"team": "it"}},
        {"source": "wiki/北京.txt", "text": "北京是中国的首都。故宫位于北京市中心。", "metadata": {"team": "geo"}},
    ]
}


def client(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def docs_kb(rag_gateway: Server) -> Server:
    status, report = call(rag_gateway.url + "/v1/rag/docs/documents", DOCS)
    assert status == 200, report
    assert sorted(report["added"]) == sorted(d["source"] for d in DOCS["documents"]) and report["chunks"] >= 3
    return rag_gateway


def test_ingest_is_incremental_and_search_ranks_the_right_source_first(docs_kb: Server) -> None:
    status, report = call(docs_kb.url + "/v1/rag/docs/documents", DOCS)
    assert status == 200 and report["unchanged"] == 3 and report["chunks"] == 0
    status, body = call(docs_kb.url + "/v1/rag/docs/search", {"query": "How many vacation days do I get?", "top_k": 3})
    assert status == 200
    results = body["results"]
    assert results[0]["source"] == "handbook/vacation.md" and "27 vacation days" in results[0]["text"]
    assert results[0]["title"] == "Vacation > Allowance" and results[0]["metadata"] == {"team": "hr"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    _, body = call(docs_kb.url + "/v1/rag/docs/search", {"query": "故宫在哪里", "top_k": 1})
    assert body["results"][0]["source"] == "wiki/北京.txt"
    _, body = call(docs_kb.url + "/v1/rag/docs/search", {"query": "laptop memory", "filter": {"team": "hr"}})
    assert {r["source"] for r in body["results"]} == {"handbook/vacation.md"}
    _, body = call(docs_kb.url + "/v1/rag/docs/search", {"query": "laptop", "mode": "keyword", "top_k": 1})
    assert body["results"][0]["source"] == "handbook/laptops.md" and body["results"][0]["vector_score"] is None


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/rag/docs/search", {"query": "  "}, 400, "query: must not be empty"),
        ("/v1/rag/nope/search", {"query": "x"}, 404, "knowledge base 'nope' not found"),
        ("/v1/rag/bad..name/search", {"query": "x"}, 400, "is invalid"),
        ("/v1/rag/docs/search", {"query": "x", "top_k": "many"}, 400, "top_k"),
        ("/v1/rag/docs/search", {"query": "x", "bogus": 1}, 400, "bogus: unknown field"),
        ("/v1/rag/docs/search", b"{broken", 400, "malformed JSON"),
        ("/v1/rag/docs/documents", {"documents": []}, 400, "documents"),
        ("/v1/rag/docs/documents", {"documents": [{"source": "a", "text": "x"}, {"source": "a", "text": "y"}]}, 400,
         "each source may appear once"),
        ("/v1/rag/docs/documents", {"documents": [{"source": "a", "text": "x" * 70000}]}, 413, "exceeds the limit"),
    ],
)
def test_bad_requests_get_clear_errors(docs_kb: Server, path: str, body: object, status: int, needle: str) -> None:
    got, err = call(docs_kb.url + path, body)  # type: ignore[arg-type]
    assert got == status, err
    assert needle in err["error"]["message"]


def test_rag_chat_openai_client_returns_sources(docs_kb: Server) -> None:
    c = client(docs_kb)
    q = [{"role": "user", "content": "How many vacation days does an employee get?"}]
    raw = c.chat.completions.with_raw_response.create(model="rag:docs", messages=q, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    r = raw.parse()
    sources = (r.model_extra or {})["sources"]
    assert sources[0]["source"] == "handbook/vacation.md" and sources[0]["index"] == 1
    assert raw.headers["x-hearth-rag-sources"] == str(len(sources))
    assert r.choices[0].message.content and r.usage and r.usage.prompt_tokens > 60  # the sources are in the prompt
    chunks = list(c.chat.completions.create(model="rag:docs", messages=q, max_tokens=8, stream=True))  # type: ignore[arg-type]
    assert (chunks[-1].model_extra or {})["sources"][0]["source"] == "handbook/vacation.md"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    ext = c.chat.completions.create(model="smol", messages=q, max_tokens=4,  # type: ignore[arg-type]
                                    extra_body={"hearth": {"rag": {"kb": "docs", "top_k": 1}}})
    assert len((ext.model_extra or {})["sources"]) == 1
    prof = c.chat.completions.create(model="docs-bot", messages=q, max_tokens=4)  # type: ignore[arg-type]
    assert 1 <= len((prof.model_extra or {})["sources"]) <= 2
    with pytest.raises(openai.NotFoundError, match="not found"):
        c.chat.completions.create(model="rag:nope", messages=q, max_tokens=4)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="question"):
        c.chat.completions.create(model="rag:docs", messages=[{"role": "user", "content": " "}], max_tokens=4)


def test_rag_chat_ollama(docs_kb: Server) -> None:
    q = [{"role": "user", "content": "What laptop do engineers get?"}]
    status, body = call(docs_kb.url + "/api/chat", {"model": "rag:docs", "messages": q, "stream": False,
                                                    "options": {"num_predict": 8}})
    assert status == 200 and body["sources"][0]["source"] == "handbook/laptops.md"
    parts = list(ollama.Client(host=docs_kb.url).chat(model="rag:docs", messages=q, stream=True,
                                                      options={"num_predict": 8}))
    assert parts[-1].done
    req = urllib.request.Request(docs_kb.url + "/api/chat", data=json.dumps(
        {"model": "rag:docs", "messages": q, "options": {"num_predict": 4}}).encode())
    with urllib.request.urlopen(req, timeout=120) as r:
        lines = [json.loads(x) for x in r.read().splitlines() if x.strip()]
    assert lines[-1]["done"] and lines[-1]["sources"][0]["source"] == "handbook/laptops.md"


def test_cli_and_server_share_the_store(docs_kb: Server, rag_home: Path, rag_config: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(rag_config)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "oncall.md").write_text("# On-call\n\nThe on-call rotation changes every Tuesday at noon.\n")
    (folder / "image.txt").write_bytes(b"\x89PNG\x00\x00binary")

    def hearth(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hearth", "rag", *args, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=300)

    out = hearth("ingest", str(folder), "--kb", "notes")
    assert out.returncode == 0, out.stderr
    assert "1 added" in out.stdout and "image.txt: binary file" in out.stdout
    _, body = call(docs_kb.url + "/v1/rag/notes/search", {"query": "when does on-call rotate?"})
    assert body["results"][0]["source"] == str(folder / "oncall.md")  # the ingested file's path
    assert body["results"][0]["line_start"] == 1
    listing = hearth("list")
    assert "docs\t3 documents" in listing.stdout and "notes\t1 documents" in listing.stdout
    found = hearth("search", "docs", "vacation days", "--json")
    assert json.loads(found.stdout)[0]["source"] == "handbook/vacation.md"
    (folder / "oncall.md").unlink()
    out = hearth("ingest", str(folder), "--kb", "notes")
    assert "1 removed" in out.stdout
    _, body = call(docs_kb.url + "/v1/rag/notes/search", {"query": "when does on-call rotate?"})
    assert body["results"] == []
    assert hearth("rm", "notes").returncode == 0
    status, _ = call(docs_kb.url + "/v1/rag/notes/search", {"query": "x"})
    assert status == 404
    assert hearth("rm", "notes").returncode == 1


def test_listing_removing_documents_and_dropping(docs_kb: Server) -> None:
    status, body = call(docs_kb.url + "/v1/rag")
    assert status == 200 and any(kb["name"] == "docs" and kb["documents"] == 3 for kb in body["data"])
    call(docs_kb.url + "/v1/rag/scratch/documents", {"documents": [{"source": "s.txt", "text": "temporary note"}]})
    status, body = call(docs_kb.url + "/v1/rag/scratch")
    assert status == 200 and [d["source"] for d in body["documents_list"]] == ["s.txt"]
    page = {"source": "page.html", "text": "<h1>Parking</h1><p>Visitors park in lot B.</p><script>x()</script>"}
    call(docs_kb.url + "/v1/rag/scratch/documents", {"documents": [page]})
    _, body = call(docs_kb.url + "/v1/rag/scratch/search", {"query": "where do visitors park?", "top_k": 1})
    hit = body["results"][0]
    assert hit["source"] == "page.html" and hit["title"] == "Parking" and "x()" not in hit["text"]
    status, body = call(docs_kb.url + "/v1/rag/scratch/documents?source=page.html", method="DELETE")
    assert status == 200 and body["removed"] == 1
    status, body = call(docs_kb.url + "/v1/rag/scratch/documents?source=s.txt", method="DELETE")
    assert status == 200 and body["removed"] == 1
    status, body = call(docs_kb.url + "/v1/rag/scratch/documents", method="DELETE")
    assert status == 400
    status, _ = call(docs_kb.url + "/v1/rag/scratch", method="DELETE")
    assert status == 200
    status, body = call(docs_kb.url + "/v1/rag/scratch", method="DELETE")
    assert status == 404 and body["error"]["code"] == "knowledge_base_not_found"


def test_sources_fit_the_context_and_searches_are_counted(docs_kb: Server) -> None:
    c = client(docs_kb)
    q = [{"role": "user", "content": "vacation days, laptops and Beijing?"}]
    roomy = c.chat.completions.create(model="rag:docs", messages=q, max_tokens=4)  # type: ignore[arg-type]
    tight = c.chat.completions.create(model="rag:docs", messages=q, max_tokens=1880)  # type: ignore[arg-type]
    # smol's context is 2048 tokens: an answer of 1880 leaves room for one short source at most.
    assert len((roomy.model_extra or {})["sources"]) == 3
    assert len((tight.model_extra or {})["sources"]) <= 1
    with urllib.request.urlopen(docs_kb.url + "/metrics") as r:
        body = r.read().decode()
    assert 'hearth_rag_searches_total{kb="docs",mode="hybrid"}' in body
    assert "hearth_rag_search_seconds_count" in body
