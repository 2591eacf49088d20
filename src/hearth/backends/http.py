"""What every remote backend shares: one pooled aiohttp session per provider, timeouts, and the
mapping of transport failures to errors that name the provider.

Timeouts: `connect` bounds opening a connection; `first_token` bounds the wait for the first byte
of the answer and also any silence mid-stream (a stalled stream fails instead of hanging); `total`
bounds the whole response.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from hearth.config import OllamaModel, OpenAIModel
from hearth.core.errors import BadRequest, ContextLengthExceeded, HearthError, UpstreamError, UpstreamTimeout
from hearth.core.types import ModelInfo


class HttpProvider:
    def __init__(self, name: str, cfg: OpenAIModel | OllamaModel) -> None:
        self.name = name
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.upstream_model = cfg.model or name
        self._session: aiohttp.ClientSession | None = None
        t = cfg.timeouts
        self.timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)
        self.headers = {"Content-Type": "application/json", **cfg.headers}
        if cfg.api_key_env and os.environ.get(cfg.api_key_env):
            self.headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # keep-alive shorter than common upstream idle timeouts would be wasteful; longer risks reusing
            # sockets the server already closed, which aiohttp retries once for idempotent requests only.
            conn = aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=conn,
                timeout=self.timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def where(self) -> str:
        return f"provider {self.name!r} ({self.base_url})"

    @asynccontextmanager
    async def post(self, path: str, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield a 200 response; any failure becomes a HearthError naming the provider."""
        url = self.base_url + path
        try:
            async with self.session.post(url, data=orjson.dumps(body), headers=self.headers) as resp:
                if resp.status >= 400:
                    raise await self._http_error(resp)
                yield resp
        except HearthError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(f"{self.where()} timed out ({e or 'no answer in time'})") from e
        except aiohttp.ClientConnectorError as e:
            raise UpstreamError(f"{self.where()} is unreachable: {e.os_error or e}") from e
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            raise UpstreamError(f"{self.where()} broke the connection: {e}") from e
        except aiohttp.ClientError as e:
            raise UpstreamError(f"{self.where()} failed: {e}") from e

    async def get_json(self, path: str) -> Any:
        try:
            async with self.session.get(self.base_url + path, headers=self.headers) as resp:
                if resp.status >= 400:
                    raise await self._http_error(resp)
                return orjson.loads(await resp.read())
        except HearthError:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise UpstreamError(f"{self.where()} failed: {e}") from e

    async def _http_error(self, resp: aiohttp.ClientResponse) -> HearthError:
        try:
            raw = await resp.content.read(64 * 1024)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        message, code = _error_text(raw)
        text = f"{self.where()} answered {resp.status}: {message or resp.reason}"
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        if code == "context_length_exceeded":
            return ContextLengthExceeded(text)
        if resp.status in (401, 403):
            # The client cannot fix the gateway's credentials: this is a gateway-side failure.
            return UpstreamError(text, code="upstream_auth_failed")
        if resp.status == 429:
            return UpstreamError(text, status=429, code="rate_limited", retry_after=retry_after)
        if 400 <= resp.status < 500:
            return BadRequest(text, status=resp.status, code=code or "upstream_rejected")
        return UpstreamError(text, retry_after=retry_after)


class RemoteBackend:
    """What the remote backends share: a pooled provider connection and a model description; they differ
    only in the wire format of `stream`."""

    kind = "remote"

    def __init__(self, name: str, cfg: OpenAIModel | OllamaModel) -> None:
        self.name = name
        self.cfg = cfg
        self.http = HttpProvider(name, cfg)

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.http.close()

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, backend=self.kind, owned_by=self.http.base_url,
            context_length=self.cfg.context_length, extra={"upstream_model": self.http.upstream_model},
        )  # fmt: skip


def _error_text(raw: bytes) -> tuple[str, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace").strip(), None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:1000], (str(err["code"]) if err.get("code") else None)
        return str(err)[:1000], None
    return str(data)[:1000], None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
