"""The `"hearth": {...}` body extension, typed: every option that selects data or state is validated here.

These options pick a cache namespace, a knowledge base, a conversation's stored turns: they select data, so a
value of the wrong shape must never fall back to a default that another tenant's requests share (a `"cache":
null` once reached the admin's cached answers). Unknown keys are refused with their name, like every other
unknown field. Headers (`x-hearth-*`, `Cache-Control`) are merged in by `api.common.request_options` and go
through the same checks. What a key may *use* (the knowledge base named here, the namespace it is put in) is
decided by the access layer when the request is admitted (`api.gate.open_stream`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hearth.core.errors import BadRequest

# Names that end up in store keys and logs: letters, digits and a few separators, bounded in length.
NAME_PATTERN = r"^[\w.:@+-]{1,128}$"
MAX_CONVERSATION = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CacheOptions(_Strict):
    enabled: bool | None = None
    no_cache: bool | None = None
    no_store: bool | None = None
    ttl: float | int | None = Field(None, gt=0, le=366 * 86400)
    namespace: str | None = Field(None, pattern=NAME_PATTERN)


class RagOptions(_Strict):
    kb: str | None = Field(None, pattern=NAME_PATTERN)
    top_k: int | None = Field(None, ge=1, le=100)
    filter: dict[str, Any] | None = None


class HearthOptions(_Strict):
    cache: CacheOptions | None = None
    rag: RagOptions | None = None
    pace: str | float | int | None = None  # parsed by the speech stage (core.pace.parse_pace), which names it
    segments: bool | str | None = None
    conversation: str | None = Field(None, min_length=1, max_length=MAX_CONVERSATION)

    def extensions(self) -> dict[str, Any]:
        """The options as `ChatRequest.extensions` carries them (absent options left out)."""
        out: dict[str, Any] = {}
        if self.cache is not None:
            out["cache"] = self.cache.model_dump(exclude_none=True)
        if self.rag is not None:
            out["rag"] = self.rag.model_dump(exclude_none=True)
        for k in ("pace", "segments", "conversation"):
            if (v := getattr(self, k)) is not None:
                out[k] = v
        return out


def check_namespace(value: str, param: str = "x-hearth-cache-namespace") -> str:
    """A cache namespace from a header, held to the body option's rule."""
    try:
        CacheOptions(namespace=value)
    except ValueError:
        raise BadRequest(f"{param}: a namespace is 1 to 128 letters, digits or . : @ + - _", param=param) from None
    return value


def options_of(h: HearthOptions | None) -> dict[str, Any]:
    return {} if h is None else h.extensions()
