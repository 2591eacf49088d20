"""When a router moves on to the next backend: named predicates, chosen per router (`fallback_on`).

Failure criteria look at an exception: errors another backend may not share. A request that is itself
wrong (400, 404, 413, 422) fails everywhere, so no criterion matches it. Answer criteria look at what a
backend produced before the router committed to it: an empty answer, or a JSON-mode answer that does
not parse; the router reads ahead only as far as the criterion needs (the first word for `empty`, the
whole answer for `invalid_json`), so with neither configured nothing is buffered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from hearth.core.collect import Collected
from hearth.core.errors import ContextLengthExceeded, HearthError, NotReady, Overloaded, UpstreamError, UpstreamTimeout
from hearth.core.types import ChatRequest

FailurePredicate = Callable[[BaseException], bool]


def _timeout(e: BaseException) -> bool:
    return isinstance(e, (UpstreamTimeout, TimeoutError))


def _rate_limit(e: BaseException) -> bool:
    return isinstance(e, UpstreamError) and e.status == 429


def _upstream(e: BaseException) -> bool:
    return isinstance(e, UpstreamError) and not _timeout(e) and not _rate_limit(e)


def _overloaded(e: BaseException) -> bool:
    return isinstance(e, (Overloaded, NotReady)) or (
        isinstance(e, HearthError) and not isinstance(e, UpstreamError) and e.status == 503
    )


def _connection(e: BaseException) -> bool:
    return isinstance(e, (OSError, StopAsyncIteration)) and not isinstance(e, TimeoutError)


def _server_error(e: BaseException) -> bool:
    return isinstance(e, HearthError) and not isinstance(e, UpstreamError) and e.status >= 500 and e.status != 503


FAILURES: dict[str, FailurePredicate] = {
    "upstream": _upstream,  # the provider answered 5xx, refused our credentials, or sent garbage
    "timeout": _timeout,
    "rate_limit": _rate_limit,
    "overloaded": _overloaded,  # the local engine's queue or KV cache is full, or it is still loading
    "connection": _connection,
    "server_error": _server_error,  # a backend of ours failed (a local engine error)
    "context_length": lambda e: isinstance(e, ContextLengthExceeded),  # the next model may have a longer one
}
ANSWERS = ("empty", "invalid_json")


class Criteria:
    """The predicates of one router, compiled from its `fallback_on` list."""

    def __init__(self, names: Iterable[str]) -> None:
        names = list(names)
        unknown = [n for n in names if n not in FAILURES and n not in ANSWERS]
        if unknown:
            raise ValueError(f"unknown fallback criteria: {', '.join(unknown)}")
        self.failures = [FAILURES[n] for n in names if n in FAILURES]
        self.empty = "empty" in names
        self.invalid_json = "invalid_json" in names

    def failure_moves_on(self, e: BaseException) -> bool:
        return any(p(e) for p in self.failures)

    def reads_ahead(self, request: ChatRequest) -> bool:
        """Whether the router must look at the answer before committing to it."""
        return self.empty or (self.invalid_json and _wants_json(request))

    def whole_answer(self, request: ChatRequest) -> bool:
        return self.invalid_json and _wants_json(request)

    def rejects(self, request: ChatRequest, answer: Collected, complete: bool) -> str | None:
        """Why the answer seen so far is not acceptable, or None. `complete`: the stream has ended."""
        if self.empty and complete and not answer.text.strip() and not answer.tool_calls:
            return "empty answer"
        if self.invalid_json and complete and _wants_json(request) and not answer.tool_calls:
            try:
                json.loads(answer.text)
            except ValueError:
                return "answer is not valid JSON" + (" (cut off at max_tokens)" if answer.reason == "length" else "")
        return None

    @staticmethod
    def has_content(answer: Collected) -> bool:
        """An answer that has begun: visible text or a tool call (enough for `empty`)."""
        return bool(answer.tool_calls) or bool(answer.text.strip())


def _wants_json(request: ChatRequest) -> bool:
    rf = request.response_format
    return rf is not None and rf.get("type") in ("json_object", "json_schema") and not request.tools
