"""The embedded knowledge-base store (SQLite + in-memory indexes), the default; the interface is in types.py.

A knowledge base holds documents (one per source path) cut into chunks, each with its text, title
path, line range, embedding and BM25 terms. Replacing a document is one SQLite transaction, so a
killed ingest leaves either the old or the new version of every document, never half of one.

Search runs on in-memory indexes (BM25 postings, an HNSW graph) built from the database and kept
current incrementally: every write bumps a generation number, chunks carry the generation that added
them and a log records the ones removed, so a process that sees a newer generation (another process,
such as `hearth rag ingest`, wrote) applies just the difference. The HNSW graph is also saved next to
the database after writes, so a restart with 100k chunks loads it instead of rebuilding it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hearth.core.errors import BadRequest
from hearth.rag.bm25 import BM25Index
from hearth.rag.types import (
    DocInfo,
    Hit,
    KnowledgeBaseNotFound,
    KnowledgeStore,
    NewChunk,
    check_name,
    matches,
    prepared,
)

_EXACT_BELOW = 2000  # filtered vector searches over fewer chunks than this are exact (a dot product each)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (source TEXT PRIMARY KEY, hash TEXT NOT NULL, chunks INTEGER NOT NULL,
    size INTEGER NOT NULL, updated REAL NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, text TEXT NOT NULL,
    title TEXT NOT NULL, line_start INTEGER NOT NULL, line_end INTEGER NOT NULL, terms TEXT NOT NULL,
    vector BLOB NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (source);
CREATE INDEX IF NOT EXISTS chunks_gen ON chunks (gen);
CREATE TABLE IF NOT EXISTS removed (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('gen', '0');
"""


