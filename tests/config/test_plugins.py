"""Provider kinds from plugins: a package installed beside hearth (tests/support/echo_plugin, installed by
scripts/test.sh like any third-party plugin) adds `kind: echo` with one module and one entry point, and hearth
loads it the first time a config names it, from a YAML file, through every API."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai

from hearth.access import open_access
from hearth.assemble import assemble
from hearth.config import ConfigError, load_config
from hearth.server import create_app
from hearth.testing import running


def test_an_installed_plugin_kind_loads_from_its_entry_point_and_serves(tmp_path: Path) -> None:
    import hearth_echo_plugin

    f = tmp_path / "hearth.yaml"
    f.write_text(f"models:\n  parrot:\n    kind: echo\n    prefix: 'Polly:'\n    aliases: [bird]\n"
                 f"keys: {{path: {tmp_path / 'keys.db'}}}\nresponses: {{store: 'off'}}\n")
    cfg = load_config(f, env={})
    assert type(cfg.models["parrot"]).__name__ == "EchoModel" and "echo" in hearth_echo_plugin.LOADED

    def make() -> object:
        assembly = assemble(cfg)
        return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={}))

    with running(make) as url:  # type: ignore[arg-type]
        chat = openai.OpenAI(base_url=url + "/v1", api_key="x").chat.completions.create(
            model="bird", messages=[{"role": "user", "content": "hello there"}])
        said = anthropic.Anthropic(base_url=url, api_key="x").messages.create(
            model="parrot", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "Polly: hello there" and said.content[0].text == "Polly: hi"  # type: ignore[union-attr]


def test_a_plugin_kinds_fields_are_checked_with_the_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "hearth.yaml"
    f.write_text("models:\n  parrot:\n    kind: echo\n    prefx: 'typo'\n")
    try:
        load_config(f, env={})
    except ConfigError as e:
        assert f"{f}:4: models.parrot.prefx: Extra inputs are not permitted" in str(e)
    else:
        raise AssertionError("a typo in a plugin's field was accepted")
    f.write_text("models:\n  parrot:\n    kind: ech0\n")
    try:
        load_config(f, env={})
    except ConfigError as e:
        assert "unknown kind 'ech0'" in str(e) and "echo" in str(e) and "anthropic" in str(e)
    else:
        raise AssertionError("an unknown kind was accepted")
