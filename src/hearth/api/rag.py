"""Knowledge bases over HTTP (errors in OpenAI's format, as for the rest of `/v1`).

- `GET /v1/rag`: the knowledge bases; `GET /v1/rag/{kb}`: one, with its documents;
  `DELETE /v1/rag/{kb}`: drop it.
- `POST /v1/rag/{kb}/documents`: `{"documents": [{"source", "text", "metadata"?, "kind"?}], "replace_all"?}`,
  ingested incrementally (unchanged documents are skipped); answers the ingest report.
- `DELETE /v1/rag/{kb}/documents?source=...` (repeatable): remove documents.
- `POST /v1/rag/{kb}/search`: `{"query", "top_k"?, "filter"?, "mode"?, "fusion"?, "vector_weight"?}`.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from hearth.access import Ticket
from hearth.access.prices import text_bytes
from hearth.api.common import MAX_BODY, SERVICES, guarded, json_response
from hearth.api.gate import ACCESS, Route, add_routes, admit_kb, visible
from hearth.api.openai import render_error
from hearth.api.schemas import read_parsed
from hearth.core.errors import BadRequest, PayloadTooLarge
from hearth.core.work import IsolatedFailure, isolated, offload
from hearth.rag.types import KnowledgeBaseNotFound, check_name

PDF_SECONDS = 30.0  # to read one uploaded PDF, in a process of its own capped at 1 GB

if TYPE_CHECKING:
    from hearth.rag.service import RagService


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(_Body):
    source: str = Field(min_length=1, max_length=4096)
    text: str
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    kind: Literal["code", "markdown", "rst", "html", "prose"] | None = Field(
        None, description="how to chunk; default: guessed from the source's suffix (.py, .md, .html...) and the text"
    )


class DocumentsBody(_Body):
    documents: list[DocumentIn] = Field(min_length=1)
    replace_all: bool = False


class SearchBody(_Body):
    query: str
    top_k: int = Field(5, ge=1, le=100)
    filter: dict[str, Any] | None = None
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    fusion: Literal["adaptive", "weighted", "rrf"] | None = None
    vector_weight: float | None = Field(None, ge=0, le=1)


def _service(request: web.Request) -> RagService:
    return request.app[SERVICES].rag.service()


async def _kb(request: web.Request) -> str:
    kb = check_name(request.match_info["kb"])
    await admit_kb(request, kb)
    return kb


def visible_kbs(request: web.Request, kbs: list[str]) -> list[str]:
    return [kb for kb in kbs if visible(request, [f"rag:{kb}"])]


@guarded(render_error)
async def list_kbs(request: web.Request) -> web.Response:
    svc = _service(request)
    out = []
    for name in visible_kbs(request, await svc.catalog.names()):
        store = await svc.catalog.open(name)
        out.append({**await store.stats(), "embedding_model": await svc.model_of(name, store)})
    return json_response({"object": "list", "data": out})


@guarded(render_error)
async def get_kb(request: web.Request) -> web.Response:
    kb = await _kb(request)
    svc = _service(request)
    store = await svc.catalog.open(kb)
    docs = await store.documents()
    listing = [{"source": d.source, "chunks": d.chunks, "size": d.size, "updated": d.updated, "metadata": d.metadata}
               for d in sorted(docs.values(), key=lambda d: d.source)]
    return json_response({**await store.stats(), "embedding_model": await svc.model_of(kb, store),
                          "documents_list": listing})


@guarded(render_error)
async def drop_kb(request: web.Request) -> web.Response:
    kb = await _kb(request)
    if not await _service(request).catalog.drop(kb):
        raise KnowledgeBaseNotFound(f"knowledge base {kb!r} not found", param="kb")
    return json_response({"deleted": kb})


@guarded(render_error)
async def add_documents(request: web.Request) -> web.Response:
    from hearth.rag.service import TextDocument

    kb = check_name(request.match_info["kb"])
    body = await read_parsed(request, DocumentsBody)
    sources = [d.source for d in body.documents]
    if len(set(sources)) != len(sources):
        raise BadRequest("documents: each source may appear once per request", param="documents")
    docs = [TextDocument(d.source, d.text, dict(d.metadata), d.kind) for d in body.documents]
    ticket = await admit_kb(request, kb, text_bytes(d.text for d in docs))
    report = await _service(request).ingest_documents(kb, docs, replace_all=body.replace_all)
    await _charge(request, ticket)
    return json_response(report.as_dict())


async def _charge(request: web.Request, ticket: Ticket | None) -> None:
    """An ingest's texts were embedded: they stay counted in the key's token window (at their estimate)."""
    if ticket is not None:
        await request.app[ACCESS].settle(ticket, "rag", None, 0)


@guarded(render_error)
async def upload_files(request: web.Request) -> web.Response:
    """`multipart/form-data` files (the console's drag and drop): read as `hearth rag ingest` reads files
    (PDF, HTML, any text encoding it knows) and ingested like `POST .../documents`."""
    from hearth.rag.service import TextDocument
    from hearth.rag.text import Unreadable, read_bytes

    kb = check_name(request.match_info["kb"])
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send the files as multipart/form-data (one part per file)")
    limit = request.app[MAX_BODY]
    reader = await request.multipart()
    files: list[tuple[str, bytes]] = []
    size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.filename:
            continue
        raw = bytearray()
        while chunk := await part.read_chunk(65536):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the files exceed the request limit of {limit} bytes")
            raw += chunk
        files.append((part.filename, bytes(raw)))
    if not files:
        raise BadRequest("no file in the request: send parts with a filename")
    # Admitted on the files' bytes (a PDF's text is not known before it is read, which is the costly part).
    ticket = await admit_kb(request, kb, size)
    docs, skipped = [], []
    for name, data in files:
        try:
            if name.lower().endswith(".pdf"):  # no check can bound a PDF's cost before it is parsed
                content = await isolated(read_bytes, name, data, timeout=PDF_SECONDS)
            else:
                content = await offload(functools.partial(read_bytes, name, data), size=len(data))
            html = name.lower().endswith((".html", ".htm"))
            docs.append(TextDocument(name, content, kind="markdown" if html else None))
        except Unreadable as e:
            skipped.append({"source": name, "reason": str(e)})
        except IsolatedFailure as e:
            skipped.append({"source": name, "reason": f"unreadable PDF: reading it {e}"})
    report = await _service(request).ingest_documents(kb, docs) if docs else None
    await _charge(request, ticket)
    out: dict[str, Any] = report.as_dict() if report is not None else {"kb": kb, "skipped": []}
    out["skipped"] = skipped + out["skipped"]  # as `hearth rag ingest` reports files it cannot read
    return json_response(out)


@guarded(render_error)
async def remove_documents(request: web.Request) -> web.Response:
    sources = request.query.getall("source", [])
    if not sources:
        raise BadRequest("name the documents to remove: ?source=...", param="source")
    store = await _service(request).catalog.open(await _kb(request))
    return json_response({"removed": await store.remove(sources)})


@guarded(render_error)
async def search(request: web.Request) -> web.Response:
    kb = await _kb(request)
    body = await read_parsed(request, SearchBody)
    t0 = time.perf_counter()
    hits = await _service(request).search(kb, body.query, top_k=body.top_k, where=body.filter, mode=body.mode,
                                          fusion=body.fusion, vector_weight=body.vector_weight)
    results = [{"id": h.id, "text": h.text, "score": round(h.score, 6), "source": h.source, "title": h.title,
                "line_start": h.line_start, "line_end": h.line_end, "vector_score": h.vector_score,
                "keyword_score": h.keyword_score, "metadata": h.metadata} for h in hits]
    return json_response({"kb": kb, "query": body.query, "results": results,
                          "took_ms": round((time.perf_counter() - t0) * 1000, 2)})


ROUTES = [
    Route("GET", "/v1/rag", list_kbs, "rag:read", "Knowledge bases"),
    Route("GET", "/v1/rag/{kb}", get_kb, "rag:read", "One knowledge base"),
    Route("DELETE", "/v1/rag/{kb}", drop_kb, "rag:write", "Drop a knowledge base"),
    Route("POST", "/v1/rag/{kb}/documents", add_documents, "rag:write", "Add or replace documents", DocumentsBody),
    Route("DELETE", "/v1/rag/{kb}/documents", remove_documents, "rag:write", "Remove documents (?source=...)"),
    Route("POST", "/v1/rag/{kb}/files", upload_files, "rag:write", "Upload files (multipart/form-data)"),
    Route("POST", "/v1/rag/{kb}/search", search, "rag:read", "Search a knowledge base", SearchBody),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
