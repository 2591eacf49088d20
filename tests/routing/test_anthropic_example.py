"""examples/anthropic.yaml as shipped: Anthropic-API clients get easy turns from the local model and code from
Claude (a stand-in speaking Anthropic's API), and the local model when Claude is overloaded."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from hearth.testing import running
from hearth.testing.anthropic import AnthropicStandIn
from tests.conftest import start_hearth

pytestmark = pytest.mark.model


def test_the_anthropic_example_routes_between_local_and_claude(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "examples" / "anthropic.yaml").read_text()
    text = text.replace("    aliases: [local]\n", "    aliases: [local]\n    threads: 2\n    n_ctx: 2048\n", 1)
    claude = AnthropicStandIn(key="sk-ant-example")
    with running(claude.app) as url:
        env = {"HEARTH_ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-ant-example"}
        gw = start_hearth(text, tmp_path, "anthropic-example", env=env)
        try:
            c = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=120)

            def ask(question: str) -> tuple[str, str, str]:
                raw = c.messages.with_raw_response.create(model="claude-router", max_tokens=12,
                                                          messages=[{"role": "user", "content": question}])
                m = raw.parse()
                return m.content[0].text, raw.headers["x-hearth-backend"], raw.headers["x-hearth-route"]  # type: ignore[union-attr]

            said, backend, route = ask("hello there")
            assert (backend, route) == ("qwen2.5-coder-0.5b", "rule") and said
            said, backend, route = ask("Please debug this python function: def f(x): return x +")
            assert (backend, route) == ("claude", "rule") and said.startswith("Claude here:")
            assert claude.requests[-1]["model"] == "claude-sonnet-4-5" and claude.requests[-1]["max_tokens"] == 12
            claude.fail = "overloaded"  # Anthropic's 529: the local model answers instead
            said, backend, route = ask("Please debug this python function: def g(): pass")
            assert (backend, route) == ("qwen2.5-coder-0.5b", "fallback") and said
        finally:
            gw.stop()
