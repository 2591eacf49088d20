"""Knowledge bases on a Chroma server (`chroma run`), for replicas that share one store.

Each knowledge base is two collections: `hearth-<kb>` holds the chunks (text, embedding, source,
title, lines, BM25 terms) and `hearth-<kb>.docs` one record per document naming its current
version. Chroma has no transactions, so a document is replaced in three steps: add the new version's
chunks (invisible: the registry still names the old version), switch the registry record (one
upsert), delete the other versions' chunks. Searches drop hits whose version is not current, so a
killed ingest shows the old or the new version, never a mix; its leftovers go at the next replace.

Vector search runs in Chroma. Chroma has no BM25, so keyword search uses an in-process BM25 index
built from the collection's terms; when the registry changes (checked at most once per `refresh`
seconds) only the changed documents' chunks are fetched. Filters are resolved to the matching
documents through the registry and applied inside both searches.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import aiohttp
import numpy as np
import orjson

from hearth.core.errors import HearthError, UpstreamError
from hearth.rag.bm25 import BM25Index
from hearth.rag.types import DocInfo, Hit, KnowledgeBaseNotFound, NewChunk, check_name, matches

_PREFIX = "hearth-"
_PAGE = 1000


class ChromaClient:
    def __init__(self, url: str, tenant: str, database: str) -> None:
        self.base = f"{url.rstrip('/')}/api/v2/tenants/{tenant}/databases/{database}"
        self.url = url
        self._session: aiohttp.ClientSession | None = None
        self.stores: dict[str, ChromaStore] = {}  # open knowledge bases, forgotten when Chroma says they are gone

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=5))
        return self._session

    async def call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        try:
            async with self.session.request(method, self.base + path, data=None if body is None else orjson.dumps(
                    body), headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                if resp.status == 404:
                    if missing_ok:
                        return None
                    if b"does not exist" in raw:  # dropped by another replica since we opened it
                        for name in [n for n, st in self.stores.items() if st.chunks_id in path or st.docs_id in path]:
                            del self.stores[name]
                        raise KnowledgeBaseNotFound("knowledge base not found: it was removed from Chroma", param="kb")
                if resp.status >= 400:
                    raise UpstreamError(f"Chroma at {self.url} answered {resp.status} to {method} {path}: "
                                        f"{raw[:300].decode('utf-8', 'replace')}")
                return orjson.loads(raw) if raw else None
        except HearthError:
            raise
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamError(f"Chroma at {self.url} is unreachable: {e}") from e

    async def collection(self, name: str, *, create: bool) -> dict[str, Any] | None:
        if create:
            body = {"name": name, "get_or_create": True, "configuration": {"hnsw": {"space": "cosine"}}}
            return await self.call("POST", "/collections", body)  # type: ignore[no-any-return]
        return await self.call("GET", f"/collections/{name}", missing_ok=True)  # type: ignore[no-any-return]

    async def get_all(self, cid: str, where: dict[str, Any] | None, include: list[str]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"ids": [], **{k: [] for k in include}}
        offset = 0
        while True:
            body: dict[str, Any] = {"include": include, "limit": _PAGE, "offset": offset}
            if where:
                body["where"] = where
            page = await self.call("POST", f"/collections/{cid}/get", body)
            out["ids"].extend(page["ids"])
            for k in include:
                out[k].extend(page.get(k) or [])
            if len(page["ids"]) < _PAGE:
                return out
            offset += _PAGE

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class ChromaStore:
    def __init__(self, name: str, client: ChromaClient, chunks_id: str, docs_id: str, refresh: float = 1.0) -> None:
        self.name = name
        self.c = client
        self.chunks_id = chunks_id
        self.docs_id = docs_id
        self.refresh = refresh
        self._docs: dict[str, DocInfo] = {}
        self._versions: dict[str, str] = {}
        self._checked = 0.0
        self._bm25 = BM25Index()
        self._bm25_for: dict[str, str] = {}  # source -> the version the BM25 index holds
        self._names: dict[int, str] = {}  # BM25 row -> chunk id
        self._rows: dict[str, list[int]] = {}  # source -> its BM25 rows
        self._next_row = 0

    async def warm(self) -> None:
        await self._registry(force=True)

    def save(self) -> None:
        return None  # the Chroma server persists; the keyword index is rebuilt from it

    async def documents(self) -> dict[str, DocInfo]:
        await self._registry(force=True)
        return dict(self._docs)

    async def _registry(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self.refresh:
            return
        got = await self.c.get_all(self.docs_id, None, ["metadatas"])
        docs, versions = {}, {}
        for m in got["metadatas"]:
            d = DocInfo(m["source"], m["hash"], m["chunks"], m["size"], m["updated"], json.loads(m["metadata"]))
            docs[d.source] = d
            versions[d.source] = m["version"]
        self._docs, self._versions = docs, versions
        self._checked = time.monotonic()

    async def replace(self, doc: DocInfo, chunks: list[NewChunk], vectors: np.ndarray) -> None:
        version = doc.hash[:16] + hex(time.time_ns())[-6:]
        key = _key(doc.source)
        ids = [f"{key}:{version}:{i}" for i in range(len(chunks))]
        for a in range(0, len(chunks), 500):
            part = chunks[a : a + 500]
            await self.c.call("POST", f"/collections/{self.chunks_id}/add", {
                "ids": ids[a : a + 500],
                "embeddings": np.asarray(vectors[a : a + 500], np.float32).tolist(),
                "documents": [c.text for c in part],
                "metadatas": [{"source": doc.source, "version": version, "title": c.title, "line_start": c.line_start,
                               "line_end": c.line_end, "terms": " ".join(c.terms)} for c in part],
            })
        meta = {"source": doc.source, "hash": doc.hash, "version": version, "chunks": len(chunks), "size": doc.size,
                "updated": time.time(), "metadata": json.dumps(doc.metadata)}
        await self.c.call("POST", f"/collections/{self.docs_id}/upsert",
                          {"ids": [key], "embeddings": [[1.0]], "metadatas": [meta]})  # the switch
        await self.c.call("POST", f"/collections/{self.chunks_id}/delete",
                          {"where": {"$and": [{"source": doc.source}, {"version": {"$ne": version}}]}})
        self._checked = 0.0

    async def chunks(self, source: str) -> list[NewChunk]:
        await self._registry(force=True)
        version = self._versions.get(source)
        if version is None:
            return []
        where = {"$and": [{"source": source}, {"version": version}]}
        got = await self.c.get_all(self.chunks_id, where, ["documents", "metadatas"])
        rows = sorted(zip(got["ids"], got["documents"], got["metadatas"], strict=True),
                      key=lambda r: int(r[0].rsplit(":", 1)[1]))
        return [NewChunk(d, m.get("title", ""), int(m.get("line_start", 0)), int(m.get("line_end", 0)),
                         str(m.get("terms", "")).split()) for _, d, m in rows]

    async def chunk_vectors(self, source: str) -> dict[str, np.ndarray]:
        await self._registry(force=True)
        version = self._versions.get(source)
        if version is None:
            return {}
        where = {"$and": [{"source": source}, {"version": version}]}
        got = await self.c.get_all(self.chunks_id, where, ["documents", "metadatas", "embeddings"])
        return {(f"{m.get('title')}\n{d}" if m.get("title") else d): np.asarray(e, np.float32)
                for d, m, e in zip(got["documents"], got["metadatas"], got["embeddings"], strict=True)}

    async def remove(self, sources: list[str]) -> int:
        await self._registry(force=True)
        n = 0
        for s in sources:
            if s in self._docs:
                await self.c.call("POST", f"/collections/{self.docs_id}/delete", {"ids": [_key(s)]})
                n += 1
            await self.c.call("POST", f"/collections/{self.chunks_id}/delete", {"where": {"source": s}})
        self._checked = 0.0
        return n

    async def stats(self) -> dict[str, Any]:
        await self._registry(force=True)
        count = await self.c.call("GET", f"/collections/{self.chunks_id}/count")
        return {"name": self.name, "documents": len(self._docs), "chunks": int(count), "store": "chroma",
                "url": self.c.url}

    def _matching(self, where: dict[str, Any]) -> list[str]:
        """Filters are resolved against the document registry (it holds every document's metadata), then
        sent to Chroma as a `source` condition: exact, however selective the filter."""
        return sorted(s for s, d in self._docs.items() if matches(s, d.metadata, where))

    def _live(self, meta: dict[str, Any]) -> bool:
        """False for an old version's chunk, or a half-written new one's (filters were applied in the search)."""
        return bool(self._versions.get(meta.get("source", "")) == meta.get("version"))

    async def vector_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]:
        await self._registry()
        if not self._docs or k <= 0:
            return []
        body: dict[str, Any] = {"query_embeddings": [np.asarray(vector, np.float32).tolist()], "n_results": k * 2,
                                "include": ["documents", "metadatas", "distances"]}
        if where:
            sources = self._matching(where)
            if not sources:
                return []
            body["where"] = {"source": sources[0]} if len(sources) == 1 else {"source": {"$in": sources}}
        res = await self.c.call("POST", f"/collections/{self.chunks_id}/query", body)
        hits = []
        for cid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0],
                                        strict=True):
            if self._live(meta):
                h = self._hit(cid, doc, meta, 1.0 - float(dist))
                h.vector_score = h.score
                hits.append(h)
        return hits[:k]

    async def keyword_search(self, terms: list[str], k: int, where: dict[str, Any] | None) -> list[Hit]:
        await self._registry()
        if self._bm25_for != self._versions:
            await self._sync_bm25()
        mask = None
        if where:
            mask = self._bm25.mask({r for s in self._matching(where) for r in self._rows.get(s, [])})
        ranked = self._bm25.search(terms, k, mask)
        if not ranked:
            return []
        ids = [self._names[r] for r, _ in ranked]
        got = await self.c.call("POST", f"/collections/{self.chunks_id}/get",
                                {"ids": ids, "include": ["documents", "metadatas"]})
        by_id = {cid: (doc, meta) for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"],
                                                             strict=True)}
        hits = []
        for (_, score), cid in zip(ranked, ids, strict=True):
            if cid in by_id and self._live(by_id[cid][1]):
                h = self._hit(cid, by_id[cid][0], by_id[cid][1], score)
                h.keyword_score = score
                hits.append(h)
        return hits[:k]

    async def _sync_bm25(self) -> None:
        """Bring the keyword index to the registry's versions: only documents that changed are fetched."""
        versions = dict(self._versions)
        stale = [s for s, v in self._bm25_for.items() if versions.get(s) != v]
        for source in stale:
            for row in self._rows.pop(source, []):
                self._bm25.remove(row)
                del self._names[row]
        fresh = [s for s, v in versions.items() if self._bm25_for.get(s) != v]
        for a in range(0, len(fresh), 100):
            part = fresh[a : a + 100]
            got = await self.c.get_all(self.chunks_id, {"source": {"$in": part}}, ["metadatas"])
            for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
                source = meta.get("source")
                if versions.get(source) == meta.get("version"):
                    row = self._next_row
                    self._next_row += 1
                    self._bm25.add(row, meta.get("terms", "").split())
                    self._names[row] = cid
                    self._rows.setdefault(source, []).append(row)
        self._bm25_for = versions

    def _hit(self, cid: str, doc: str, meta: dict[str, Any], score: float) -> Hit:
        source = meta["source"]
        return Hit(cid, doc, source, meta.get("title", ""), int(meta.get("line_start", 0)),
                   int(meta.get("line_end", 0)), self._docs[source].metadata, score)


class ChromaCatalog:
    def __init__(self, url: str, tenant: str = "default_tenant", database: str = "default_database") -> None:
        self.client = ChromaClient(url, tenant, database)
        self._open = self.client.stores

    async def names(self) -> list[str]:
        cols = await self.client.call("GET", "/collections?limit=10000")
        return sorted(c["name"][len(_PREFIX):] for c in cols
                      if c["name"].startswith(_PREFIX) and not c["name"].endswith(".docs"))

    async def open(self, name: str, *, create: bool = False) -> ChromaStore:
        check_name(name)
        if name in self._open:
            return self._open[name]
        chunks = await self.client.collection(_PREFIX + name, create=create)
        docs = await self.client.collection(_PREFIX + name + ".docs", create=create)
        if chunks is None or docs is None:
            raise KnowledgeBaseNotFound(f"knowledge base {name!r} not found on Chroma at {self.client.url}",
                                        param="kb")
        store = ChromaStore(name, self.client, chunks["id"], docs["id"])
        self._open[name] = store
        return store

    async def drop(self, name: str) -> bool:
        check_name(name)
        self._open.pop(name, None)
        found = False
        for col in (_PREFIX + name, _PREFIX + name + ".docs"):
            if await self.client.call("DELETE", f"/collections/{col}", missing_ok=True) is not None:
                found = True
        return found

    async def close(self) -> None:
        await self.client.close()


def _key(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:24]
