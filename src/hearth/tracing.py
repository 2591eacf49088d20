"""OpenTelemetry spans for generations and embeddings, following the GenAI semantic conventions.

Optional (`observe.otel: true`, the `otel` extra). A span is written once, when the request has ended,
with its real start time: by then hearth knows which model answered, so the span kind is right from the
start (INTERNAL for the in-process engine and cache hits, CLIENT for a remote provider) and no span is
held open across a stream. A caller's `traceparent` header makes the span a child of the caller's trace.
Where spans go is set the standard way (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hearth.core.pipeline import Stream
from hearth.core.types import ChatRequest

# The conventions' names for what hearth reports.
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


class Tracer:
    def __init__(self, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.propagate import extract

        if provider is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": "hearth"}))
            provider = TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._provider = provider
        self._tracer = provider.get_tracer("hearth")
        self._kind = trace.SpanKind
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        self._extract = extract

    def _span(self, name: str, headers: Mapping[str, str], local: bool, start_ns: int, attrs: dict[str, Any],
              error: str | None) -> None:
        kind = self._kind.INTERNAL if local else self._kind.CLIENT
        span = self._tracer.start_span(name, context=self._extract(dict(headers)), kind=kind, start_time=start_ns,
                                       attributes={k: v for k, v in attrs.items() if v is not None})
        if error:
            span.set_attribute("error.type", error)
            span.set_status(self._status(self._error, error))
        span.end()

    def generation(self, headers: Mapping[str, str], req: ChatRequest, s: Stream, *, local: bool,
                   provider: str, key: str | None) -> None:
        operation = "text_completion" if req.prompt is not None else "chat"
        start = time.time_ns() - int((time.perf_counter() - s.t0) * 1e9)
        sp = req.sampling
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation, "gen_ai.provider.name": provider,
            "gen_ai.request.model": req.model, "gen_ai.response.model": s.served_by,
            "gen_ai.request.max_tokens": sp.max_tokens, "gen_ai.request.temperature": sp.temperature,
            "gen_ai.request.top_p": sp.top_p, "gen_ai.request.seed": sp.seed,
            "gen_ai.request.stop_sequences": list(sp.stop) or None,
            "hearth.time_to_first_token": s.ttft, "hearth.key": key,
        }
        for note in s.notes.values():
            attrs.update(note.span_attributes())
        if s.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = s.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = s.usage.completion_tokens
        if s.finish is not None:
            attrs["gen_ai.response.finish_reasons"] = [_FINISH.get(s.finish.reason, s.finish.reason)]
        error = None if s.status == "ok" else s.status
        self._span(f"{operation} {req.model}", headers, local, start, attrs, error)

    def embeddings(self, headers: Mapping[str, str], model: str, served_by: str, tokens: int, seconds: float, *,
                   local: bool, provider: str, key: str | None) -> None:
        attrs = {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": provider,
                 "gen_ai.request.model": model, "gen_ai.response.model": served_by,
                 "gen_ai.usage.input_tokens": tokens, "hearth.key": key}
        start = time.time_ns() - int(seconds * 1e9)
        self._span(f"embeddings {model}", headers, local, start, attrs, None)

    def close(self) -> None:
        self._provider.shutdown()  # exports what is still batched