class LocalStore:
    """The embedded store: `$HEARTH_HOME/rag/<name>/kb.sqlite` plus a saved HNSW graph."""

    def __init__(self, name: str, folder: Path, dims: int = 384) -> None:
        self.name = name
        self.folder = folder
        self.dims = dims
        folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(folder / "kb.sqlite", timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.inode = (folder / "kb.sqlite").stat().st_ino
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dims'").fetchone()
        if row is not None:  # fixed by the first write: the embedding model's width
            self.dims = int(row[0])
        self._lock = threading.RLock()  # one connection, used from the loop and from worker threads
        self._gen = -1  # generation the in-memory indexes reflect; -1: not loaded
        self._bm25 = BM25Index()
        self._hnsw: Any = None
        self._by_source: dict[str, set[int]] = {}
        self._doc_meta: dict[str, dict[str, Any]] = {}
        self._dirty = 0  # index changes not yet saved to disk

    # --- writes ---------------------------------------------------------------------------------------

    async def replace(self, doc: DocInfo, chunks: list[NewChunk], vectors: np.ndarray) -> None:
        await asyncio.to_thread(self._replace, doc, chunks, vectors)

    def _replace(self, doc: DocInfo, chunks: list[NewChunk], vectors: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vectors, np.float32)
        with self._lock, self._write() as (db, gen):
            if len(vecs):
                self._check_dims(db, vecs.shape[1])
            self._drop_chunks(db, doc.source, gen)
            db.executemany(
                "INSERT INTO chunks (source, text, title, line_start, line_end, terms, vector, gen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(doc.source, c.text, c.title, c.line_start, c.line_end, " ".join(c.terms), vecs[i].tobytes(), gen)
                 for i, c in enumerate(chunks)],
            )
            row = (doc.source, doc.hash, len(chunks), doc.size, time.time(), json.dumps(doc.metadata))
            db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)", row)
        self._refresh()

    async def remove(self, sources: list[str]) -> int:
        return await asyncio.to_thread(self._remove, sources)

    async def chunks(self, source: str) -> list[NewChunk]:
        def read() -> list[NewChunk]:
            with self._lock:
                rows = self._db.execute("SELECT text, title, line_start, line_end, terms FROM chunks WHERE source = ? "
                                        "ORDER BY id", (source,)).fetchall()
            return [NewChunk(t, title, a, b, terms.split()) for t, title, a, b, terms in rows]

        return await asyncio.to_thread(read)

    async def chunk_vectors(self, source: str) -> dict[str, np.ndarray]:
        def read() -> dict[str, np.ndarray]:
            with self._lock:
                rows = self._db.execute("SELECT title, text, vector FROM chunks WHERE source = ?", (source,)).fetchall()
            return {f"{t}\n{x}" if t else x: np.frombuffer(v, np.float32) for t, x, v in rows}

        return await asyncio.to_thread(read)

    def _remove(self, sources: list[str]) -> int:
        n = 0
        with self._lock, self._write() as (db, gen):
            for s in sources:
                self._drop_chunks(db, s, gen)
                n += db.execute("DELETE FROM documents WHERE source = ?", (s,)).rowcount
        self._refresh()
        return n

    def _check_dims(self, db: sqlite3.Connection, dims: int) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'dims'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('dims', ?)", (str(dims),))
            self.dims = dims
        elif int(row[0]) != dims:
            raise BadRequest(
                f"knowledge base {self.name!r} holds {row[0]}-dimensional vectors but the embedding "
                f"model gives {dims}: use a new knowledge base after changing rag.embedding_model"
            )

    def _drop_chunks(self, db: sqlite3.Connection, source: str, gen: int) -> None:
        db.execute("INSERT OR REPLACE INTO removed SELECT id, ? FROM chunks WHERE source = ?", (gen, source))
        db.execute("DELETE FROM chunks WHERE source = ?", (source,))

    class _Txn:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> tuple[sqlite3.Connection, int]:
            self.db.execute("BEGIN IMMEDIATE")  # writers queue here; readers keep reading the last commit
            self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'gen'")
            gen = int(self.db.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()[0])
            return self.db, gen

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _write(self) -> LocalStore._Txn:
        return LocalStore._Txn(self._db)

    # --- reads ----------------------------------------------------------------------------------------

    async def documents(self) -> dict[str, DocInfo]:
        return await asyncio.to_thread(self._documents)

    def _documents(self) -> dict[str, DocInfo]:
        with self._lock:
            rows = self._db.execute("SELECT source, hash, chunks, size, updated, metadata FROM documents").fetchall()
        return {r[0]: DocInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows}

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._stats)

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            docs, chunks = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)").fetchone()
        return {"name": self.name, "documents": docs, "chunks": chunks, "store": "local", "path": str(self.folder)}

    # Searches run on a worker thread: a refresh applying another process's big ingest holds the lock for
    # a while, and the event loop must never wait on it.

    async def vector_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]:
        return await asyncio.to_thread(self._vector_search, vector, k, where)

    async def warm(self) -> None:
        await asyncio.to_thread(self._refresh)

    async def keyword_search(self, terms: list[str], k: int, where: dict[str, Any] | None) -> list[Hit]:
        return await asyncio.to_thread(self._keyword_search, terms, k, where)

    def _vector_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]:
        with self._lock:
            self._refresh()
            if self._hnsw is None or k <= 0:
                return []
            allowed = self._allowed(where)
            q = np.asarray(vector, np.float32).reshape(-1)
            if len(q) != self.dims:
                raise BadRequest(f"knowledge base {self.name!r} holds {self.dims}-dimensional vectors but the "
                                 f"embedding model gives {len(q)}: was rag.embedding_model changed?")
            live = self._hnsw.get_current_count() - len(self._hnsw_deleted)
            if allowed is not None and len(allowed) <= _EXACT_BELOW:
                pairs = self._exact(q, allowed, k)  # a small subset: exact, and no filtered graph walk
            else:
                k = min(k, live)
                if k <= 0:
                    return []
                self._hnsw.set_ef(max(128, 2 * k))
                try:
                    labels, dist = self._hnsw.knn_query(
                        q.reshape(1, -1), k=k, filter=None if allowed is None else allowed.__contains__
                    )
                    pairs = [(int(i), 1.0 - float(d)) for i, d in zip(labels[0], dist[0], strict=True)]
                except RuntimeError:  # the filtered walk found fewer than k: fall back to exact
                    pairs = self._exact(q, allowed if allowed is not None else self._live_ids(), k)
            return self._hits(pairs, "vector")

    def _exact(self, q: np.ndarray, ids: set[int], k: int) -> list[tuple[int, float]]:
        if not ids:
            return []
        labels = sorted(ids)
        sims = np.asarray(self._hnsw.get_items(labels), np.float32) @ q
        top = np.argsort(-sims)[:k]
        return [(labels[i], float(sims[i])) for i in top]

    def _live_ids(self) -> set[int]:
        return set().union(*self._by_source.values()) if self._by_source else set()

    def _keyword_search(self, terms: list[str], k: int, where: dict[str, Any] | None) -> list[Hit]:
        with self._lock:
            self._refresh()
            allowed = self._allowed(where)
            if allowed is not None and not allowed:
                return []
            mask = None if allowed is None else self._bm25.mask(allowed)
            return self._hits(self._bm25.search(terms, k, mask), "keyword")

    def _allowed(self, where: dict[str, Any] | None) -> set[int] | None:
        if not where:
            return None
        out: set[int] = set()
        where = prepared(where)
        for source, ids in self._by_source.items():
            if matches(source, self._doc_meta.get(source, {}), where):
                out |= ids
        return out

    def _hits(self, pairs: list[tuple[int, float]], kind: str) -> list[Hit]:
        if not pairs:
            return []
        with self._lock:
            q = ",".join("?" * len(pairs))
            rows = {r[0]: r for r in self._db.execute(
                f"SELECT id, text, source, title, line_start, line_end FROM chunks WHERE id IN ({q})",
                [p[0] for p in pairs])}
        out = []
        for cid, score in pairs:
            r = rows.get(cid)
            if r is None:  # removed by another process since the index was refreshed
                continue
            h = Hit(str(cid), r[1], r[2], r[3], r[4], r[5], self._doc_meta.get(r[2], {}), score)
            if kind == "vector":
                h.vector_score = score
            else:
                h.keyword_score = score
            out.append(h)
        return out

    # --- keeping the in-memory indexes current -------------------------------------------------------

    def _refresh(self) -> None:
        with self._lock:
            gen = int(self._db.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()[0])
            if gen == self._gen:
                return
            if self._hnsw is None and (row := self._db.execute("SELECT value FROM meta WHERE key = 'dims'").fetchone()):
                self.dims = int(row[0])  # another process made the first write
            if self._gen < 0:
                self._load_snapshot()
            since = self._gen
            removed = [r[0] for r in self._db.execute("SELECT id FROM removed WHERE gen > ?", (since,))]
            added = self._db.execute("SELECT id, source, terms, vector FROM chunks WHERE gen > ?", (since,)).fetchall()
            for cid in removed:
                self._bm25.remove(cid)
                if self._hnsw is not None and cid not in self._hnsw_deleted:
                    try:
                        self._hnsw.mark_deleted(cid)
                        self._hnsw_deleted.add(cid)
                    except RuntimeError:
                        pass  # never added here (added and removed between two refreshes)
                for ids in self._by_source.values():
                    ids.discard(cid)
            if added:
                self._ensure_hnsw(len(added))
                vecs = np.frombuffer(b"".join(r[3] for r in added), np.float32).reshape(len(added), self.dims)
                self._hnsw.add_items(vecs, np.asarray([r[0] for r in added], np.int64))
                for cid, source, terms, _ in added:
                    self._bm25.add(cid, terms.split())
                    self._by_source.setdefault(source, set()).add(cid)
            self._by_source = {s: ids for s, ids in self._by_source.items() if ids}
            docs = self._db.execute("SELECT source, metadata FROM documents")
            self._doc_meta = {r[0]: json.loads(r[1]) for r in docs}
            self._dirty += len(added) + len(removed)
            self._gen = gen
            if self._dirty >= 256:
                self._save_snapshot()

    _hnsw_deleted: set[int]

    def _ensure_hnsw(self, extra: int) -> None:
        import hnswlib

        if self._hnsw is None:
            self._hnsw = hnswlib.Index(space="ip", dim=self.dims)
            self._hnsw.init_index(max_elements=max(1024, extra * 2), ef_construction=100, M=16)
            self._hnsw_deleted = set()
        need = self._hnsw.get_current_count() + extra
        if need > self._hnsw.get_max_elements():
            self._hnsw.resize_index(max(need, 2 * self._hnsw.get_max_elements()))

    def _load_snapshot(self) -> None:
        """Start from the saved graph (if any) and the BM25 terms of every live chunk it covers."""
        import hnswlib

        self._gen = 0
        self._hnsw_deleted = set()
        db_gen = int(self._db.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()[0])
        try:
            meta = json.loads((self.folder / "vectors.json").read_text())
            saved_gen = int(meta["gen"])
            if saved_gen > db_gen:
                return
            index = hnswlib.Index(space="ip", dim=self.dims)
            index.load_index(str(self.folder / meta["file"]), max_elements=int(meta["max_elements"]))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return  # no usable snapshot: everything loads as "added since generation 0"
        # Chunks added after the snapshot come back as deltas; the older live ones go to BM25 now.
        for cid, source, terms in self._db.execute("SELECT id, source, terms FROM chunks WHERE gen <= ?", (saved_gen,)):
            self._bm25.add(cid, terms.split())
            self._by_source.setdefault(source, set()).add(cid)
        self._hnsw = index
        self._hnsw_deleted = set(meta.get("deleted", []))
        self._gen = saved_gen

    def _save_snapshot(self) -> None:
        """Graph file first, then the small JSON that names it (atomic rename): a reader never pairs a
        graph with another writer's generation."""
        if self._hnsw is None:
            return
        name = f"vectors.{self._gen}.{os.getpid()}.hnsw"
        self._hnsw.save_index(str(self.folder / name))
        meta = {"gen": self._gen, "file": name, "max_elements": self._hnsw.get_max_elements(),
                "deleted": sorted(self._hnsw_deleted)}
        tmp = self.folder / f".vectors.{os.getpid()}.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.folder / "vectors.json")
        for old in self.folder.glob("vectors.*.hnsw"):
            if old.name != name:
                old.unlink(missing_ok=True)  # another process may be reading it: it keeps its open file
        self._dirty = 0

    def save(self) -> None:
        with self._lock:
            if self._dirty:
                self._save_snapshot()

    def close(self) -> None:
        self.save()
        with self._lock:
            self._db.close()


