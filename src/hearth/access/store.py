"""Where keys live: SQLite under $HEARTH_HOME for one machine (no server to run), Redis for replicas.

Every request looks its key up, so both stores answer `find` from memory and re-read the shared copy at
most every `refresh` seconds: that bounds how long a revocation made elsewhere (the CLI, another
replica) takes to bite. The SQLite store notices other writers through `PRAGMA data_version`, which
costs microseconds, so it re-reads the table only when something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from hearth.access.keys import ApiKey
from hearth.access.meter import Charge, ModelSpend, SpendRows


class KeyStore(Protocol):
    async def find(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked and expired ones included (the caller words the refusal)."""
        ...

    async def any_keys(self) -> bool: ...

    async def put(self, key: ApiKey) -> None:
        """Create or replace a key record."""
        ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def all(self) -> list[ApiKey]: ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, hash TEXT UNIQUE NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spend (
  key_id TEXT NOT NULL, period INTEGER NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL NOT NULL,
  PRIMARY KEY (key_id, period, model));
"""


class SqliteKeyStore:
    """Keys and spend in one SQLite file. Also the spend ledger of the in-memory meter."""

    def __init__(self, path: Path, refresh: float = 0.5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._refresh = refresh
        self._lock = threading.Lock()  # writes come from the event loop and from the meter's flush thread
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._by_hash: dict[str, ApiKey] = {}
        self._version = -1
        self._checked = 0.0
        self._reload()
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # hashes only, but nobody else needs to read them

    def _reload(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._version:
                return
            rows = self._db.execute("SELECT record FROM keys").fetchall()
            self._version = version
        keys = [ApiKey.from_record(json.loads(r[0])) for r in rows]
        self._by_hash = {k.hash: k for k in keys}

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= self._refresh:
            self._checked = now
            self._reload()

    async def find(self, key_hash: str) -> ApiKey | None:
        self._fresh()
        return self._by_hash.get(key_hash)

    async def any_keys(self) -> bool:
        self._fresh()
        return bool(self._by_hash)

    async def put(self, key: ApiKey) -> None:
        await asyncio.to_thread(self.put_sync, key)

    def put_sync(self, key: ApiKey) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO keys (id, hash, record) VALUES (?, ?, ?)",
                             (key.id, key.hash, json.dumps(key.to_record())))
        self._version = -1
        self._reload()

    async def get(self, key_id: str) -> ApiKey | None:
        self._fresh()
        return next((k for k in self._by_hash.values() if k.id == key_id), None)

    async def all(self) -> list[ApiKey]:
        self._fresh()
        return sorted(self._by_hash.values(), key=lambda k: k.created)

    def load_spend(self) -> SpendRows:
        out: SpendRows = {}
        with self._lock:
            rows = self._db.execute("SELECT key_id, period, model, requests, prompt_tokens, completion_tokens, cost "
                                    "FROM spend").fetchall()
        for key_id, period, model, n, p, c, cost in rows:
            out.setdefault((key_id, period), {})[model] = ModelSpend(n, p, c, cost)
        return out

    def add_spend(self, rows: list[tuple[str, int, Charge]]) -> None:
        params: list[tuple[Any, ...]] = [
            (key_id, period, ch.model, ch.prompt_tokens, ch.completion_tokens, ch.cost) for key_id, period, ch in rows
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO spend VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (key_id, period, model) DO UPDATE "
                    "SET requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost",
                    params,
                )
            except BaseException:
                self._db.execute("ROLLBACK")  # an open transaction would hold the file's write lock for good
                raise
            self._db.execute("COMMIT")

    async def close(self) -> None:
        with self._lock:
            self._db.close()
