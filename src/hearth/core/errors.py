"""Errors that cross the backend/dialect boundary.

Each carries the HTTP status and the OpenAI-style type/code, so every dialect can render it in
its own format without knowing where it came from.
"""

from __future__ import annotations


class HearthError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.headers = headers  # more response headers (x-ratelimit-*), beside Retry-After


class BadRequest(HearthError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"


class RequestTimeout(HearthError):
    """The client sent its body too slowly (a dribbling client would otherwise hold a connection forever)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class ModelNotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(HearthError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Overloaded(HearthError):
    """The local engine's wait queue is full: the client should retry later or elsewhere."""

    status = 503
    type = "server_error"
    code = "overloaded"


class NotReady(HearthError):
    status = 503
    type = "server_error"
    code = "model_loading"


class EngineUnavailable(HearthError):
    """The local engine cannot run on this machine (its build crashed the start-up check): not transient."""

    status = 503
    type = "server_error"
    code = "model_unavailable"

    @classmethod
    def of(cls, what: str) -> EngineUnavailable:
        """The tenant's error for `what` ("model 'local'"): no paths or build details, which the operator's log,
        /health and `hearth doctor` have."""
        return cls(f"{what} cannot run on this server: its local engine failed the start-up check (the operator "
                   "can see why in the log or with `hearth doctor`)")


class UpstreamError(HearthError):
    """A remote provider failed (refused, 5xx, broken stream)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class Unauthorized(HearthError):
    """No key, or one that is unknown, revoked or expired (OpenAI's 401 `invalid_api_key`)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(HearthError):
    """A valid key asked for a model outside its allow-list, or an endpoint outside its scopes."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class RateLimited(HearthError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class QuotaExceeded(HearthError):
    """The key's budget for this period cannot cover the request: OpenAI clients read this code as
    "stop retrying", unlike a rate limit."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class KeyStoreUnavailable(HearthError):
    """The shared key store (Redis) cannot be reached: refuse rather than let keyed requests through."""

    status = 503
    type = "server_error"
    code = "key_store_unavailable"