class LocalCatalog:
    def __init__(self, root: Path, dims: int = 384) -> None:
        self.root = root
        self.dims = dims
        self._open: dict[str, LocalStore] = {}

    async def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "kb.sqlite").is_file())

    async def open(self, name: str, *, create: bool = False) -> KnowledgeStore:
        check_name(name)
        folder = self.root / name
        try:
            inode = (folder / "kb.sqlite").stat().st_ino
        except OSError:
            inode = None
        store = self._open.get(name)
        if store is not None:
            if inode == store.inode:
                return store
            # Dropped (and perhaps re-created) by another process, such as `hearth rag rm`.
            del self._open[name]
            store._dirty = 0
            store.close()
        if inode is None and not create:
            raise KnowledgeBaseNotFound(f"knowledge base {name!r} not found; ingest documents into it first",
                                        param="kb")
        store = LocalStore(name, folder, self.dims)
        self._open[name] = store
        return store

    async def drop(self, name: str) -> bool:
        check_name(name)
        store = self._open.pop(name, None)
        if store is not None:
            store._dirty = 0
            store.close()
        folder = self.root / name
        if not (folder / "kb.sqlite").is_file():
            return False
        import shutil

        shutil.rmtree(folder)
        return True

    async def close(self) -> None:
        for store in self._open.values():
            store.close()
        self._open.clear()
