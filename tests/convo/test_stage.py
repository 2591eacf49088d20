"""Conversation intelligence through the real composition root, over scripted backends: intent rules, sticky
continuations (and their way around a backend that is down), the cache's refusal to near-match follow-ups,
the quality check that escalates a bad local start, and the sampled online score with its metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core.collect import collect
from hearth.core.pipeline import Gateway, Stream
from hearth.core.types import Backend, ChatRequest, Message, Sampling
from hearth.testing import Reply, ScriptedBackend


def build(leaves: dict[str, ScriptedBackend], router: dict[str, Any], **top: Any) -> Assembly:
    models: dict[str, Any] = {}
    for name, leaf in leaves.items():
        models[name] = {"kind": "llamacpp"} if leaf.load is not None else {"kind": "openai", "base_url": "http://x"}
    models["auto"] = {"kind": "router", "health_interval": None, "retry_backoff": 0.0, **router}
    cfg = Config.model_validate({"cache": {"enabled": False}, "models": models, **top})
    backends: dict[str, Backend] = dict(leaves)
    return assemble(cfg, leaves=backends)


async def _ask(a: Assembly, messages: list[Message], model: str, ext: dict[str, Any]) -> tuple[Stream, str]:
    req = ChatRequest(model=model, messages=messages, extensions=ext, sampling=Sampling(temperature=0.0))
    s = await Gateway(a.registry, a.metrics, annotators=a.annotators, observers=a.observers).open("openai", req)
    try:
        text = (await collect(s)).text
    finally:
        await s.aclose()
    await asyncio.sleep(0.05)  # let the sampled quality score run
    return s, text


def ask(a: Assembly, *turns: str, model: str = "auto", **ext: Any) -> tuple[Stream, str]:
    msgs = [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]
    return asyncio.run(_ask(a, msgs, model, ext))


def test_intent_rules_route_small_talk_locally() -> None:
    a = build({"cloud": ScriptedBackend("cloud"), "local": ScriptedBackend("local", local=True)},
              {"default": "cloud", "rules": [{"intent": ["greeting", "thanks", "farewell"], "target": "local"}]})
    s, _ = ask(a, "hi there!")
    assert s.served_by == "local" and s.intent is not None and s.intent.label == "greeting"
    assert s.route is not None and s.route.detail == "intent greeting"
    assert ask(a, "explain how TLS works")[0].served_by == "cloud"
    assert 'hearth_intents_total{model="auto",intent="greeting"} 1' in a.metrics.registry.render()


def test_continuation_stays_on_the_backend_of_the_previous_turn() -> None:
    local = ScriptedBackend("local", Reply("a poem"), local=True)
    cloud = ScriptedBackend("cloud", Reply("a long story"))
    a = build({"local": local, "cloud": cloud},
              {"default": "local", "rules": [{"pattern": "(?i)story", "target": "cloud"}]})
    s, _ = ask(a, "write a story about a lighthouse")
    assert s.served_by == "cloud"
    s, _ = ask(a, "write a story about a lighthouse", "a long story", "continue")
    assert (s.served_by, s.route and s.route.reason) == ("cloud", "sticky")
    # A new topic is routed on its own merits.
    s, _ = ask(a, "write a story about a lighthouse", "a long story", "by the way, what is 2+2?")
    assert s.served_by == "local"
    # The conversation id header keys the memory instead of the messages.
    ask(a, "write a story about a dragon", conversation="c1")
    s, _ = ask(a, "(earlier turns summarised away)", "ok", "keep going", conversation="c1")
    assert (s.served_by, s.route and s.route.reason) == ("cloud", "sticky")


def test_sticky_gives_way_when_the_previous_backend_is_down() -> None:
    a = build({"local": ScriptedBackend("local", local=True), "cloud": ScriptedBackend("cloud")},
              {"default": "local", "rules": [{"pattern": "story", "target": "cloud"}],
               "breaker": {"failures": 1, "cooldown": 60}})
    ask(a, "write a story")
    a.breakers["cloud"].record(False)  # the cloud is known down
    s, _ = ask(a, "write a story", "ok", "continue")
    assert s.served_by == "local" and s.route is not None and s.route.reason != "sticky"


def test_cache_never_near_matches_a_continuation() -> None:
    leaf = ScriptedBackend("local", Reply("one"), Reply("two"), local=True)
    cfg = Config.model_validate({"models": {"local": {"kind": "llamacpp"}},
                                 "cache": {"semantic": {"enabled": True, "threshold": 0.5}}})
    a = assemble(cfg, leaves={"local": leaf})

    async def go() -> list[str]:
        await a.start()
        out = []
        for text in ("keep going", "keep going please"):
            s, _ = await _ask(a, [Message("user", "write a poem"), Message("assistant", "Roses"),
                                       Message("user", text)], "local", {})
            out.append(s.cache.status if s.cache else "none")
        await a.close()
        return out

    assert asyncio.run(go()) == ["miss", "miss"]


def test_quality_check_escalates_a_local_answer_in_the_wrong_language() -> None:
    local = ScriptedBackend("local", Reply("The Great Wall is very long and old and famous."), local=True)
    cloud = ScriptedBackend("cloud", Reply("长城全长约两万一千公里。"))
    a = build({"local": local, "cloud": cloud},
              {"default": "local", "fallbacks": {"local": ["cloud"]},
               "escalation": {"window": 6, "min_mean_logprob": -99, "min_quality": 0.5}})
    s, text = ask(a, "长城有多长？")
    assert (s.served_by, s.route and s.route.reason) == ("cloud", "escalation") and text.startswith("长城")
    s, _ = ask(a, "How long is the Great Wall?")
    assert s.served_by == "local"


def test_sampled_answers_are_scored_into_metrics_and_drift() -> None:
    a = build({"local": ScriptedBackend("local", Reply("I'm sorry, I can't help with that."), local=True)},
              {"default": "local"}, conversation={"quality": {"sample": 1.0, "drift_min_samples": 1}})
    s, _ = ask(a, "how do I bake bread?")
    assert s.quality is not None and s.quality <= 0.2
    m = a.metrics.registry.render()
    assert 'hearth_quality_score_count{model="auto",route="local"} 1' in m
    assert 'hearth_drift_window_samples{model="auto"} 1' in m


def test_a_rule_that_names_the_intent_beats_stickiness() -> None:
    a = build({"local": ScriptedBackend("local", local=True), "cloud": ScriptedBackend("cloud"),
               "big": ScriptedBackend("big")},
              {"default": "local", "rules": [{"pattern": "story", "target": "cloud"},
                                             {"intent": ["correction"], "target": "big"}]})
    ask(a, "write a story")
    s, _ = ask(a, "write a story", "ok", "continue")
    assert (s.served_by, s.route and s.route.reason) == ("cloud", "sticky")
    s, _ = ask(a, "write a story", "ok", "no, I meant one about cats")
    assert (s.served_by, s.route and s.route.reason) == ("big", "rule")


def test_tool_results_continue_and_tool_calls_are_not_scored() -> None:
    from hearth.convo.intent import IntentTracker
    from hearth.core.types import ToolCall

    msgs = [Message("user", "weather in Oslo?"),
            Message("assistant", "", tool_calls=[ToolCall("c1", "weather", "{}")]),
            Message("tool", "12C", tool_call_id="c1")]
    assert IntentTracker().track(msgs).label == "task_continuation"
    a = build({"local": ScriptedBackend("local", Reply(tool_calls=[("weather", {"city": "Oslo"})]), local=True)},
              {"default": "local"}, conversation={"quality": {"sample": 1.0}})
    s, _ = ask(a, "weather in Oslo?")
    assert s.quality is None and "hearth_quality_score_count" not in a.metrics.registry.render()


def test_scoring_has_a_budget_and_loads_no_model() -> None:
    """A pure proxy scores at most max_per_second answers a second (the rest counted as skipped), and by terms:
    the default embedding model, which no configured feature uses, stays unloaded."""
    a = build({"cloud": ScriptedBackend("cloud", *[Reply("Paris is the capital of France.")] * 6)},
              {"default": "cloud"}, conversation={"quality": {"sample": 1.0, "max_per_second": 2}})
    embedder = a.registry.embedders[a.registry.default_embedder() or ""]

    async def burst() -> list[Stream]:
        return [(await _ask(a, [Message("user", "What is the capital of France?")], "auto", {}))[0] for _ in range(6)]

    streams = asyncio.run(burst())
    scored = [s for s in streams if s.quality is not None]
    assert 1 <= len(scored) <= 3, [s.quality for s in streams]
    assert 'hearth_quality_skipped_total{reason="rate"}' in a.metrics.registry.render()
    assert getattr(embedder, "loaded", None) is False
