"""The model commands with no gateway running: `hearth pull/list/cp/rm` and `hearth adapter add/list/rm` on the
store, with the Hub played by the stand-in (huggingface_hub's real client downloads from it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.testing.hub import HubStandIn
from hearth.testing.lora import random_lora
from hearth.testing.server import running
from tests.lifecycle.test_models_api import FILE, REPO, SMOL

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    with running(HubStandIn({REPO: {FILE: SMOL}}).app) as url:
        yield url


def hearth(cfg: Path, hub: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth", *args, "--config", str(cfg)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_ENDPOINT": hub})


def test_pull_list_copy_remove_and_adapters(hub: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"local: {{models_dir: {store}}}\nmodels:\n  remote: {{kind: openai, base_url: 'http://127.0.0.1:9/v1'}}\n")
    name = f"{REPO}:q4_1"
    r = hearth(cfg, hub, "pull", name)
    assert r.returncode == 0 and f"success: {name}" in r.stdout, r.stderr
    assert "pulling manifest" in r.stderr and "verifying sha256 digest" in r.stderr  # plain lines off a terminal
    r = hearth(cfg, hub, "list")
    assert name in r.stdout and "Q4_1" in r.stdout
    assert hearth(cfg, hub, "cp", name, "smol").returncode == 0
    assert hearth(cfg, hub, "cp", name, "smol").returncode == 1  # exists already

    lora = random_lora(SMOL, tmp_path / "lora.gguf")
    r = hearth(cfg, hub, "adapter", "add", "tone", str(lora), "--base", "smol")
    assert r.returncode == 0 and "added smol+tone" in r.stdout, r.stderr
    r = hearth(cfg, hub, "adapter", "add", "bad", str(SMOL), "--base", "smol")
    assert r.returncode == 1 and "not a LoRA adapter" in r.stderr
    r = hearth(cfg, hub, "adapter", "add", "x", str(lora))  # two local models: the base must be named
    assert r.returncode == 2 and "--base" in r.stderr
    assert "smol+tone" in hearth(cfg, hub, "adapter", "list").stdout
    assert hearth(cfg, hub, "adapter", "rm", "tone").returncode == 0
    assert hearth(cfg, hub, "adapter", "rm", "tone").returncode == 1

    assert hearth(cfg, hub, "rm", name).returncode == 0
    assert len(list((store / "blobs").iterdir())) == 1  # the copy still uses the file
    assert hearth(cfg, hub, "rm", "smol").returncode == 0
    assert list((store / "blobs").iterdir()) == []
    r = hearth(cfg, hub, "pull", "test/missing-GGUF")
    assert r.returncode == 1 and "not found" in r.stderr
