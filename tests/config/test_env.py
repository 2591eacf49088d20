"""`HEARTH_*` environment overrides on top of a YAML file: nested keys, model names with `-` and `.`."""

from __future__ import annotations

from pathlib import Path

from hearth.config import LocalModel, OpenAIModel, load_config


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
                              "HEARTH_MODELS__GPT_4O_MINI__TIMEOUTS__FIRST_TOKEN": "2.5"})
    assert cfg.server.port == 9100
    local, remote = cfg.models["qwen-local"], cfg.models["gpt-4o-mini"]
    assert isinstance(local, LocalModel) and local.n_ctx == 8192
    assert isinstance(remote, OpenAIModel) and remote.timeouts.first_token == 2.5
