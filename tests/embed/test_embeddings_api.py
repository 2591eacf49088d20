"""Embeddings through the real `openai` and `ollama` clients: local (micro-batched) and remote."""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.request

import numpy as np
import ollama
import openai
import pytest

from tests.conftest import Server
from tests.support.httpcall import call

pytestmark = pytest.mark.model


def client(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def same_vector(a: list[float], b: list[float]) -> bool:
    """llama.cpp's kernels differ with the batch's shape (F16 dot products, tiled matmuls, flash attention over
    a longer masked cache), so one text embedded alone or beside 15 others differs in the fifth decimal on some
    CPUs (CI's did, by 6e-5). The same text must still give the same direction."""
    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) > 0.99999 and np.allclose(x, y, atol=5e-4)


def test_openai_client_default_base64_matches_float(gateway: Server) -> None:
    c = client(gateway)
    texts = ["How do I reset my password?", "What's the way to change my password?", "The cat sat on the mat."]
    r = c.embeddings.create(model="all-minilm", input=texts)  # the SDK asks for base64 and decodes it
    f = c.embeddings.create(model="all-minilm", input=texts, encoding_format="float")
    a = np.array([d.embedding for d in r.data])
    b = np.array([d.embedding for d in f.data])
    assert a.shape == (3, 384) and [d.index for d in r.data] == [0, 1, 2]
    assert np.allclose(a, b, atol=1e-6)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert a[0] @ a[1] > 0.7 > 0.2 > a[0] @ a[2]  # a paraphrase is near, an unrelated sentence is far
    assert r.usage.prompt_tokens == r.usage.total_tokens > 10
    one = c.embeddings.create(model="all-MiniLM-L6-v2", input="The cat sat on the mat.")  # alias, single string
    assert same_vector(one.data[0].embedding, list(a[2]))


def test_concurrent_requests_are_batched_and_match_single_results(gateway: Server) -> None:
    texts = [f"question number {i} about the weather in city {i}" for i in range(16)]
    singles = [client(gateway).embeddings.create(model="all-minilm", input=t, encoding_format="float")
               for t in texts[:3]]

    def metric(what: str) -> float:
        with urllib.request.urlopen(gateway.url + "/metrics") as r:
            body = r.read().decode()
        m = re.search(rf'hearth_embedding_value{{model="all-minilm",what="{what}"}} ([0-9.e+]+)', body)
        assert m, body[-2000:]
        return float(m.group(1))

    batches, done = metric("batches"), metric("texts")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: client(gateway).embeddings.create(
            model="all-minilm", input=t, encoding_format="float"), texts))
    assert metric("texts") - done == 16
    assert metric("batches") - batches < 16  # some requests shared a forward pass
    for s, r in zip(singles, results[:3], strict=True):
        assert same_vector(s.data[0].embedding, r.data[0].embedding)  # batching changes nothing that matters


def test_ollama_client_embed_and_legacy_embeddings(gateway: Server) -> None:
    c = ollama.Client(host=gateway.url, timeout=120)
    r = c.embed(model="all-minilm", input=["hello world", "goodbye"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 384
    assert (r.prompt_eval_count or 0) > 0
    legacy = c.embeddings(model="all-minilm", prompt="hello world")
    assert same_vector(legacy.embedding, r.embeddings[0])
    status, body = call(gateway.url + "/api/embed", {"model": "all-minilm", "input": "word " * 400, "truncate": False})
    assert status == 400 and "256-token" in body["error"]
    status, body = call(gateway.url + "/api/embed", {"model": "all-minilm", "input": "word " * 400})
    assert status == 200 and len(body["embeddings"]) == 1  # truncated by default, as Ollama does


@pytest.mark.parametrize("model", ["remote-embed", "remote-embed-ollama"])
def test_remote_provider_embeddings(gateway: Server, model: str) -> None:
    c = client(gateway)
    local = c.embeddings.create(model="all-minilm", input=["remote check"], encoding_format="float")
    remote = c.embeddings.create(model=model, input=["remote check"])
    assert same_vector(local.data[0].embedding, remote.data[0].embedding)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "all-minilm", "input": []}, 400, "input: must not be empty"),
        ({"model": "all-minilm", "input": ["ok", ""]}, 400, "input[1]: empty string"),
        ({"model": "all-minilm", "input": [1, 2, 3]}, 400, "token-id input"),
        ({"model": "all-minilm", "input": 5}, 400, "input"),
        ({"model": "all-minilm", "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": "all-minilm", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "no-such-model", "input": "x"}, 404, "not found"),
        ({"model": "local", "input": "x"}, 400, "does not produce embeddings"),
        ({"model": "bad-500", "input": "x"}, 502, "answered 500"),
        ({"input": "x"}, 400, "model: field required"),
        ({"model": "all-minilm", "input": "x", "bogus": 1}, 400, "bogus: unknown field"),
    ],
)
def test_openai_errors(gateway: Server, body: dict[str, object], status: int, needle: str) -> None:
    got, err = call(gateway.url + "/v1/embeddings", body)
    assert got == status, err
    assert needle in err["error"]["message"]


def test_malformed_json_and_chat_with_an_embedding_model(gateway: Server) -> None:
    got, err = call(gateway.url + "/v1/embeddings", b"{not json")
    assert got == 400 and "malformed JSON" in err["error"]["message"]
    got, err = call(gateway.url + "/api/embed", b'{"model": "all-minilm"}')
    assert got == 400 and "input" in err["error"]
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client(gateway).chat.completions.create(model="all-minilm", messages=[{"role": "user", "content": "hi"}])
    got, _ = call(gateway.url + "/v1/embeddings", {"model": "all-minilm", "input": ["x" * 300_000]})
    assert got == 413


def test_a_query_is_not_queued_behind_a_big_ingest(gateway: Server) -> None:
    big = [f"Paragraph {i} of a long handbook about travel expenses, receipts and approvals. " * 6 for i in range(160)]
    finished: dict[str, float] = {}

    def embed(name: str, texts: list[str]) -> None:
        client(gateway).embeddings.create(model="all-minilm", input=texts, encoding_format="float")
        finished[name] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ingest = pool.submit(embed, "ingest", big)
        time.sleep(0.5)  # the big request is being embedded now
        t0 = time.monotonic()
        pool.submit(embed, "query", ["where do I send receipts?"]).result()
        ingest.result()
    assert finished["query"] < finished["ingest"]
    assert finished["query"] - t0 < 2.0  # one round of the big job at most, not all of it
