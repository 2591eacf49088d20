"""The speech stage in-process, through the real composition root: segments, pace handed to the engine,
first-segment and underrun metrics, defaults per model, cache replays and routers, bad options."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearth.assemble import Assembly, assemble
from hearth.config import Config
from hearth.core.collect import collect
from hearth.core.errors import BadRequest
from hearth.core.pace import SPEECH
from hearth.core.pipeline import Gateway
from hearth.core.types import Backend, ChatRequest, Message, Sampling, TextDelta
from hearth.testing import Reply, ScriptedBackend

ANSWER = "好的，我来帮你查一下。今天北京晴，气温二十度。"


def build(leaf: ScriptedBackend, cache: bool = False, **model: Any) -> Assembly:
    models = {"m": {"kind": "llamacpp", **model},
              "voice": {"kind": "router", "default": "m", "pace": "speech", "segments": True, "health_interval": None}}
    cfg = Config.model_validate({"cache": {"enabled": cache}, "models": models})
    leaves: dict[str, Backend] = {"m": leaf}
    return assemble(cfg, leaves=leaves)


def pieces(a: Assembly, model: str, **ext: Any) -> list[str]:
    req = ChatRequest(model=model, messages=[Message("user", "天气？")], sampling=Sampling(temperature=0.0),
                      stream=True, extensions=ext)

    async def go() -> list[str]:
        s = await Gateway(a.registry, a.metrics).open("openai", req)
        try:
            return [c.text async for c in s if type(c) is TextDelta]  # type: ignore[union-attr]
        finally:
            await s.aclose()

    return asyncio.run(go())


def test_plain_model_streams_tokens_and_gets_no_pace() -> None:
    leaf = ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER)))
    a = build(leaf)
    assert len(pieces(a, "m")) == len(ANSWER)
    assert leaf.requests[0].pace is None
    assert "hearth_time_to_first_segment_seconds_count" not in a.metrics.registry.render()


def test_voice_model_streams_segments_and_paces_the_engine() -> None:
    leaf = ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER)))
    a = build(leaf)
    assert pieces(a, "voice") == ["好的，", "我来帮你查一下。", "今天北京晴，气温二十度。"]
    assert leaf.requests[0].pace is SPEECH
    assert 'hearth_time_to_first_segment_seconds_count{model="voice"} 1' in a.metrics.registry.render()


def test_request_options_override_the_model_default() -> None:
    a = build(ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER))))
    assert len(pieces(a, "m", segments=True)) == 3
    assert len(pieces(a, "voice", segments="0")) == len(ANSWER)


def test_model_default_in_config() -> None:
    leaf = ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER)))
    a = build(leaf, pace=6, segments=True)
    assert len(pieces(a, "m")) == 3
    assert leaf.requests[0].pace is not None and leaf.requests[0].pace.cjk_per_second == 6.0


def test_a_slow_stream_counts_underruns() -> None:
    slow = Reply("好的，我来帮你。今天晴。", pieces=["好的，我来帮你。", "今天晴。"], delay=0.4)
    a = build(ScriptedBackend("m", slow))
    pieces(a, "voice", pace=50)  # 0.16 s of speech, then 0.4 s of silence
    m = a.metrics.registry.render()
    assert 'hearth_pace_underruns_total{model="voice"} 1' in m


def test_cache_replays_are_segmented() -> None:
    a = build(ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER))), cache=True)
    pieces(a, "voice")
    assert pieces(a, "voice") == ["好的，", "我来帮你查一下。", "今天北京晴，气温二十度。"]


@pytest.mark.parametrize(("ext", "field"), [({"pace": "warp"}, "hearth.pace"), ({"segments": "maybe"}, "hearth.segments")])
def test_bad_options_are_a_400_naming_the_field(ext: dict[str, Any], field: str) -> None:
    a = build(ScriptedBackend("m"))
    with pytest.raises(BadRequest) as e:
        pieces(a, "m", **ext)
    assert e.value.param == field


def test_tool_calls_and_non_streaming_answers_pass_whole() -> None:
    a = build(ScriptedBackend("m", Reply("Sure, calling it.", tool_calls=[("f", {})])))
    req = ChatRequest(model="voice", messages=[Message("user", "x")])
    answer = asyncio.run(collect(a.registry.get("voice").stream(req)))
    assert answer.text == "Sure, calling it." and answer.tool_calls[0].name == "f"


def test_text_before_a_failure_is_still_delivered_when_segmenting() -> None:
    from hearth.core.errors import UpstreamError

    cut = Reply(pieces=["好的，我来帮你查一下。", "今天北京", "晴。"], error_after=2, error=UpstreamError("cut"))
    a = build(ScriptedBackend("m", cut))
    got: list[str] = []

    async def go() -> None:
        req = ChatRequest(model="voice", messages=[Message("user", "x")], stream=True)
        async for c in a.registry.get("voice").stream(req):
            if type(c) is TextDelta:
                got.append(c.text)

    with pytest.raises(UpstreamError):
        asyncio.run(go())
    assert "".join(got) == "好的，我来帮你查一下。今天北京"


def test_paced_requests_without_max_tokens_get_the_voice_length() -> None:
    """A voice device speaks every word and xiaozhi sends no max_tokens: paced requests get the model's
    speech_max_tokens (300 by default); a request's own limit and unpaced requests are left alone."""
    leaf = ScriptedBackend("m", Reply(ANSWER, pieces=list(ANSWER)))
    a = build(leaf)
    pieces(a, "voice")
    assert leaf.requests[-1].sampling.max_tokens == 300
    pieces(a, "m")
    assert leaf.requests[-1].sampling.max_tokens is None

    async def own_limit() -> None:
        req = ChatRequest(model="voice", messages=[Message("user", "天气？")], sampling=Sampling(max_tokens=20),
                          stream=True)
        s = await Gateway(a.registry, a.metrics).open("openai", req)
        async for _ in s:
            pass

    asyncio.run(own_limit())
    assert leaf.requests[-1].sampling.max_tokens == 20
    models = {"m": {"kind": "llamacpp"}, "voice": {"kind": "router", "default": "m", "pace": "speech",
                                                   "speech_max_tokens": None, "health_interval": None}}
    leaf2 = ScriptedBackend("m", Reply(ANSWER))
    b = assemble(Config.model_validate({"models": models}), leaves={"m": leaf2})
    pieces(b, "voice")
    assert leaf2.requests[-1].sampling.max_tokens is None
