"""docs/config.md is what the schema says: regenerate it with `python -m hearth.config.reference > docs/config.md`."""

from __future__ import annotations

from pathlib import Path

from hearth.config.reference import render


def test_the_config_reference_is_current() -> None:
    committed = (Path(__file__).parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/config.md is stale: run python -m hearth.config.reference > docs/config.md"


def test_every_field_and_kind_is_in_it() -> None:
    from hearth.config import Config, RouterModel

    text = render()
    for model in (Config, RouterModel):
        for name, field in model.model_fields.items():
            assert field.exclude or f"| `{name}` |" in text, name
    for kind in ("llamacpp", "embedding", "openai", "ollama", "router", "anthropic"):
        assert f"(`kind: {kind}`)" in text, kind


def test_a_kind_registered_in_code_is_not_part_of_the_reference() -> None:
    """The file must read the same whatever a test (or a program) registered in its own process."""
    from typing import Literal

    from hearth.assemble import Made, register_provider
    from hearth.config import RemoteModel

    class Transient(RemoteModel):
        kind: Literal["transient-test"]

    register_provider("transient-test", lambda *a: Made(), config=Transient)
    assert "transient-test" not in render()
