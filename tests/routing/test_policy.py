"""Routing decisions and router config validation (no backends)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.config import ConfigError, RouterModel, load_config
from hearth.core.types import ChatRequest, Message
from hearth.routing.policy import RoutingPolicy


def policy(**kw: object) -> RoutingPolicy:
    cfg = RouterModel.model_validate({"kind": "router", "default": "local", **kw})
    return RoutingPolicy(cfg, is_local=lambda n: n == "local", rng=random.Random(1))


def ask(p: RoutingPolicy, *texts: str) -> tuple[str, str]:
    msgs = [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]
    d = p.decide(ChatRequest(model="auto", messages=msgs))
    return d.target, d.reason


RULES = [{"pattern": "(?i)hello|你好", "target": "local", "name": "greet"},
         {"pattern": "(?i)code|代码", "target": "cloud", "name": "code"}]


def test_first_matching_rule_wins() -> None:
    p = policy(rules=RULES)
    assert ask(p, "hello, write code") == ("local", "rule")
    assert ask(p, "帮我写代码") == ("cloud", "rule")
    assert ask(p, "what?") == ("local", "default")


def test_rule_scope_conversation() -> None:
    p = policy(rules=[{"pattern": "(?i)python", "target": "cloud", "scope": "conversation"}])
    assert ask(p, "I use python", "ok", "and now?") == ("cloud", "rule")
    p = policy(rules=[{"pattern": "(?i)python", "target": "cloud"}])
    assert ask(p, "I use python", "ok", "and now?") == ("local", "default")


def test_a_rule_on_tools_sends_tool_turns_elsewhere_and_beats_stickiness() -> None:
    """A voice box's tool turns (xiaozhi's function-call mode) go to a model that calls tools well."""
    p = policy(rules=[{"tools": True, "target": "cloud", "name": "tool turns"}, {"pattern": "hi", "target": "local"}])
    tool = [{"type": "function", "function": {"name": "play_music"}}]
    with_tools = ChatRequest(model="voice", messages=[Message("user", "hi, play a song")], tools=tool)
    d = p.decide(with_tools, previous="local")
    assert (d.target, d.reason, d.detail) == ("cloud", "rule", "tool turns")
    assert ask(p, "hi there") == ("local", "rule")
    p = policy(rules=[{"tools": False, "pattern": "hi", "target": "cloud"}])
    assert p.decide(with_tools).target == "local" and ask(p, "hi") == ("cloud", "rule")
    with pytest.raises(ValueError, match="`tools`"):
        policy(rules=[{"target": "cloud"}])


def test_tiers_by_score() -> None:
    p = policy(tiers=[{"max_score": 0.4, "target": "local"}, {"max_score": 1.0, "target": "cloud"}])
    assert ask(p, "hi") == ("local", "score")
    assert ask(p, "Write a Python function to merge two sorted lists and explain the complexity.") == ("cloud", "score")


def test_weights_spread_over_a_group() -> None:
    p = policy(groups={"simple": {"local": 80, "cloud": 20}}, default="simple")
    picks = [ask(p, "hi")[0] for _ in range(2000)]
    assert 0.75 < picks.count("local") / len(picks) < 0.85


def test_long_prompts_skip_the_local_model() -> None:
    p = policy(max_local_prompt_tokens=100, long_prompt_target="cloud")
    assert ask(p, "short") == ("local", "default")
    assert ask(p, "word " * 500) == ("cloud", "length")


def test_chain_follows_own_fallbacks_only() -> None:
    p = policy(fallbacks={"local": ["cloud", "cloud2"], "cloud": ["local"]})
    assert p.chain("local") == ["local", "cloud", "cloud2"]
    assert p.chain("cloud") == ["cloud", "local"]


def _cfg(tmp_path: Path, router: str) -> Path:
    f = tmp_path / "r.yaml"
    f.write_text("models:\n  local: {kind: llamacpp}\n  cloud: {kind: openai, base_url: 'http://x/v1'}\n"
                 "  auto:\n    kind: router\n" + router)
    return f


@pytest.mark.parametrize(("router", "line", "words"), [
    ("    default: nowhere\n", 6, "unknown target 'nowhere'"),
    ("    default: local\n    rules:\n      - {pattern: '(oops', target: cloud}\n", 8, "invalid regular expression"),
    ("    default: local\n    rules:\n      - {pattern: 'x', target: clod}\n", 8, "unknown target 'clod'"),
    ("    default: local\n    fallbacks:\n      local: [local]\n", 8, "cycle: local -> local"),
    ("    default: local\n    fallbacks:\n      cloud: [local, local]\n", 8, "listed twice"),
    ("    default: local\n    groups: {g: {local: 1, ghost: 1}}\n", 7, "unknown target 'ghost'"),
    ("    default: local\n    tiers:\n      - {max_score: 0.8, target: cloud}\n      - {max_score: 0.3, target: local}\n", 9,
     "ascending"),
])
def test_invalid_policies_name_the_line(tmp_path: Path, router: str, line: int, words: str) -> None:
    f = _cfg(tmp_path, router)
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert f"{f}:{line}:" in str(e.value) and words in str(e.value)


def test_mutual_fallbacks_are_valid(tmp_path: Path) -> None:
    load_config(_cfg(tmp_path, "    default: local\n    fallbacks: {local: [cloud], cloud: [local]}\n"), env={})


def test_env_interpolation(tmp_path: Path) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(
        "models:\n  r:\n    kind: openai\n    base_url: ${MY_URL:-http://default/v1}\n    model: ${MY_MODEL}\n"
    )
    cfg = load_config(f, env={"MY_MODEL": "m1"})
    assert cfg.models["r"].base_url == "http://default/v1" and cfg.models["r"].model == "m1"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"MY_MODEL"):
        load_config(f, env={})


def test_route_explain_cli_json() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "hearth", "route", "explain", "帮我写一个排序函数的代码", "--config",
                          str(root / "examples" / "hybrid.yaml"), "--json"], capture_output=True, text=True, check=True)
    import json

    d = json.loads(out.stdout)
    assert d["target"] == "remote" and d["reason"] == "rule" and 0 <= d["score"] <= 1
    out = subprocess.run([sys.executable, "-m", "hearth", "route", "explain", "你好", "--config",
                          str(root / "examples" / "hybrid.yaml")], capture_output=True, text=True, check=True)
    assert "-> qwen2.5-coder-0.5b" in out.stdout and "reason: rule" in out.stdout
