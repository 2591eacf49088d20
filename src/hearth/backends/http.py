"""What every remote backend shares: one transport per provider (pooled HTTP/1.1 connections unless
another is injected), and the mapping of failures to errors that name the provider.

Timeouts (enforced by the transport): `connect` bounds opening a connection; `first_token` bounds the
wait for the first byte of the answer and also any silence mid-stream (a stalled stream fails instead
of hanging); `total` bounds the whole response.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from hearth.backends.http1 import Http1Transport
from hearth.backends.transport import (
    ConnectFailed,
    ConnectionBroken,
    Response,
    Transport,
    TransportError,
    TransportTimeout,
)
from hearth.config import RemoteModel
from hearth.core.errors import BadRequest, ContextLengthExceeded, HearthError, UpstreamError, UpstreamTimeout
from hearth.core.types import LocalEngine, ModelInfo

log = logging.getLogger("hearth.providers")


class HttpProvider:
    """One provider's endpoint: sends JSON, hands back successful replies, and turns everything else
    (HTTP error statuses, transport failures, also those raised while the caller reads a stream) into
    a HearthError that names the provider."""

    def __init__(self, name: str, cfg: RemoteModel, transport: Transport | None = None, *,
                 key_header: tuple[str, str] = ("Authorization", "Bearer ")) -> None:
        self.name = name
        self.cfg = cfg
        parts = urlsplit(cfg.base_url.rstrip("/"))
        # Credentials in the address (a proxy's user:password@) travel as a Basic Authorization header, and the
        # address hearth keeps, logs and shows has none.
        self.base_url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.safe_url = safe_url(self.base_url)
        self.upstream_model = cfg.model or name
        t = cfg.timeouts
        self.transport = transport or Http1Transport(connect=t.connect, read=t.first_token, total=t.total)
        self.headers = {"Content-Type": "application/json", **cfg.headers}
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(user_pass).decode()
        if cfg.api_key_env and os.environ.get(cfg.api_key_env):
            header, prefix = key_header  # the API key wins
            self.headers[header] = prefix + os.environ[cfg.api_key_env]

    async def close(self) -> None:
        await self.transport.close()

    def where(self) -> str:
        """How errors name the provider to tenants: its name, never its address (which may carry credentials)."""
        return f"provider {self.name!r}"

    def fail(self, what: str, detail: object = "", cls: type[HearthError] = UpstreamError, **kw: Any) -> HearthError:
        """The error a tenant sees (the provider's name and what went wrong); the details (the provider's own
        words, which may echo the key hearth sent, and its address without credentials) go to the operator's log."""
        log.warning("provider %r (%s) %s%s", self.name, self.safe_url, what, f": {detail}" if detail != "" else "")
        return cls(f"{self.where()} {what}", **kw)

    def post(self, path: str, body: dict[str, Any]) -> AbstractAsyncContextManager[Response]:
        """POST and yield a 200 response; any failure, including one while the caller reads the body
        inside the `async with`, becomes a HearthError naming the provider."""
        return _Post(self, self.transport.post(self.base_url + path, orjson.dumps(body), self.headers))

    def failed(self, e: BaseException) -> HearthError | None:
        """A transport's failure in the provider's words; None for anything else (which is raised as it is)."""
        if isinstance(e, (TransportTimeout, TimeoutError)):
            return self.fail("timed out", str(e) or "no answer in time", UpstreamTimeout)
        if isinstance(e, ConnectFailed):
            return self.fail("is unreachable", e.reason)
        if isinstance(e, ConnectionBroken):
            return self.fail("broke the connection", e)
        if isinstance(e, TransportError):
            return self.fail("failed", e)
        return None

    async def get_json(self, path: str) -> Any:
        try:
            async with self.transport.get(self.base_url + path, self.headers) as resp:
                if resp.status >= 400:
                    raise await self._http_error(resp)
                return orjson.loads(await resp.read())
        except HearthError:
            raise
        except (TransportError, TimeoutError, ValueError) as e:
            raise self.fail("failed", e) from e

    async def _http_error(self, resp: Response) -> HearthError:
        try:
            raw = await resp.read(64 * 1024)
        except (TransportError, TimeoutError):
            raw = b""
        message, code = _error_text(raw)
        detail = message or resp.reason
        said = f"answered {resp.status}" + (f" ({code})" if code else "")  # the upstream's code, not its words
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        if code == "context_length_exceeded":
            return self.fail("answered that the prompt is longer than the model's context", detail,
                             ContextLengthExceeded)
        if resp.status in (401, 403):
            # The client cannot fix the gateway's credentials: this is a gateway-side failure.
            return self.fail(f"refused the gateway's credentials ({resp.status})", detail, code="upstream_auth_failed")
        if resp.status == 429:
            return self.fail(said, detail, status=429, code="rate_limited", retry_after=retry_after)
        if 400 <= resp.status < 500:
            return self.fail(said, detail, BadRequest, status=resp.status, code=code or "upstream_rejected")
        return self.fail(said, detail, retry_after=retry_after)


