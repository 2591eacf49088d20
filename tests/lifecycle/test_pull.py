"""The puller with huggingface_hub's real client against the Hub stand-in: gated repositories and HF_TOKEN,
a pull the disk cannot hold refused before a byte moves, files already present not fetched again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.core.errors import HearthError
from hearth.lifecycle.names import parse_ref
from hearth.lifecycle.pull import Progress, Puller
from hearth.lifecycle.store import ModelStore
from hearth.testing.hub import HubStandIn
from hearth.testing.lora import random_lora
from hearth.testing.server import running
from tests.lifecycle.test_models_api import SMOL

TINY = b"GGUF" + b"\x03\x00\x00\x00" + bytes(16)  # a valid, empty GGUF header: no tensors, no keys


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubStandIn, str]]:
    lora = random_lora(SMOL, tmp_path_factory.mktemp("lora") / "lora.gguf")
    stand_in = HubStandIn({"o/tiny-GGUF": {"tiny-q4_k_m.gguf": TINY}, "o/huge-GGUF": {"huge-q4_k_m.gguf": TINY},
                           "o/lora-GGUF": {"lora-q4_k_m.gguf": lora.read_bytes()}},
                          huge={"huge-q4_k_m.gguf"})
    with running(stand_in.app) as url:
        yield stand_in, url


def test_gated_repository_needs_the_token(hub: tuple[HubStandIn, str], tmp_path: Path) -> None:
    stand_in, url = hub
    stand_in.token = "hf_secret_test_token"
    try:
        with pytest.raises(HearthError, match="gated: accept its terms on the Hub and set HF_TOKEN") as e:
            Puller(ModelStore(tmp_path), endpoint=url, token="").pull(parse_ref("o/tiny-GGUF"), lambda p: None)
        assert e.value.status == 403
        m = Puller(ModelStore(tmp_path), endpoint=url, token="hf_secret_test_token").pull(
            parse_ref("o/tiny-GGUF"), lambda p: None
        )
        assert m.name == "o/tiny-GGUF" and m.size == len(TINY)
    finally:
        stand_in.token = None


def test_disk_too_small_is_refused_before_any_transfer(hub: tuple[HubStandIn, str], tmp_path: Path) -> None:
    stand_in, url = hub
    before = len(stand_in.requests)
    with pytest.raises(HearthError, match="not enough disk space") as e:
        Puller(ModelStore(tmp_path), endpoint=url).pull(parse_ref("o/huge-GGUF"), lambda p: None)
    assert e.value.status == 507
    assert not [r for r in stand_in.requests[before:] if "/resolve/" in r[1]]
    assert not list(tmp_path.rglob("*.gguf")) and not (tmp_path / "manifests").exists()


def test_an_adapter_is_not_a_model(hub: tuple[HubStandIn, str], tmp_path: Path) -> None:
    _, url = hub
    with pytest.raises(HearthError, match="is a LoRA adapter, not a model"):
        Puller(ModelStore(tmp_path), endpoint=url).pull(parse_ref("o/lora-GGUF"), lambda p: None)
    assert not list((tmp_path / "blobs").iterdir())


def test_second_name_for_the_same_file_downloads_nothing(hub: tuple[HubStandIn, str], tmp_path: Path) -> None:
    stand_in, url = hub
    store = ModelStore(tmp_path)
    Puller(store, endpoint=url).pull(parse_ref("o/tiny-GGUF"), lambda p: None)
    before = len(stand_in.requests)
    lines: list[Progress] = []
    Puller(store, endpoint=url).pull(parse_ref("o/tiny-GGUF:q4_k_m"), lines.append)
    assert not [r for r in stand_in.requests[before:] if "/resolve/" in r[1]]
    assert sorted(m.name for m in store.entries()) == ["o/tiny-GGUF", "o/tiny-GGUF:q4_k_m"]
    assert len(list(store.blobs.iterdir())) == 1
    store.remove("o/tiny-GGUF")
    assert len(list(store.blobs.iterdir())) == 1  # still used by the other name
    store.remove("o/tiny-GGUF:q4_k_m")
    assert not list(store.blobs.iterdir())


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert Puller(ModelStore(tmp_path)).endpoint == "http://mirror.example:8080"
    monkeypatch.delenv("HF_ENDPOINT")
    assert Puller(ModelStore(tmp_path)).endpoint == "https://huggingface.co"
