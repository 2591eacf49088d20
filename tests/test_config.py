"""Configuration: defaults with no file, YAML, environment overrides, errors naming file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hearth.config import ConfigError, LocalModel, OpenAIModel, load_config


def test_defaults_without_a_file() -> None:
    cfg = load_config(None, env={})
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8434
    m = cfg.models["qwen2.5-coder-0.5b"]
    assert isinstance(m, LocalModel) and m.aliases == ["local"] and m.path == "builtin:qwen2.5-coder-0.5b"


def test_yaml_and_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("""
server: {port: 9000}
models:
  gpt-4o-mini:
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
  qwen-local:
    kind: llamacpp
    path: /models/q.gguf
""")
    cfg = load_config(f, env={"HEARTH_SERVER__PORT": "9100", "HEARTH_MODELS__QWEN_LOCAL__N_CTX": "8192",
                              "HEARTH_MODELS__GPT_4O_MINI__TIMEOUTS__FIRST_TOKEN": "2.5"})  # fmt: skip
    assert cfg.server.port == 9100
    local, remote = cfg.models["qwen-local"], cfg.models["gpt-4o-mini"]
    assert isinstance(local, LocalModel) and local.n_ctx == 8192
    assert isinstance(remote, OpenAIModel) and remote.timeouts.first_token == 2.5


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server: {port: 9001}\n")
    assert load_config(None, env={"HEARTH_CONFIG": str(f)}).server.port == 9001


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("server:\n  port: 80\nmodels:\n  x:\n    kind: openai\n    base_url: http://h/v1\n    timeoutz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert f"{f}:7: models.x.timeoutz" in str(e.value)
    f.write_text("models:\n  x:\n    kind: llamacpp\n    n_ctx: lots\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert f"{f}:4: models.x.n_ctx" in str(e.value)
    f.write_text("models: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(f, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_duplicate_alias_rejected(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("models:\n  a: {kind: llamacpp, aliases: [local]}\n  b: {kind: llamacpp, aliases: [local]}\n")
    with pytest.raises(ConfigError, match="'local' is used by both"):
        load_config(f, env={})


def test_cli_config_check(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("models:\n  r: {kind: ollama, base_url: 'http://127.0.0.1:11434', model: llama3.2}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "config", "check", str(f)], capture_output=True, text=True)
    assert out.returncode == 0 and "model r: ollama at http://127.0.0.1:11434 as llama3.2" in out.stdout
    f.write_text("models:\n  r: {kind: martian}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "config", "check", str(f)], capture_output=True, text=True)
    assert out.returncode == 2 and f"{f}:2: models.r" in out.stderr
