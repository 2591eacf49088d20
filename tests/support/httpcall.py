"""Plain HTTP for tests that need status codes and raw bodies (the SDKs hide both)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(url: str, body: bytes | dict[str, Any] | None = None, *, method: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, Any]:
    """Returns (status, parsed JSON body); a body that is not JSON comes back as text."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")
