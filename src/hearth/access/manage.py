"""Key management shared by `/admin/keys` and `hearth keys`: both act on the store through these, so the
CLI (which works on the store directly, with no server running) and the API answer alike."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from hearth.access.keys import ApiKey, KeySpec, amend, mint
from hearth.access.meter import Meter
from hearth.access.store import KeyStore
from hearth.core.errors import BadRequest, HearthError


class KeyNotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "key_not_found"


def _spec_error(e: ValidationError) -> BadRequest:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return BadRequest(f"{where}: {first['msg']}", param=where)


async def create_key(store: KeyStore, fields: dict[str, Any]) -> tuple[ApiKey, str]:
    try:
        spec = KeySpec.model_validate(fields)
    except ValidationError as e:
        raise _spec_error(e) from None
    key, secret = mint(spec)
    await store.put(key)
    return key, secret


async def find_key(store: KeyStore, key_id: str) -> ApiKey:
    key = await store.get(key_id)
    if key is None:
        raise KeyNotFound(f"no key with id {key_id!r}", param="id")
    return key


async def update_key(store: KeyStore, key_id: str, changes: dict[str, Any]) -> ApiKey:
    key = await find_key(store, key_id)
    try:
        new = amend(key, changes)
    except ValidationError as e:
        raise _spec_error(e) from None
    await store.put(new)
    return new


async def revoke_key(store: KeyStore, key_id: str) -> ApiKey:
    key = await find_key(store, key_id)
    if key.revoked is None:
        key = replace(key, revoked=time.time())
        await store.put(key)
    return key


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


async def spend_report(meter: Meter, key: ApiKey) -> dict[str, Any]:
    """A key's spend in its current budget period, per model."""
    s = await meter.spend(key)
    start, end = key.period_bounds(time.time())
    return {
        "id": key.id, "name": key.name, "budget": key.budget, "budget_period": key.budget_period,
        "period_start": _iso(start), "period_end": _iso(end), "spent": round(s.spent, 9),
        "reserved": round(s.reserved, 9),
        "remaining": None if key.budget is None else round(max(0.0, key.budget - s.spent), 9),
        "models": {m: {"requests": v.requests, "prompt_tokens": v.prompt_tokens,
                       "completion_tokens": v.completion_tokens, "cost": round(v.cost, 9)}
                   for m, v in sorted(s.models.items())},
    }
