"""Where stored Responses live (`store: true`, `previous_response_id`): SQLite under $HEARTH_HOME on one
machine, Redis when replicas share state (a conversation's next turn may land on another replica).

A record is one response as its owner sees it, plus the conversation that led to it (so that a follow-up
reads one record, not a chain), scoped to the key that created it: another key's id is "not found", never
"forbidden" (which would confirm that it exists). Records expire after the retention. A store that fails
raises (a 503 the client sees), never answers "not found": a follow-up must not silently lose its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from hearth.core.errors import HearthError


class StoreUnavailable(HearthError):
    status = 503
    type = "server_error"
    code = "response_store_unavailable"


class ResponseStore(Protocol):
    async def get(self, owner: str, rid: str) -> dict[str, Any] | None: ...

    async def put(self, owner: str, rid: str, record: dict[str, Any]) -> None: ...

    async def delete(self, owner: str, rid: str) -> bool: ...

    async def close(self) -> None: ...


class SqliteResponses:
    """One table, written from a worker thread (a write is a disk sync: never on the event loop)."""

    def __init__(self, path: Path, retention: float) -> None:
        self.path = path
        self.retention = retention
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # opened at first use: a gateway never asked to store has no file
        self._writes = 0

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                   "expires REAL NOT NULL, record BLOB NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires)")
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)  # conversations: only hearth reads them
        return db

    def _run(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._lock:
            try:
                if self._db is None:
                    self._db = self._open()
                cur = self._db.execute(sql, params)
                return cur.fetchone() if sql.startswith("SELECT") else cur.rowcount
            except sqlite3.Error as e:
                raise StoreUnavailable(f"the response store failed: {e}") from e

    async def get(self, owner: str, rid: str) -> dict[str, Any] | None:
        row = await asyncio.to_thread(self._run, "SELECT record FROM responses WHERE id = ? AND owner = ? AND "
                                      "expires > ?", (rid, owner, time.time()))
        return orjson.loads(row[0]) if row else None

    async def put(self, owner: str, rid: str, record: dict[str, Any]) -> None:
        self._writes += 1
        if self._writes % 100 == 1:  # expired records go a hundred writes at a time
            await asyncio.to_thread(self._run, "DELETE FROM responses WHERE expires <= ?", (time.time(),))
        await asyncio.to_thread(self._run, "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                                (rid, owner, time.time() + self.retention, orjson.dumps(record)))

    async def delete(self, owner: str, rid: str) -> bool:
        n = await asyncio.to_thread(self._run, "DELETE FROM responses WHERE id = ? AND owner = ?", (rid, owner))
        return bool(n)

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


class RedisResponses:
    """One key per response (`hearth:response:<id>`), expiring with the retention; the owner is in the record."""

    def __init__(self, url: str, retention: float, timeout: float = 2.0) -> None:
        import redis.asyncio as redis  # connects at first use

        self.retention = retention
        self.timeout = timeout
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def _call(self, op: Any) -> Any:
        try:
            return await asyncio.wait_for(op, self.timeout)
        except Exception as e:
            raise StoreUnavailable(f"the response store (Redis) failed: {type(e).__name__}") from e

    async def get(self, owner: str, rid: str) -> dict[str, Any] | None:
        raw = await self._call(self.client.get("hearth:response:" + rid))
        if not raw:
            return None
        record: dict[str, Any] = orjson.loads(raw)
        return record if record.get("owner") == owner else None

    async def put(self, owner: str, rid: str, record: dict[str, Any]) -> None:
        data = orjson.dumps({**record, "owner": owner})
        await self._call(self.client.set("hearth:response:" + rid, data, px=int(self.retention * 1000)))

    async def delete(self, owner: str, rid: str) -> bool:
        if await self.get(owner, rid) is None:
            return False
        return bool(await self._call(self.client.delete("hearth:response:" + rid)))

    async def close(self) -> None:
        await self.client.aclose()
