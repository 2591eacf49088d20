"""The OpenAPI document and a fuzz run over it.

Schemathesis generates requests from the document, valid ones and deliberately invalid ones, for every
operation (model names drawn from those served, output formats left out), and sends them to a real gateway (a remote model that is a real server answering at once, the
local embedding model, a knowledge-base store, the admin API with a real admin key). The bar: no 5xx, ever,
and every 4xx in the error format of its API (OpenAI's object, or Ollama's string).
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from hearth.api.openapi import OPERATIONS, document
from hearth.config import Config
from hearth.server import create_app
from hearth.testing.hub import HubStandIn
from hearth.testing.server import running
from tests.conftest import Server, start_hearth

ADMIN = "hk-admin-for-fuzzing-0123456789abcdef"
EXAMPLES = 40  # per operation and mode, at most (hypothesis stops early where a schema has few distinct values)


def test_the_document_is_valid_openapi_3_1() -> None:
    """A client generator (and a current schemathesis) refuses a document with an undeclared path parameter, as
    `DELETE /admin/adapters/{name}` once was."""
    from openapi_spec_validator import validate

    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_documented() -> None:
    from hearth.api import gate

    app = create_app(Config())
    routes = {(r.method, r.resource.canonical) for r in app[gate.GUARDS] if r.resource is not None}  # type: ignore[union-attr]
    left_out = {("*", "/{tail}"), ("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/{path}")}
    assert routes - left_out == set(OPERATIONS)
    doc = document()
    assert doc["openapi"] == "3.1.0" and len(doc["paths"]) == len({p for _, p in OPERATIONS})
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionBody"}
    assert "OpenAIMessage" in doc["components"]["schemas"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, bad: Server) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = (f"keys: {{path: {tmp / 'keys.db'}}}\nrag: {{path: {tmp / 'rag'}}}\nlocal: {{models_dir: {tmp / 'm'}}}\n"
           f"models:\n  m: {{kind: openai, base_url: '{bad.url}/ok/v1', model: gpt}}\n")
    with running(HubStandIn({}).app) as hub:  # an empty Hub: every pull the fuzzer makes up is a clean 404
        server = start_hearth(cfg, tmp, "fuzz", env={"HEARTH_ADMIN_KEY": ADMIN, "HF_ENDPOINT": hub})
        yield server
        server.stop()


def _error_format(path: str, raw: bytes) -> str | None:
    """None when the body is the API's error format, else what is wrong with it."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return f"not JSON: {raw[:200]!r}"
    if path.startswith("/api/"):
        ok = isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    else:
        err = body.get("error") if isinstance(body, dict) else None
        ok = isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("type"), str)
    return None if ok else f"not the API's error format: {body!r:.300}"


def test_fuzz_no_server_errors(gw: Server) -> None:
    with urllib.request.urlopen(gw.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    # Model names drawn from what is served (and one that is not), so that valid requests reach the chat and
    # embedding paths instead of stopping at 404.
    for name, component in doc["components"]["schemas"].items():
        # The stand-in provider answers one fixed sentence: a requested JSON format cannot be met, and the
        # gateway rightly answers 502 after its repair attempts (tests/structured covers those paths).
        for field in ("format", "response_format"):
            component.get("properties", {}).pop(field, None)
        if "model" in component.get("properties", {}):
            served = "all-minilm" if "Embed" in name else "m"  # m, a real chat server, embeds nothing (502)
            component["properties"]["model"] = {"type": "string", "enum": [served, "nope"]}
    schema = schemathesis.openapi.from_dict(doc)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                resp = case.call(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
                statuses[resp.status_code] += 1
                where = f"{case.method} {case.formatted_path} -> {resp.status_code}"
                if resp.status_code >= 500:
                    problems.append(f"{where}: {resp.content[:300]!r}; body {str(case.body)[:300]}")
                elif resp.status_code >= 400 and (why := _error_format(case.formatted_path, resp.content)):
                    problems.append(f"{where}: {why}")

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (a GET without parameters): positive cases cover it
                assert mode == GenerationMode.NEGATIVE
    total = sum(statuses.values())
    assert not problems, f"{len(problems)} of {total} requests:\n" + "\n".join(problems[:20])
    assert total >= 1000, statuses
    print(f"{total} generated requests, statuses {dict(sorted(statuses.items()))}")
