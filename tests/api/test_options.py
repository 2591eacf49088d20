"""The `"hearth": {...}` extension, typed: what each option accepts, and that nothing malformed falls back to
a default (a `"cache": null` once reached the admin's cached answers)."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.api.options import check_namespace, options_of
from hearth.api.schemas import ChatCompletionBody, OllamaChatBody, parse
from hearth.core.errors import BadRequest

MSG = [{"role": "user", "content": "hi"}]


def ext(value: Any, body: type = ChatCompletionBody) -> dict[str, Any]:
    return options_of(parse(body, {"model": "m", "messages": MSG, "hearth": value}).hearth)  # type: ignore[attr-defined]


def test_valid_options_become_extensions() -> None:
    assert ext({"cache": {"ttl": 60, "namespace": "t1", "no_store": True}}) == {
        "cache": {"ttl": 60, "namespace": "t1", "no_store": True}}
    assert ext({"rag": {"kb": "manuals", "top_k": 3, "filter": {"lang": "en"}}, "pace": "speech",
                "segments": True, "conversation": "c-1"}, OllamaChatBody) == {
        "rag": {"kb": "manuals", "top_k": 3, "filter": {"lang": "en"}}, "pace": "speech", "segments": True,
        "conversation": "c-1"}
    assert ext(None) == {} and ext({"cache": None}) == {}


@pytest.mark.parametrize(("value", "param"), [
    ({"cache": "x"}, "hearth.cache"), ({"cache": []}, "hearth.cache"), ({"cache": 0}, "hearth.cache"),
    ({"cache": False}, "hearth.cache"), ({"cache": {"namespace": "a/b"}}, "hearth.cache.namespace"),
    ({"cache": {"ttl": -1}}, "hearth.cache.ttl"), ({"cache": {"enabled": "yes"}}, "hearth.cache.enabled"),
    ({"rag": "kb"}, "hearth.rag"), ({"rag": {"kb": 1}}, "hearth.rag.kb"), ({"rag": {"top_k": 0}}, "hearth.rag.top_k"),
    ({"rag": {"kb": "x", "extra": 1}}, "hearth.rag.extra"), ({"request_id": "forged"}, "hearth.request_id"),
    ({"pace": True}, "hearth.pace"), ({"conversation": ""}, "hearth.conversation"), ([], "hearth"),
])
def test_malformed_options_are_400s_that_name_them(value: Any, param: str) -> None:
    with pytest.raises(BadRequest) as e:
        ext(value)
    assert e.value.param == param, e.value.message


def test_header_namespace_follows_the_same_rule() -> None:
    assert check_namespace("tenant.a-1") == "tenant.a-1"
    for bad in ("", "../admin", "a b", "x" * 129):
        with pytest.raises(BadRequest):
            check_namespace(bad)
