"""The order a request passes through, pinned: annotators, resolvers, then the stages around each model, the
same for configured models and for models pulled at run time."""

from __future__ import annotations

import asyncio
from typing import Any

from hearth.assemble import assemble
from hearth.cache.backend import CacheBackend
from hearth.config import Config, LocalModel
from hearth.core.types import Backend
from hearth.lifecycle.adapters import Adapters
from hearth.rag.stage import RagStage
from hearth.routing.router import RouterBackend
from hearth.speech.backend import SpeechBackend
from hearth.structured.constrained import ConstrainedBackend
from hearth.testing import ScriptedBackend


def chain(b: Backend) -> list[type]:
    out: list[type] = []
    while True:
        out.append(type(b))
        inner = getattr(b, "inner", None)
        if inner is None:
            return out
        b = inner


def gateway(**top: Any) -> Any:
    models = {"local": {"kind": "llamacpp"}, "cloud": {"kind": "openai", "base_url": "http://x"},
              "auto": {"kind": "router", "default": "cloud", "health_interval": None}}
    cfg = Config.model_validate({"models": models, **top})
    return assemble(cfg, leaves={"local": ScriptedBackend("local", local=True), "cloud": ScriptedBackend("cloud")})


def test_the_stack_is_speech_cache_router_structured_leaf() -> None:
    a = gateway(conversation={"intents": True})
    assert [s.name for s in a.stages] == ["speech", "cache", "router", "structured"]
    assert chain(a.registry.chat["local"]) == [SpeechBackend, CacheBackend, ConstrainedBackend, ScriptedBackend]
    router = a.registry.chat["auto"]
    assert chain(router) == [SpeechBackend, CacheBackend, RouterBackend]
    member = router.inner.inner.backends["cloud"]
    assert chain(member) == [ConstrainedBackend, ScriptedBackend], "router members are constrained on their own"
    assert a.annotators == [a.convo.annotate] and a.observers == [a.convo]
    assert [type(r) for r in a.registry.resolvers] == [Adapters, RagStage]
    asyncio.run(a.close())


def test_a_stage_left_out_by_config_leaves_the_order_of_the_others() -> None:
    a = gateway(cache={"enabled": False}, conversation={"intents": False})
    assert [s.name for s in a.stages] == ["speech", "router", "structured"]
    assert chain(a.registry.chat["cloud"]) == [SpeechBackend, ConstrainedBackend, ScriptedBackend]
    assert a.annotators == []
    asyncio.run(a.close())


def test_a_model_pulled_at_run_time_gets_the_same_stages_and_no_router() -> None:
    a = gateway()
    routers = sum(isinstance(b, RouterBackend) for b in a.registry.chat.values())
    a.serve("pulled", ScriptedBackend("pulled", local=True), LocalModel(kind="llamacpp", path="/nonexistent.gguf"))
    assert chain(a.registry.chat["pulled"]) == [SpeechBackend, CacheBackend, ConstrainedBackend, ScriptedBackend]
    assert sum(isinstance(b, RouterBackend) for b in a.registry.chat.values()) == routers
    asyncio.run(a.close())
