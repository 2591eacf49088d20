"""A fuzz profile for hearth's own extension fields, which the OpenAPI fuzzing (tests/api/test_openapi.py) sees
only as an open object: `"hearth": {...}` in both APIs' bodies and the `x-hearth-*` headers, with every kind of
JSON value in every known option and unknown ones beside them. Whatever arrives, the answer is a 200 or a 4xx
in the API's own error format, never a 5xx (tests/security/test_data_access.py checks what the accepted values
may reach)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import Gateway, call

pytestmark = pytest.mark.model

OPTIONS = ["cache", "rag", "pace", "segments", "conversation"]
SUBKEYS = ["enabled", "no_cache", "no_store", "ttl", "namespace", "kb", "top_k", "filter"]
HEADERS = ["x-hearth-pace", "x-hearth-segments", "x-hearth-cache-namespace", "x-hearth-conversation-id",
           "x-conversation-id", "Cache-Control"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["", "speech", "none", "kb2", "../x", "a" * 300, "1e9", "-1"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(SUBKEYS), st.text(max_size=8)), inner, max_size=4)), max_leaves=8)
extensions = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(OPTIONS), st.text(max_size=8)), values, max_size=4), values)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
headers = st.dictionaries(st.sampled_from(HEADERS), header_values, max_size=3)


def _error_shaped(api: str, body: Any) -> bool:
    if api == "ollama":
        return isinstance(body, dict) and isinstance(body.get("error"), str)
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "message" in body["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ext=extensions, hdrs=headers, api=st.sampled_from(["openai", "ollama"]))
def test_extension_fields_never_break_the_gateway(gw: Gateway, ext: Any, hdrs: dict[str, str], api: str) -> None:
    key = gw.key("fuzzer", models=["smol"], scopes=["chat"])
    messages = [{"role": "user", "content": "Say one word."}]
    if api == "openai":
        path, body = "/v1/chat/completions", {"model": "smol", "messages": messages, "max_tokens": 1, "hearth": ext}
    else:
        path = "/api/chat"
        body = {"model": "smol", "messages": messages, "stream": False, "options": {"num_predict": 1}, "hearth": ext}
    r = call(gw.url, "POST", path, json.dumps(body).encode(), key, headers=hdrs)
    assert r.status < 500, (ext, hdrs, r.body)
    if r.status >= 400:
        assert r.status in (400, 403, 404, 429) and _error_shaped(api, r.body), (ext, hdrs, r.status, r.body)
