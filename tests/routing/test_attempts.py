"""The router's logic in-process: fallback, retries, hedging, deadlines, breakers, shedding, escalation and
fallback on bad answers, over the packaged scripted backends, through the real composition root.

Each test takes milliseconds; tests/routing/test_router.py runs the same rules against real servers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core.collect import collect
from hearth.core.errors import BadRequest, ContextLengthExceeded, Overloaded, UpstreamError, UpstreamTimeout
from hearth.core.pipeline import Gateway, Stream
from hearth.core.types import Backend, ChatRequest, Message, Sampling
from hearth.core.wrapper import WrappingBackend
from hearth.routing.router import RouterBackend
from hearth.testing import Reply, ScriptedBackend


def build(leaves: dict[str, ScriptedBackend], cache: bool = False, **router: Any) -> Assembly:
    models: dict[str, Any] = {}
    for name, leaf in leaves.items():
        models[name] = {"kind": "llamacpp"} if leaf.load is not None else {"kind": "openai", "base_url": "http://x"}
    first = next(iter(leaves))
    models["auto"] = {"kind": "router", "default": first, "health_interval": None, "retry_backoff": 0.0,
                      "fallbacks": {first: [n for n in leaves if n != first]}, **router}
    cfg = Config.model_validate({"cache": {"enabled": cache}, "models": models})
    backends: dict[str, Backend] = dict(leaves)
    return assemble(cfg, leaves=backends)


async def _ask(a: Assembly, model: str, text: str, kw: dict[str, Any]) -> tuple[Stream, str]:
    req = ChatRequest(model=model, messages=[Message("user", text)], **kw)
    s = await Gateway(a.registry, a.metrics).open("openai", req)
    try:
        answer = await collect(s)
    finally:
        await s.aclose()
    return s, answer.text


def ask(a: Assembly, text: str = "hi", model: str = "auto", **kw: Any) -> tuple[Stream, str]:
    return asyncio.run(_ask(a, model, text, kw))


def metrics(a: Assembly) -> str:
    return a.metrics.registry.render()


def test_provider_failure_falls_back_and_is_counted() -> None:
    a = build({"primary": ScriptedBackend("primary", UpstreamError("boom")), "backup": ScriptedBackend("backup")})
    s, text = ask(a)
    assert (s.served_by, text, s.route and s.route.reason) == ("backup", "ok", "fallback")
    m = metrics(a)
    assert 'hearth_fallbacks_total{router="auto",from="primary",to="backup",reason="fallback"} 1' in m
    assert 'hearth_route_decisions_total{router="auto",target="backup",reason="fallback"} 1' in m


def test_retryable_error_is_retried_on_the_same_backend_first() -> None:
    primary = ScriptedBackend("primary", UpstreamError("busy", status=503, retry_after=0.01), Reply("second try"))
    a = build({"primary": primary, "backup": ScriptedBackend("backup")}, retries=1)
    s, text = ask(a)
    assert (s.served_by, text, primary.started) == ("primary", "second try", 2)


def test_the_clients_own_error_is_not_retried_elsewhere() -> None:
    backup = ScriptedBackend("backup")
    a = build({"primary": ScriptedBackend("primary", BadRequest("bad field")), "backup": backup})
    with pytest.raises(BadRequest, match="bad field"):
        ask(a)
    assert backup.started == 0


def test_context_length_moves_to_a_model_with_room() -> None:
    a = build({"primary": ScriptedBackend("primary", ContextLengthExceeded("too long")), "backup": ScriptedBackend("backup")})
    assert ask(a)[0].served_by == "backup"


def test_a_criterion_left_out_of_fallback_on_reaches_the_client() -> None:
    limited = UpstreamError("slow down", status=429, code="rate_limited")
    a = build({"primary": ScriptedBackend("primary", limited), "backup": ScriptedBackend("backup")},
              retries=0, fallback_on=["upstream", "timeout"])
    with pytest.raises(UpstreamError) as e:
        ask(a)
    assert e.value.status == 429


def test_missed_first_token_deadline_races_the_next_and_the_loser_is_closed() -> None:
    slow = ScriptedBackend("slow", Reply("late", first_delay=2.0))
    a = build({"slow": slow, "fast": ScriptedBackend("fast", Reply("quick"))}, ttft_deadline=0.05)
    t0 = time.perf_counter()
    s, text = ask(a)
    assert (s.served_by, text, s.route and s.route.reason) == ("fast", "quick", "deadline")
    assert time.perf_counter() - t0 < 1.0
    assert slow.closed == slow.started == 1
    assert 'hearth_fallbacks_total{router="auto",from="slow",to="fast",reason="deadline"} 1' in metrics(a)


def test_total_deadline_is_a_timeout_naming_the_router() -> None:
    a = build({"hang": ScriptedBackend("hang", Reply(first_delay=5))}, total_deadline=0.1)
    with pytest.raises(UpstreamTimeout, match=r"'auto': no backend answered within 0\.1s"):
        ask(a)


def test_failure_after_commit_ends_the_stream_without_mixing_backends() -> None:
    cut = Reply("one two three", error_after=1, error=UpstreamError("cut"))
    backup = ScriptedBackend("backup")
    a = build({"primary": ScriptedBackend("primary", cut), "backup": backup})
    with pytest.raises(UpstreamError, match="cut"):
        ask(a)
    assert backup.started == 0


def test_every_backend_failing_lists_each_reason() -> None:
    a = build({"one": ScriptedBackend("one", UpstreamError("first down")),
               "two": ScriptedBackend("two", UpstreamError("second down"))}, retries=0)
    with pytest.raises(UpstreamError, match="every backend failed: one: first down; two: second down"):
        ask(a)


def test_breaker_opens_skips_the_backend_and_is_exported() -> None:
    primary = ScriptedBackend("primary", UpstreamError("down"))
    a = build({"primary": primary, "backup": ScriptedBackend("backup")}, retries=0,
              breaker={"failures": 2, "cooldown": 60})
    for _ in range(3):
        assert ask(a)[0].served_by == "backup"
    assert primary.started == 2  # the third request did not try it
    assert 'hearth_circuit_state{backend="primary"} 2' in metrics(a)


def test_health_probe_opens_and_closes_a_remote_circuit() -> None:
    remote = ScriptedBackend("remote")
    a = build({"remote": remote, "other": ScriptedBackend("other")}, breaker={"failures": 1, "cooldown": 60})
    served = a.registry.chat["auto"]  # cache off: the speech stage, then the router
    assert isinstance(served, WrappingBackend)
    router = served.inner
    assert isinstance(router, RouterBackend)
    probe = router.probe_members
    remote.healthy = False
    asyncio.run(probe())
    assert a.breakers["remote"].state == 2
    remote.healthy = True
    asyncio.run(probe())
    assert a.breakers["remote"].state == 0


def test_a_busy_local_model_is_shed_while_another_candidate_remains() -> None:
    local = ScriptedBackend("local", local=True, queue_depth=3)
    a = build({"local": local, "remote": ScriptedBackend("remote")}, shed_queue_depth=2)
    s, _ = ask(a)
    assert (s.served_by, s.route and s.route.reason, local.started) == ("remote", "shed", 0)
    local.load.depth = 1  # type: ignore[union-attr]
    assert ask(a)[0].served_by == "local"


def test_the_last_candidate_is_never_shed() -> None:
    local = ScriptedBackend("local", local=True, queue_depth=9)
    a = build({"local": local}, shed_queue_depth=1)
    assert ask(a)[0].served_by == "local"


def test_escalation_judges_the_local_start() -> None:
    local = ScriptedBackend("local", Reply("I'm sorry, I can't help with that"), Reply("fine answer", logprob=-5.0),
                            Reply("fine answer", logprob=-0.1), local=True)
    a = build({"local": local, "remote": ScriptedBackend("remote", Reply("remote answer"))},
              escalation={"window": 4, "min_mean_logprob": -2.0})
    assert ask(a)[0].served_by == "remote"  # refusal
    s, _ = ask(a)
    assert (s.served_by, s.route and s.route.reason) == ("remote", "escalation")  # low confidence
    s, text = ask(a)
    assert (s.served_by, text) == ("local", "fine answer")
    assert all(r.logprobs for r in local.requests)


def test_fallback_on_an_empty_answer() -> None:
    a = build({"primary": ScriptedBackend("primary", Reply("   ")), "backup": ScriptedBackend("backup")},
              fallback_on=["upstream", "empty"])
    s, text = ask(a)
    assert (s.served_by, text) == ("backup", "ok")
    assert 'hearth_fallbacks_total{router="auto",from="primary",to="backup",reason="bad_answer"} 1' in metrics(a)


def test_an_empty_answer_is_served_when_empty_is_not_a_criterion() -> None:
    a = build({"primary": ScriptedBackend("primary", Reply("")), "backup": ScriptedBackend("backup")})
    assert ask(a)[0].served_by == "primary"


def test_fallback_on_json_cut_off_at_max_tokens() -> None:
    truncated = Reply('{"title": "A long', finish="length")
    local = ScriptedBackend("local", truncated, local=True)
    remote = ScriptedBackend("remote", Reply('{"title": "A"}'))
    a = build({"local": local, "remote": remote}, fallback_on=["upstream", "invalid_json"])
    s, text = ask(a, response_format={"type": "json_object"})
    assert (s.served_by, text) == ("remote", '{"title": "A"}')
    assert local.requests[0].grammar  # the local member is still constrained by the structured stage
    # a plain request is not judged as JSON
    assert ask(a, "plain")[0].served_by == "local"


def test_when_every_answer_is_rejected_the_last_is_served_and_says_so() -> None:
    a = build({"one": ScriptedBackend("one", Reply("")), "two": ScriptedBackend("two", Reply(""))},
              fallback_on=["upstream", "empty"])
    s, text = ask(a)
    assert (s.served_by, text) == ("two", "")
    assert s.route is not None and "every candidate's answer was rejected" in s.route.detail


def test_route_metrics_count_with_the_cache_on_and_a_hit_skips_the_router() -> None:
    primary = ScriptedBackend("primary", Reply("cached answer"))
    a = build({"primary": primary, "backup": ScriptedBackend("backup")}, cache=True)
    s, _ = ask(a, sampling=Sampling(temperature=0.0))
    assert s.cache is not None and s.cache.status == "miss"
    assert 'hearth_route_decisions_total{router="auto",target="primary",reason="default"} 1' in metrics(a)
    s, text = ask(a, sampling=Sampling(temperature=0.0))
    assert (s.served_by, text, primary.started) == ("cache", "cached answer", 1)


def test_overloaded_everywhere_is_503_with_retry_after() -> None:
    a = build({"one": ScriptedBackend("one", Overloaded("queue full")),
               "two": ScriptedBackend("two", Overloaded("queue full"))}, retries=0)
    with pytest.raises(Overloaded) as e:
        ask(a)
    assert e.value.retry_after == 1.0


def test_a_router_with_a_response_format_gives_it_to_requests_that_set_none() -> None:
    """A JSON-only alias, for clients that ask for JSON in words (xiaozhi's memory prompt): its members get the
    format, and a remote one's prose is repaired to JSON or retried by the structured stage."""
    leaf = ScriptedBackend("m", Reply('Sure: {"summary": "likes tea"}'))
    a = build({"m": leaf}, response_format={"type": "json_object"})
    _, text = ask(a, "summarise our talk")
    assert text == '{"summary": "likes tea"}' and leaf.requests[-1].response_format == {"type": "json_object"}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    ask(a, "call f", tools=tools, tool_choice="none")  # a tool request keeps its own shape
    assert leaf.requests[-1].response_format is None
    with pytest.raises(ValueError, match="json_object"):
        build({"m": ScriptedBackend("m")}, response_format={"type": "text"})
