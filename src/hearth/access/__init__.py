"""Running hearth for other people: API keys, their limits and budgets, and the stores that hold them.

`open_access` builds the pair a deployment asks for: SQLite keys with in-process limits (one machine),
or keys, limits and spend in Redis (replicas). The API edge (api/gate.py) is the only caller.
"""

from __future__ import annotations

import os

from hearth.access.gate import ADMIN, OPEN, Access, AccessHook, Principal, Ticket, rate_headers
from hearth.access.keys import SCOPES, ApiKey, KeySpec, Scope, amend, mint
from hearth.access.meter import MemoryMeter, Meter, Spend
from hearth.access.prices import PriceBook
from hearth.access.store import KeyStore, SqliteKeyStore
from hearth.config import Config

ADMIN_KEY_ENV = "HEARTH_ADMIN_KEY"


def open_stores(cfg: Config) -> tuple[KeyStore, Meter]:
    k = cfg.keys
    if k.store == "redis":
        from hearth.access.redis_store import RedisAccess

        url = k.redis_url or cfg.cache.redis_url
        assert url is not None  # config checks demand one
        shared = RedisAccess(url, timeout=k.redis_timeout, refresh=k.refresh)
        return shared, shared
    store = SqliteKeyStore(k.sqlite_path(), refresh=k.refresh)
    return store, MemoryMeter(ledger=store)


def open_access(cfg: Config, on_event: AccessHook | None = None, env: dict[str, str] | None = None) -> Access:
    store, meter = open_stores(cfg)
    admin = (os.environ if env is None else env).get(ADMIN_KEY_ENV) or None
    return Access(store, meter, PriceBook(cfg), admin_secret=admin, default_max_tokens=cfg.keys.default_max_tokens,
                  shared_cache=cfg.keys.shared_cache, on_event=on_event)


__all__ = [
    "ADMIN",
    "ADMIN_KEY_ENV",
    "OPEN",
    "SCOPES",
    "Access",
    "AccessHook",
    "ApiKey",
    "KeySpec",
    "KeyStore",
    "MemoryMeter",
    "Meter",
    "PriceBook",
    "Principal",
    "Scope",
    "Spend",
    "SqliteKeyStore",
    "Ticket",
    "amend",
    "mint",
    "open_access",
    "open_stores",
    "rate_headers",
]
