"""Loading: defaults with no file, the file from $HEARTH_CONFIG, errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Config, ConfigError, LocalModel, RouterModel, load_config


def test_defaults_without_a_file() -> None:
    cfg = load_config(None, env={})
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8434
    m = cfg.models["qwen2.5-coder-0.5b"]
    assert isinstance(m, LocalModel) and m.aliases == ["local"] and m.path == "builtin:qwen2.5-coder-0.5b"


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


def test_the_shipped_examples_load() -> None:
    examples = Path(__file__).parents[2] / "examples"
    for name in ("hybrid.yaml", "voice.yaml", "anthropic.yaml"):
        cfg = load_config(examples / name, env={})
        assert any(isinstance(m, RouterModel) for m in cfg.models.values()), name
    voice = load_config(examples / "voice.yaml", env={}).models["voice"]
    assert isinstance(voice, RouterModel) and voice.segments and voice.pace == "speech"


def test_the_default_config_serves_voice() -> None:
    voice = Config().models["voice"]
    assert isinstance(voice, RouterModel) and voice.segments and voice.speech_pace() is not None
