"""API keys: what a key may do, how it is written down, and how a presented secret is recognised.

A secret is 32 random bytes (`hk-` + base64url); only its SHA-256 is stored. A plain hash (no salt,
no slow KDF) is right for random secrets of that length: nothing can be guessed from it, and the
lookup on every request stays one dict access. The records hold no secret, so they may be listed,
logged and copied between stores freely.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hearth.core.errors import BadRequest

Scope = Literal["chat", "embeddings", "rag:read", "rag:write", "admin"]
SCOPES: tuple[Scope, ...] = ("chat", "embeddings", "rag:read", "rag:write", "admin")
DEFAULT_SCOPES: tuple[Scope, ...] = ("chat", "embeddings", "rag:read")
SECRET_PREFIX = "hk-"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")


def parse_duration(text: str, what: str) -> float:
    """`30d`, `12h`, `90m`, `1w` -> seconds."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise BadRequest(f"{what}: {text!r} is not a duration like 30d, 12h, 90m or 1w", param=what)
    return float(m.group(1)) * _UNITS[m.group(2)]


_LAST_EXPIRY = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def parse_expiry(value: str | float | None, now: float) -> float | None:
    """An expiry as a duration from now (`30d`), an ISO date or time (`2027-01-31`), or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif _DURATION.match(value):
        out = now + parse_duration(value, "expires")
    else:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            why = f"expires: {value!r} is neither a duration (30d) nor an ISO date"
            raise BadRequest(why, param="expires") from None
        out = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    # Listings print it as a date: a time before 1970 or after 9999 would break every listing, not just this key.
    if not 0 <= out <= _LAST_EXPIRY:
        raise BadRequest(f"expires: {value!r} is outside 1970..9999", param="expires")
    return out


def new_secret() -> str:
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeySpec(BaseModel):
    """The fields of `POST /admin/keys` and `hearth keys create`; for updates, the fields sent are changed.

    None means "no limit" for rpm, tpm, max_parallel and budget.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=lambda: ["*"], description="names or glob patterns; rag:<kb> too")
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="prompt + completion tokens per minute")
    max_parallel: int | None = Field(None, ge=1, description="requests in flight at once")
    budget: float | None = Field(None, ge=0, description="spend allowed per budget_period, in the price table's unit")
    budget_period: str | None = Field(None, description="30d, 7d, 24h...; none: the budget is for the key's life")
    expires: str | float | None = Field(None, description="30d from now, an ISO date, or epoch seconds")
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES))

    @field_validator("budget_period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_duration(v, "budget_period")
            except BadRequest as e:
                raise ValueError(e.message) from None
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        if not v or any(not m.strip() for m in v):
            raise ValueError('list at least one model name or pattern ("*" for all)')
        return v


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key. `period` is the budget period in seconds (0: the key's whole life), counted from
    `created`, so every replica computes the same period boundaries without talking to the others."""

    id: str
    name: str
    hash: str
    prefix: str  # the first characters of the secret, to tell keys apart in listings
    created: float
    models: tuple[str, ...] = ("*",)
    scopes: frozenset[str] = frozenset(DEFAULT_SCOPES)
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget: float | None = None
    budget_period: str | None = None
    expires: float | None = None
    revoked: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields a newer hearth wrote; kept, not interpreted

    @property
    def period(self) -> float:
        return parse_duration(self.budget_period, "budget_period") if self.budget_period else 0.0

    def period_index(self, now: float) -> int:
        return int((now - self.created) // self.period) if self.period else 0

    def period_bounds(self, now: float) -> tuple[float, float | None]:
        if not self.period:
            return self.created, None
        start = self.created + self.period_index(now) * self.period
        return start, start + self.period

    def refusal(self, now: float) -> str | None:
        """Why this key cannot be used now, or None."""
        if self.revoked is not None:
            return "this API key has been revoked"
        if self.expires is not None and now >= self.expires:
            return "this API key has expired"
        return None

    def allows(self, names: Iterable[str]) -> bool:
        """Whether any of the names a model goes by (as asked, canonical) matches the allow-list."""
        return any(fnmatchcase(n, p) for n in names for p in self.models)

    def public(self) -> dict[str, Any]:
        """The record as the admin API and the CLI show it: everything but the hash."""
        d = asdict(self)
        d.pop("hash")
        d.pop("extra")
        d["models"], d["scopes"] = list(self.models), sorted(self.scopes)
        for k in ("created", "expires", "revoked"):
            if d[k] is not None:
                d[k] = datetime.fromtimestamp(d[k], UTC).isoformat(timespec="seconds")
        return d

    def to_record(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"], d["scopes"] = list(self.models), sorted(self.scopes)
        extra = d.pop("extra")
        return {**extra, **d}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> ApiKey:
        known = set(cls.__dataclass_fields__) - {"extra"}
        fields = {k: v for k, v in d.items() if k in known}
        fields["models"] = tuple(fields.get("models") or ("*",))
        fields["scopes"] = frozenset(fields.get("scopes") or DEFAULT_SCOPES)
        return cls(**fields, extra={k: v for k, v in d.items() if k not in known})


def mint(spec: KeySpec, now: float | None = None) -> tuple[ApiKey, str]:
    """A new key from its spec: the record to store, and the secret to show once."""
    now = time.time() if now is None else now
    secret = new_secret()
    key = ApiKey(
        id="key_" + secrets.token_hex(6), name=spec.name, hash=hash_secret(secret), prefix=secret[:7], created=now,
        models=tuple(spec.models), scopes=frozenset(spec.scopes), rpm=spec.rpm, tpm=spec.tpm,
        max_parallel=spec.max_parallel, budget=spec.budget, budget_period=spec.budget_period,
        expires=parse_expiry(spec.expires, now),
    )
    return key, secret


def amend(key: ApiKey, changes: dict[str, Any], now: float | None = None) -> ApiKey:
    """The key with `changes` (KeySpec fields, validated here) applied; the secret stays the same."""
    now = time.time() if now is None else now
    unknown = set(changes) - set(KeySpec.model_fields)
    if unknown:
        raise BadRequest(f"unknown key field(s): {', '.join(sorted(unknown))}")
    merged = {**{k: v for k, v in key.public().items() if k in KeySpec.model_fields}, **changes}
    merged["expires"] = changes.get("expires", key.expires)
    spec = KeySpec.model_validate(merged)
    return replace(
        key, name=spec.name, models=tuple(spec.models), scopes=frozenset(spec.scopes), rpm=spec.rpm, tpm=spec.tpm,
        max_parallel=spec.max_parallel, budget=spec.budget, budget_period=spec.budget_period,
        expires=parse_expiry(spec.expires, now),
    )
