"""MiniLM run by llama.cpp from the GGUF hearth writes at first use: the same vectors as the numpy engine
(Chinese and Hangul included, since the model's own tokenizer feeds both), the file written once and
atomically, and the engine choice (`auto` falls back to numpy when llama.cpp cannot load the model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hearth.embed import bert_gguf
from hearth.embed.bert_gguf import GgufBert
from hearth.embed.local import _load
from hearth.embed.minilm import MiniLM, find_model_dir

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog. " * 20, "北京的烤鸭很好吃", "안녕하세요 세계",
         "naïve café — déjà vu", "x"]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> GgufBert:
    return GgufBert(cache_dir=tmp_path_factory.mktemp("models"))


def test_same_vectors_as_numpy(gguf: GgufBert) -> None:
    a, b = MiniLM().encode(TEXTS), gguf.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert float((a * b).sum(1).min()) > 0.9999
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert gguf.encode([]).shape == (0, 384)


def test_many_texts_in_packed_decodes(gguf: GgufBert) -> None:
    texts = [f"question number {i} about topic {i % 7}" for i in range(150)]  # > 64 texts: several decodes
    a, b = MiniLM().encode(texts), gguf.encode(texts)
    assert float((a * b).sum(1).min()) > 0.9999


def test_file_is_written_once(tmp_path: Path) -> None:
    first = bert_gguf.gguf_file(find_model_dir(), tmp_path)
    stamp = first.stat().st_mtime_ns
    assert bert_gguf.gguf_file(find_model_dir(), tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left behind


def test_engine_choice(tmp_path: Path) -> None:
    assert isinstance(_load("builtin:all-minilm-l6-v2", "numpy"), MiniLM)
    # A folder that is not BERT: llama.cpp's converter refuses it; auto serves with numpy... which refuses too,
    # so the error names the folder. A good copy of the model under another path works with both.
    copy = tmp_path / "model"
    shutil.copytree(find_model_dir(), copy)
    assert isinstance(_load(str(copy), "auto"), GgufBert)
    cfg = copy / "config.json"
    cfg.write_text(cfg.read_text().replace('"bert"', '"roberta"'))
    with pytest.raises(ValueError, match="not a BERT"):
        _load(str(copy), "llamacpp")
    assert isinstance(_load(str(copy), "auto"), MiniLM)  # auto falls back to numpy


def test_a_damaged_file_is_written_again(tmp_path: Path) -> None:
    path = bert_gguf.gguf_file(find_model_dir(), tmp_path)
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as by a full disk
    m = GgufBert(cache_dir=tmp_path)
    assert float((m.encode(["hello"]) * MiniLM().encode(["hello"])).sum()) > 0.9999
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.encode(["hello"])
