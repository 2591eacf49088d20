"""The numpy MiniLM encoder: shapes, normalisation, and that meaning drives similarity."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.embed.minilm import MiniLM


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def test_shape_and_norm(model: MiniLM) -> None:
    v = model.encode(["hello world", "a longer sentence about caching answers in a gateway"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single(model: MiniLM) -> None:
    texts = ["short", "a much longer sentence so that the batch needs padding and masking to work"]
    batch = model.encode(texts)
    for i, t in enumerate(texts):
        assert np.allclose(batch[i], model.encode([t])[0], atol=1e-5)


def test_similarity_follows_meaning(model: MiniLM) -> None:
    a, b, c = model.encode(["How do I reset my password?", "how can i reset my password",
                            "What is the boiling point of water?"])
    assert a @ b > 0.9 > a @ c
    zh = model.encode(["我想重置密码", "怎么重置我的密码", "今天吃什么"])
    assert zh[0] @ zh[1] > zh[0] @ zh[2]
