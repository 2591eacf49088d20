"""`hearth config check`: the summary of a valid file, and the exit status and message of a bad one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hearth.config import describe_config, load_config


def test_cli_config_check(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("models:\n  r: {kind: ollama, base_url: 'http://127.0.0.1:11434', model: llama3.2}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "config", "check", str(f)], capture_output=True, text=True)
    assert out.returncode == 0 and "model r: ollama at http://127.0.0.1:11434 as llama3.2" in out.stdout
    f.write_text("models:\n  r: {kind: martian}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "config", "check", str(f)], capture_output=True, text=True)
    assert out.returncode == 2 and f"{f}:2: models.r" in out.stderr


def test_router_fallback_on_shown_only_when_not_default(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    router = "  auto: {kind: router, default: local%s}\n"
    f.write_text("models:\n  local: {kind: llamacpp}\n" + router % "")
    assert "fallback on" not in describe_config(load_config(f, env={}))
    f.write_text("models:\n  local: {kind: llamacpp}\n" + router % ", fallback_on: [timeout, empty]")
    assert "default local, fallback on ['timeout', 'empty']" in describe_config(load_config(f, env={}))
