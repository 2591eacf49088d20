"""Conversation intelligence over HTTP on a real model (SmolLM2): the x-hearth-intent header through the real
`openai` client and over the Ollama API, intent and quality in the JSON request log, /v1/evaluate in both
modes (the judge is the real model), and its errors in the OpenAI format."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, smol_model, start_hearth

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("convo")
    cfg = "conversation: {intents: true, quality: {sample: 1.0, max_per_second: 1000, judge_model: smol}}\nmodels:\n" + smol_model()
    server = start_hearth(cfg, tmp, "convo")
    yield server
    server.stop()


def post(
    gw: Server, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        gw.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
            return r.status, r.headers, [json.loads(x) for x in raw.splitlines() if x.strip()]
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def test_intent_header_with_the_openai_client(gw: Server) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused")
    raw = c.chat.completions.with_raw_response.create(
        model="smol", messages=[{"role": "user", "content": "hello!"}], max_tokens=8, temperature=0
    )
    assert raw.headers["x-hearth-intent"] == "greeting"
    msgs: Any = [
        {"role": "user", "content": "write a limerick about cats"},
        {"role": "assistant", "content": "There once was a cat..."},
        {"role": "user", "content": "continue"},
    ]
    with c.chat.completions.with_streaming_response.create(model="smol", messages=msgs, max_tokens=8, stream=True) as r:
        assert r.headers["x-hearth-intent"] == "task_continuation"
        assert any(r.iter_lines())


def test_intent_header_over_ollama_and_the_request_log(gw: Server) -> None:
    status, headers, _ = post(gw, "/api/chat", {"model": "smol", "stream": False, "options": {"num_predict": 8},
                                                "messages": [{"role": "user", "content": "谢谢你！"}]},
                              {"x-hearth-conversation-id": "c-42", "x-request-id": "req-intent-1"})
    assert status == 200 and headers["x-hearth-intent"] == "thanks"
    deadline = time.time() + 10
    lines: list[dict[str, Any]] = []
    while time.time() < deadline:
        lines = [
            json.loads(x) for x in Path(gw.log).read_text().splitlines() if x.startswith("{") and "req-intent-1" in x
        ]
        if len(lines) >= 2:
            break
        time.sleep(0.2)
    request_line = next(x for x in lines if "path" in x)
    quality_line = next(x for x in lines if x.get("event") == "quality")
    assert request_line["intent"] == "thanks"
    assert quality_line["intent"] == "thanks" and 0 <= quality_line["quality"] <= 1


def test_evaluate_heuristic_and_judge(gw: Server) -> None:
    status, _, [r] = post(gw, "/v1/evaluate", {"question": "What is the capital of France?",
                                               "answer": "The capital of France is Paris."})
    assert status == 200 and 0.5 < r["overall"] <= 1 and {"relevance", "language", "coherence"} <= set(r["scores"])
    status, _, [bad] = post(
        gw, "/v1/evaluate", {"question": "法国的首都是哪里？", "answer": "I'm sorry, I cannot help."}
    )
    assert status == 200 and bad["overall"] < r["overall"] and bad["suggestions"] and "refusal" in bad["flags"]
    status, _, [g] = post(gw, "/v1/evaluate", {"question": "What is 2+2?", "answer": "4", "mode": "judge"})
    assert status == 200 and g["mode"] == "judge" and 0 <= g["overall"] <= 1
    status, _, [s] = post(gw, "/v1/evaluate", {"question": "How tall is it?", "answer": "It is 330 m tall.",
                                               "sources": ["The tower is 330 m tall.", {"text": "Built in 1889."}]})
    assert status == 200 and s["scores"]["groundedness"] == 1.0


def test_evaluate_errors(gw: Server) -> None:
    status, _, e = post(gw, "/v1/evaluate", b"{not json")
    assert status == 400 and "malformed JSON" in e["error"]["message"]
    status, _, e = post(gw, "/v1/evaluate", {"answer": "x"})
    assert status == 400 and e["error"]["param"] == "question"
    status, _, e = post(gw, "/v1/evaluate", {"question": "q", "answer": "a", "mode": "judge", "model": "nope"})
    assert status == 404 and e["error"]["type"] == "invalid_request_error"
    status, _, e = post(gw, "/v1/evaluate", {"question": "q", "answer": "a", "mode": "guess"})
    assert status == 400 and e["error"]["param"] == "mode"