class _Post:
    """`HttpProvider.post`'s `async with` (a class, not a generator: this runs on every proxied request)."""

    __slots__ = ("exchange", "provider")

    def __init__(self, provider: HttpProvider, exchange: AbstractAsyncContextManager[Response]) -> None:
        self.provider, self.exchange = provider, exchange

    async def __aenter__(self) -> Response:
        try:
            resp = await self.exchange.__aenter__()
        except Exception as e:
            if (err := self.provider.failed(e)) is None:
                raise
            raise err from e
        if resp.status >= 400:
            err = await self.provider._http_error(resp)
            await self.exchange.__aexit__(type(err), err, None)
            raise err
        return resp

    async def __aexit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        try:
            await self.exchange.__aexit__(kind, e, tb)
        except Exception as late:
            if (err := self.provider.failed(late)) is None:
                raise
            raise err from late
        if e is not None and not isinstance(e, HearthError) and (err := self.provider.failed(e)) is not None:
            raise err from e


class RemoteBackend:
    """What the remote backends share: a pooled provider connection and a model description; they differ
    only in the wire format of `stream` and `embed`, and in the path of their model list.

    `transport` replaces the network (`hearth.testing.MockTransport` in tests); by default each backend
    pools its own HTTP/1.1 connections (`backends/http1.py`).
    """

    kind: ClassVar[str]  # ModelInfo.kind: "openai", "ollama", a plugin's kind
    # How the provider takes its API key: a header and what precedes the key in it.
    key_header: ClassVar[tuple[str, str]] = ("Authorization", "Bearer ")

    def __init__(self, name: str, cfg: RemoteModel, *, transport: Transport | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.http = HttpProvider(name, cfg, transport, key_header=self.key_header)
        # The upstream's context window, where its model list tells (vLLM, llama.cpp's server): what RAG fits its
        # sources into when the config gives no context_length.
        self.discovered_context: int | None = None

    @property
    def ready(self) -> bool:
        return True

    @property
    def unavailable(self) -> str | None:
        return None  # a remote provider is never refused by this machine's engine check

    @property
    def local(self) -> LocalEngine | None:
        return None

    async def list_models(self) -> list[str]:
        """The provider's model names (the router's health loop and `check_health` call it)."""
        raise NotImplementedError

    async def check_health(self) -> None:
        """Lists the provider's models: free on every provider, and it raises the UpstreamError a
        completion would get when the provider is down, unreachable or refuses the key."""
        await self.list_models()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.http.close()

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, kind=self.kind, owned_by=self.kind,  # tenants see a provider's kind, not its address
            context_length=self.cfg.context_length or self.discovered_context,
            extra={"upstream_model": self.http.upstream_model},
        )


def safe_url(url: str) -> str:
    """An address for logs: without the user and password it may carry, and without its query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_CODE = re.compile(r"^[\w.-]{1,64}$")


def _error_text(raw: bytes) -> tuple[str, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace").strip(), None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("type") or "")
            return str(err.get("message") or err)[:1000], (code if _CODE.match(code) else None)
        return str(err)[:1000], None
    return str(data)[:1000], None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
