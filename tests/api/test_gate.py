"""Keys, scopes, limits and budgets at the API edge, with the real `openai` and `ollama` clients against a
gateway served on a loopback port; the models are scripted doubles, so each case takes milliseconds."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from hearth.access import open_access
from hearth.assemble import assemble
from hearth.config import load_config
from hearth.core.errors import UpstreamError
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running

ADMIN = "adm-secret-for-tests-0123456789abcdef"

CONFIG = """
models:
  paid:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt
  free:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    model: small
  auto:
    kind: router
    default: free
    fallbacks: {free: [paid]}
    health_interval: null
prices:
  paid: {input: 0, output: 1000000}   # 1 per completion token
keys:
  path: KEYS_DB
"""


def _answer(req: Any) -> Reply | Exception:
    text = req.messages[-1].content if req.messages else ""
    if "break" in text:
        return Reply("one two three four", error_after=2, error=UpstreamError("provider hung up"))
    return Reply("a b c d", usage=(3, 4))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    cfg_file = tmp_path / "hearth.yaml"
    cfg_file.write_text(CONFIG.replace("KEYS_DB", str(tmp_path / "keys.db")))
    cfg = load_config(cfg_file, {})

    def make() -> Any:
        leaves = {"paid": FunctionBackend("paid", _answer), "free": FunctionBackend("free", _answer)}
        assembly = assemble(cfg, leaves=leaves)
        return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={"HEARTH_ADMIN_KEY": ADMIN}))

    with running(make) as url:
        yield url


def call(url: str, method: str, path: str, body: Any = None, key: str | None = ADMIN,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw, status, h = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, h = e.read(), e.code, dict(e.headers)
    try:
        return status, h, json.loads(raw)
    except ValueError:
        return status, h, raw.decode()


def new_key(url: str, **fields: Any) -> tuple[str, str]:
    status, _, body = call(url, "POST", "/admin/keys", {"name": "app", **fields})
    assert status == 200, body
    return body["key"], body["id"]


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def chat(c: openai.OpenAI, model: str = "paid", text: str = "hi", **kw: Any) -> Any:
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def test_requests_without_a_valid_key_get_401_in_each_api(gateway: str) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        chat(client(gateway, "hk-not-a-key"))
    assert e.value.code == "invalid_api_key" and "hk-not-a-key" not in str(e.value)
    status, _, body = call(gateway, "POST", "/v1/chat/completions", {"model": "paid", "messages": []}, key=None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and "Bearer" in body["error"]["message"]
    with pytest.raises(ollama.ResponseError) as oe:
        ollama.Client(host=gateway).chat(model="paid", messages=[{"role": "user", "content": "hi"}])
    assert oe.value.status_code == 401 and "API key" in oe.value.error
    assert call(gateway, "GET", "/health", key=None)[0] == 200  # load balancers need no key
    assert call(gateway, "GET", "/metrics", key=None)[0] == 401


def test_a_key_works_in_both_apis_and_sees_only_its_models(gateway: str) -> None:
    key, _ = new_key(gateway, models=["paid", "auto"])
    assert chat(client(gateway, key)).choices[0].message.content == "a b c d"
    assert sorted(m.id for m in client(gateway, key).models.list()) == ["auto", "paid"]
    oc = ollama.Client(host=gateway, headers={"Authorization": f"Bearer {key}"})
    assert oc.chat(model="auto", messages=[{"role": "user", "content": "hi"}]).message.content == "a b c d"
    assert sorted(m.model for m in oc.list().models) == ["auto", "paid"]
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat(client(gateway, key), model="free")
    assert e.value.code == "model_not_allowed" and "free" in e.value.message
    with pytest.raises(ollama.ResponseError) as oe:
        oc.chat(model="free", messages=[{"role": "user", "content": "hi"}])
    assert oe.value.status_code == 403


def test_scopes_guard_endpoints(gateway: str) -> None:
    key, _ = new_key(gateway, scopes=["chat"])
    with pytest.raises(openai.PermissionDeniedError, match="embeddings"):
        client(gateway, key).embeddings.create(model="all-minilm", input="hi")
    status, _, body = call(gateway, "GET", "/admin/keys", key=key)
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    assert call(gateway, "DELETE", "/v1/rag/docs", key=key)[0] == 403
    admin_key, _ = new_key(gateway, scopes=["admin"])
    assert call(gateway, "GET", "/admin/keys", key=admin_key)[0] == 200


def test_revoked_and_expired_keys_are_refused(gateway: str) -> None:
    key, kid = new_key(gateway)
    assert chat(client(gateway, key)).choices
    status, _, body = call(gateway, "DELETE", f"/admin/keys/{kid}")
    assert status == 200 and body["revoked"]
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(client(gateway, key))
    old, _ = new_key(gateway, expires="2020-01-01")
    with pytest.raises(openai.AuthenticationError, match="expired"):
        chat(client(gateway, old))


def test_rate_limits_answer_429_with_openai_headers(gateway: str) -> None:
    key, _ = new_key(gateway, rpm=2, tpm=100000)
    c = client(gateway, key)
    raw = c.chat.completions.with_raw_response.create(model="free", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-ratelimit-limit-requests"] == "2" and raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000" and raw.headers["x-ratelimit-reset-requests"]
    chat(c, model="free")
    with pytest.raises(openai.RateLimitError) as e:
        chat(c, model="free")
    assert e.value.code == "rate_limit_exceeded" and 0 < int(e.value.response.headers["Retry-After"]) <= 60
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(ollama.ResponseError) as oe:
        ollama.Client(host=gateway, headers={"Authorization": key}).generate(model="free", prompt="hi")
    assert oe.value.status_code == 429 and "requests per minute" in oe.value.error


def test_budget_refusal_is_insufficient_quota_and_spend_is_reported(gateway: str) -> None:
    key, kid = new_key(gateway, budget=10, models=["paid", "free"])
    c = client(gateway, key)
    chat(c, max_tokens=4)  # reserves 4, costs 4
    chat(c, max_tokens=4)
    with pytest.raises(openai.RateLimitError) as e:
        chat(c, max_tokens=4)  # 8 spent + 4 reserved > 10
    assert e.value.code == "insufficient_quota" and e.value.type == "insufficient_quota"
    assert chat(c, model="free").choices  # an unpriced model still answers
    status, _, body = call(gateway, "GET", f"/admin/spend?key={kid}")
    row = body["data"][0]
    assert status == 200 and row["spent"] == 8 and row["remaining"] == 2 and row["reserved"] == 0
    assert row["models"]["paid"] == {"requests": 2, "prompt_tokens": 6, "completion_tokens": 8, "cost": 8}
    assert row["models"]["free"]["cost"] == 0
    metrics = call(gateway, "GET", "/metrics")[2]
    assert 'hearth_spend_total{key="app",model="paid"} 8' in metrics
    assert 'hearth_limit_rejections_total{key="app",reason="budget"} 1' in metrics
    assert 'hearth_budget_used_ratio{key="app"} 0.8' in metrics


def test_a_budgeted_request_without_max_tokens_gets_the_cap(gateway: str) -> None:
    key, _ = new_key(gateway, budget=10000)
    c = client(gateway, key)
    assert chat(c).choices  # reserved at the 4096-token default cap, settled at 4
    body = call(gateway, "GET", "/admin/spend")[2]
    assert [r["spent"] for r in body["data"] if r["name"] == "app"] == [4]


def test_a_broken_stream_is_charged_what_was_delivered(gateway: str) -> None:
    key, _ = new_key(gateway, budget=100)
    with pytest.raises(openai.APIError):
        for _ in client(gateway, key).chat.completions.create(
            model="paid", messages=[{"role": "user", "content": "break"}], stream=True, max_tokens=50
        ):
            pass
    row = call(gateway, "GET", "/admin/spend")[2]["data"][0]
    assert row["reserved"] == 0 and row["spent"] == 2  # two pieces reached the client, no usage was reported


def test_a_router_reserves_at_its_most_expensive_member(gateway: str) -> None:
    key, _ = new_key(gateway, budget=5)
    with pytest.raises(openai.RateLimitError, match="budget"):
        chat(client(gateway, key), model="auto", max_tokens=10)  # may fall back to paid: 10 > 5
    assert chat(client(gateway, key), model="auto", max_tokens=5).choices  # answered by free: costs 0


def test_admin_api_validates_and_never_shows_a_secret_twice(gateway: str) -> None:
    status, _, body = call(gateway, "POST", "/admin/keys", {"name": "x", "rpm": -1})
    assert status == 400 and body["error"]["param"] == "rpm"
    assert call(gateway, "POST", "/admin/keys", {"models": ["*"]})[2]["error"]["param"] == "name"
    assert call(gateway, "POST", "/admin/keys", b"nope")[0] == 400
    assert call(gateway, "GET", "/admin/keys/key_missing")[0] == 404
    key, kid = new_key(gateway, rpm=5)
    status, _, shown = call(gateway, "PATCH", f"/admin/keys/{kid}", {"rpm": 9, "scopes": ["chat"]})
    assert status == 200 and shown["rpm"] == 9 and shown["scopes"] == ["chat"]
    listing = json.dumps(call(gateway, "GET", "/admin/keys")[2])
    assert key not in listing and key[:7] in listing and "hash" not in listing
    assert call(gateway, "GET", f"/admin/keys/{kid}")[2]["spend"]["spent"] == 0


def test_requests_are_logged_as_json_with_their_request_id(gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    key, _ = new_key(gateway)
    with caplog.at_level(logging.INFO, logger="hearth.requests"):
        status, headers, _ = call(gateway, "POST", "/v1/chat/completions",
                                  {"model": "paid", "messages": [{"role": "user", "content": "secret plan"}]},
                                  key=key, headers={"x-request-id": "req-42"})
        assert status == 200 and headers["x-request-id"] == "req-42"
        generated = call(gateway, "GET", "/v1/models", key=key)[1]["x-request-id"]
        assert len(generated) == 32
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hearth.requests"]
    # The answer's quality event carries the same request id and may be logged first: take the request's line.
    line = next(x for x in lines if x["request_id"] == "req-42" and "event" not in x)
    assert line["key"] == "app" and line["model"] == "paid" and line["backend"] == "paid" and line["status"] == 200
    assert line["prompt_tokens"] == 3 and line["completion_tokens"] == 4 and line["duration_ms"] >= 0
    assert "secret plan" not in caplog.text and key not in caplog.text and ADMIN not in caplog.text


def test_without_keys_on_loopback_any_or_no_key_is_accepted(tmp_path: Path) -> None:
    cfg_file = tmp_path / "hearth.yaml"
    cfg_file.write_text(CONFIG.replace("KEYS_DB", str(tmp_path / "keys.db")))
    cfg = load_config(cfg_file, {})

    def make() -> Any:
        assembly = assemble(cfg, leaves={"paid": FunctionBackend("paid", _answer)})
        return create_app(cfg, assembly, open_access(cfg, env={}))

    with running(make) as url:
        assert chat(client(url, "unused")).choices
        assert call(url, "GET", "/v1/models", key=None)[0] == 200
        assert call(url, "GET", "/admin/keys", key=None)[0] == 200


def test_each_key_has_its_own_cache_and_rag_models_need_rag_read(gateway: str) -> None:
    one, _ = new_key(gateway)
    two, _ = new_key(gateway)

    def cache_of(key: str) -> str:
        raw = client(gateway, key).chat.completions.with_raw_response.create(
            model="free", temperature=0, messages=[{"role": "user", "content": "cache me"}])
        return str(raw.headers["x-hearth-cache"])

    assert [cache_of(one), cache_of(one), cache_of(two)] == ["miss", "hit", "miss"]
    chat_only, _ = new_key(gateway, scopes=["chat"])
    with pytest.raises(openai.PermissionDeniedError, match="rag:read"):
        chat(client(gateway, chat_only), model="rag:docs")
