"""OpenTelemetry spans: GenAI attributes and span kinds in-process, and a real OTLP/HTTP export from a
running hearth to a collector endpoint served on loopback."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hearth.access import open_access
from hearth.assemble import assemble
from hearth.config import load_config
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running
from hearth.tracing import Tracer
from tests.conftest import Server, start_hearth

CONFIG = """
models:
  remote:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt
  here:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: small
keys:
  path: {db}
"""
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_spans_carry_gen_ai_attributes_and_the_callers_trace(tmp_path: Path) -> None:
    cfg_file = tmp_path / "h.yaml"
    cfg_file.write_text(CONFIG.format(db=tmp_path / "keys.db"))
    cfg = load_config(cfg_file, {})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    answer = Reply("one two", usage=(5, 2))

    def make() -> web.Application:
        leaves = {"remote": FunctionBackend("remote", lambda r: answer),
                  "here": FunctionBackend("here", lambda r: answer, local=True)}
        assembly = assemble(cfg, leaves=leaves)
        return create_app(cfg, assembly, open_access(cfg, env={}), Tracer(provider))

    with running(make) as url:
        msg = [{"role": "user", "content": "hi"}]
        _post(url + "/v1/chat/completions", {"model": "remote", "messages": msg, "max_tokens": 7, "temperature": 0.5},
              {"traceparent": PARENT})
        _post(url + "/api/generate", {"model": "here", "prompt": "hi", "stream": False, "raw": True})
    remote, local = exporter.get_finished_spans()
    assert remote.name == "chat remote" and remote.kind == SpanKind.CLIENT
    assert remote.context.trace_id == int(PARENT.split("-")[1], 16)
    assert remote.parent is not None and remote.parent.span_id == int("b7ad6b7169203331", 16)
    a = remote.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "remote"
    assert a["gen_ai.response.model"] == "remote" and a["gen_ai.request.max_tokens"] == 7
    assert a["gen_ai.request.temperature"] == 0.5 and tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 2)
    assert local.name == "text_completion here" and local.kind == SpanKind.INTERNAL
    assert local.attributes["gen_ai.provider.name"] == "llama.cpp"
    assert remote.end_time - remote.start_time > 0


def test_a_running_hearth_exports_spans_over_otlp(tmp_session: Path, bad: Server) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        received.append(msg)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def collector() -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", collect)
        return app

    with running(collector) as otlp:
        config = f"""
models:
  paid:
    kind: openai
    base_url: {bad.url}/ok/v1
    model: gpt
observe:
  otel: true
keys:
  path: {tmp_session / "otel-keys.db"}
"""
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "hearth-t"}
        s = start_hearth(config, tmp_session, "otel", env=env)
        try:
            _post(s.url + "/v1/chat/completions", {"model": "paid", "messages": [{"role": "user", "content": "hi"}]})
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            s.stop()
    spans = [(rs, sp) for m in received for rs in m.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    assert spans, "no span reached the collector"
    resource, span = spans[0]
    assert span.name == "chat paid" and span.kind == span.SPAN_KIND_CLIENT
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["gen_ai.usage.output_tokens"].int_value == 4
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}["service.name"]
    assert service == "hearth-t"
