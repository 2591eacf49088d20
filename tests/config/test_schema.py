"""Schema checks one model makes alone: the router's `fallback_on` criteria."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hearth.config import DEFAULT_FALLBACK_ON, ConfigError, RouterModel, load_config


def _router(tmp_path: Path, fallback_on: str = "") -> Path:
    f = tmp_path / "c.yaml"
    f.write_text("models:\n  local: {kind: llamacpp}\n  auto:\n    kind: router\n    default: local\n" + fallback_on)
    return f


def test_fallback_on_defaults_to_errors_only(tmp_path: Path) -> None:
    r = load_config(_router(tmp_path), env={}).models["auto"]
    assert isinstance(r, RouterModel) and r.fallback_on == list(DEFAULT_FALLBACK_ON)
    assert "empty" not in r.fallback_on and "invalid_json" not in r.fallback_on
    r = load_config(_router(tmp_path, "    fallback_on: [timeout, empty, invalid_json]\n"), env={}).models["auto"]
    assert isinstance(r, RouterModel) and r.fallback_on == ["timeout", "empty", "invalid_json"]


def test_fallback_on_rejects_unknown_and_repeated_criteria(tmp_path: Path) -> None:
    f = _router(tmp_path, "    fallback_on: [timeout, slow]\n")
    with pytest.raises(
        ConfigError, match=rf"{re.escape(str(f))}:6: models\.auto\.fallback_on\.1: Input should be 'upstream'"
    ):
        load_config(f, env={})
    f = _router(tmp_path, "    fallback_on: [timeout, empty, timeout]\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(f))}:6: models\.auto\.fallback_on: .*timeout listed twice"):
        load_config(f, env={})


def test_pace_in_config() -> None:
    from hearth.config import LocalModel

    assert LocalModel(pace="speech").speech_pace() is not None and LocalModel().speech_pace() is None
    for bad in (True, "warp", 0):
        with pytest.raises(ValueError, match="pace"):
            LocalModel(pace=bad)


def test_conversation_section_is_checked(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("conversation:\n  memory: redis\n  quality: {judge_model: nope}\n"
                 "models:\n  m: {kind: openai, base_url: 'http://x'}\n"
                 "  auto: {kind: router, default: m, rules: [{intent: [greeting], target: m}, {target: m}]}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert "a rule needs a `pattern`, an `intent` list, or both" in msg
    f.write_text(f.read_text().replace(", {target: m}", ""))
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert "conversation.quality.judge_model: unknown chat model 'nope'" in msg
    assert "memory: redis needs conversation.redis_url" in msg
    f.write_text(f.read_text().replace("intent: [greeting]", "intent: [hello]"))
    with pytest.raises(ConfigError, match=re.escape("intent.0")):
        load_config(f, env={})
