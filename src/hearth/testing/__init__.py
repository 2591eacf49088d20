"""Test doubles shipped with hearth, in the spirit of pydantic-ai's `FunctionModel`: they let users test
code built on hearth, and our own fast tests run, without a provider, a server or a model.

`MockTransport` replaces the network under the remote backends (pass `transport=` to
`OpenAICompatBackend` / `OllamaBackend`): a handler plays the provider, and the helpers build its
answers in OpenAI's SSE and Ollama's NDJSON formats. `ScriptedBackend` and `FunctionBackend` replace a
whole model: pass them to `hearth.assemble.assemble(cfg, leaves={...})` and every stage is built around
them as the config says. `running(make_app)` serves an app on a real loopback port for synchronous clients.
`ManualClock` moves time by hand for anything that takes a `clock=` (circuit breakers, drift windows).
Two more, imported from their modules because they need more than hearth's core: `hearth.testing.hub.HubStandIn`
plays the Hugging Face Hub on loopback for pull tests, and `hearth.testing.lora.random_lora` writes a LoRA
adapter that fits a GGUF model (it needs the `gguf` package).
"""

from hearth.testing.backends import FunctionBackend, Reply, ScriptedBackend
from hearth.testing.clock import ManualClock
from hearth.testing.server import running
from hearth.testing.transport import (
    MockReply,
    MockRequest,
    MockTransport,
    ollama_ndjson,
    openai_completion,
    openai_sse,
    sse,
)

__all__ = [
    "FunctionBackend",
    "ManualClock",
    "MockReply",
    "MockRequest",
    "MockTransport",
    "Reply",
    "ScriptedBackend",
    "ollama_ndjson",
    "openai_completion",
    "openai_sse",
    "running",
    "sse",
]
