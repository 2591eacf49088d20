"""Fields that select data or state pass the same admission as the model name: knowledge bases, the cache
namespace, keep_alive; and every path that costs something counts toward the key's limits. (Before: any chat
key read any knowledge base through "hearth": {"rag": ...}; "cache": null reached the admin's answers; tpm
held nothing without max_tokens; /v1/evaluate and Ollama's load request ignored rpm; any chat key unloaded a
shared model.)"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from tests.security.conftest import ADMIN, Gateway, call, chat

pytestmark = pytest.mark.model

SECRET_FACT = "The vault code of the second knowledge base is 7341."


@pytest.fixture(scope="module")
def kb2(gw: Gateway) -> str:
    r = call(gw.url, "POST", "/v1/rag/kb2/documents", {"documents": [{"source": "vault.md", "text": SECRET_FACT}]},
             ADMIN)
    assert r.status == 200, r.body
    return "kb2"


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_chat_key_cannot_read_a_knowledge_base_through_the_extension(gw: Gateway, kb2: str, api: str) -> None:
    key = gw.key("chat-only", models=["local", "smol"], scopes=["chat"])
    body: dict[str, Any] = {"model": "smol", "messages": [{"role": "user", "content": "What is the vault code?"}],
                            "hearth": {"rag": {"kb": kb2}}, "stream": False}
    path = "/v1/chat/completions" if api == "openai" else "/api/chat"
    r = call(gw.url, "POST", path, body, key)
    assert r.status == 403, r.body
    assert "7341" not in r.raw.decode()
    # With rag:read but without rag:kb2 in its models, still no.
    reader = gw.key("reader-of-other-kbs", models=["local", "smol", "rag:kb1"], scopes=["chat", "rag:read"])
    assert call(gw.url, "POST", path, body, reader).status == 403
    # The key the knowledge base is meant for reads it.
    allowed = gw.key("kb2-reader", models=["smol", "rag:kb2"], scopes=["chat", "rag:read"])
    r = call(gw.url, "POST", "/v1/chat/completions", {**body, "max_tokens": 4}, allowed)
    assert r.status == 200 and "7341" in str(r.body.get("sources")), r.body


@pytest.mark.parametrize("value", [None, "x", [], 0, False, {"namespace": ""}])
def test_the_cache_namespace_cannot_be_escaped(gw: Gateway, value: Any) -> None:
    question = f"Name one colour ({value!r})."
    admin = chat(gw.url, ADMIN, question)
    assert admin.status == 200 and admin.headers.get("x-hearth-cache") == "miss"
    assert chat(gw.url, ADMIN, question).headers.get("x-hearth-cache") == "hit"  # cached for the admin
    tenant = chat(gw.url, gw.key("tenant-a"), question, hearth={"cache": value})
    if tenant.status == 400:
        assert tenant.body["error"]["param"].startswith("hearth.cache"), tenant.body
    else:
        assert tenant.status == 200 and tenant.headers.get("x-hearth-cache") != "hit", tenant.headers


def test_malformed_extension_fields_are_400s_that_name_them(gw: Gateway) -> None:
    key = gw.key("tenant-a")
    for ext, param in [({"rag": "kb2"}, "hearth.rag"), ({"rag": {"kb": 5}}, "hearth.rag.kb"),
                       ({"rag": {"kb": "../etc"}}, "hearth.rag.kb"), ({"cachee": {}}, "hearth.cachee"),
                       ({"conversation": "x" * 201}, "hearth.conversation"),
                       ({"cache": {"namespace": "a/b"}}, "hearth.cache.namespace")]:
        r = chat(gw.url, key, "hi", hearth=ext)
        assert r.status == 400 and r.body["error"]["param"] == param, (ext, r.body)
    r = call(gw.url, "POST", "/v1/chat/completions", {"model": "smol", "messages": [{"role": "user", "content": "hi"}]},
             key, headers={"x-hearth-cache-namespace": "../../admin"})
    assert r.status == 400 and r.body["error"]["param"] == "x-hearth-cache-namespace"


def test_tpm_holds_without_max_tokens(gw: Gateway) -> None:
    key = gw.key("tpm-200", tpm=200)
    body = {"model": "smol", "messages": [{"role": "user", "content": "Tell me a long story."}]}

    def one(_: int) -> tuple[int, int]:
        r = call(gw.url, "POST", "/v1/chat/completions", body, key)
        return r.status, (r.body.get("usage") or {}).get("total_tokens", 0) if r.status == 200 else 0

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    admitted = [t for s, t in results if s == 200]
    assert sum(s == 429 for s, _ in results) >= 8, results
    assert sum(admitted) <= 200, results


def test_evaluate_and_model_loads_count_toward_rpm_and_tenants_cannot_unload(gw: Gateway) -> None:
    key = gw.key("rpm-2", rpm=2)
    body = {"question": "What is 2+2?", "answer": "4"}
    statuses = [call(gw.url, "POST", "/v1/evaluate", body, key).status for _ in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429, statuses
    key = gw.key("rpm-2-loads", rpm=2)
    statuses = [call(gw.url, "POST", "/api/generate", {"model": "smol"}, key).status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    tenant = gw.key("tenant-a")
    for keep in (0, -1, "2h"):
        r = call(gw.url, "POST", "/api/generate", {"model": "smol", "keep_alive": keep}, tenant)
        assert r.status == 403 and "keep_alive" in r.body["error"], r.body
        r = call(gw.url, "POST", "/api/chat", {"model": "smol", "keep_alive": keep, "stream": False,
                                                "messages": [{"role": "user", "content": "hi"}]}, tenant)
        assert r.status == 403, r.body
    assert call(gw.url, "POST", "/api/generate", {"model": "smol", "keep_alive": "10m"}, tenant).status == 200
    ps = call(gw.url, "GET", "/api/ps", key=tenant).body
    assert any(m["name"] == "smol" for m in ps["models"]), ps
    assert call(gw.url, "POST", "/api/generate", {"model": "smol", "keep_alive": 0}, ADMIN).status == 200
