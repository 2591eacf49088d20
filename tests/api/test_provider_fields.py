"""Provider extension fields (issue 24): `enable_thinking`, `thinking`, `chat_template_kwargs` as Qwen, DeepSeek,
GLM and vLLM clients (xiaozhi-esp32-server among them) send them through extra_body. They reach the providers
that take them, local models honour the thinking switch where their template has one, and a field nobody
defines is still a 400."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from hearth.backends.ollama import OllamaBackend
from hearth.backends.openai_compat import OpenAICompatBackend
from hearth.config import OllamaModel, OpenAIModel
from hearth.core.types import ChatRequest, Message
from hearth.testing import MockTransport, ollama_ndjson, openai_sse
from tests.conftest import Server
from tests.support.httpcall import call


def _sent(backend_cls: Any, cfg: Any, req: ChatRequest, reply: Any) -> dict[str, Any]:
    seen: list[Any] = []

    def handler(r: Any) -> Any:
        seen.append(r.json)
        return reply

    backend = backend_cls("m", cfg, transport=MockTransport(handler))

    async def run() -> None:
        async for _ in backend.stream(req):
            pass
        await backend.close()

    asyncio.run(run())
    return dict(seen[0])


def _req(**kw: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", "hi")], stream=True, **kw)


def test_fields_reach_openai_compatible_providers_as_sent() -> None:
    fields = {"enable_thinking": False, "chat_template_kwargs": {"enable_thinking": False}}
    cfg = OpenAIModel(kind="openai", base_url="https://dashscope.aliyuncs.com/compatible-mode/v1")
    body = _sent(OpenAICompatBackend, cfg, _req(provider_fields=fields, thinking=False), openai_sse(["ok"]))
    assert body["enable_thinking"] is False and body["chat_template_kwargs"] == {"enable_thinking": False}
    # OpenAI's own API refuses fields it does not define: they are not sent there unless configured.
    cfg = OpenAIModel(kind="openai", base_url="https://api.openai.com/v1")
    body = _sent(OpenAICompatBackend, cfg, _req(provider_fields=fields, thinking=False), openai_sse(["ok"]))
    assert "enable_thinking" not in body and "chat_template_kwargs" not in body
    cfg = OpenAIModel(kind="openai", base_url="https://api.openai.com/v1", provider_fields=True)
    assert _sent(OpenAICompatBackend, cfg, _req(provider_fields=fields), openai_sse(["ok"]))["enable_thinking"] is False
    # A request that sets none sends none.
    cfg = OpenAIModel(kind="openai", base_url="https://api.deepseek.com/v1")
    assert not {"enable_thinking", "thinking"} & set(_sent(OpenAICompatBackend, cfg, _req(), openai_sse(["ok"])))


def test_ollama_providers_get_think() -> None:
    cfg = OllamaModel(kind="ollama")
    assert _sent(OllamaBackend, cfg, _req(thinking=False), ollama_ndjson(["ok"]))["think"] is False
    assert "think" not in _sent(OllamaBackend, cfg, _req(), ollama_ndjson(["ok"]))


@pytest.mark.model
def test_thinking_fields_are_accepted_and_forwarded(gateway: Server) -> None:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    msgs = [{"role": "user", "content": "你好"}]
    for model in ("local", "remote-openai"):
        for extra in ({"enable_thinking": False}, {"thinking": {"type": "disabled"}},
                      {"chat_template_kwargs": {"enable_thinking": False}}):
            r = c.chat.completions.create(model=model, messages=msgs, max_tokens=4, extra_body=extra)  # type: ignore[arg-type]
            assert r.choices[0].message.content is not None, (model, extra)
    status, body = call(gateway.url + "/api/chat", {"model": "local", "messages": msgs, "think": False,
                                                      "stream": False, "options": {"num_predict": 4}})
    assert status == 200, body
    # Still refused: a misspelt field, a thinking type nobody defines.
    status, body = call(gateway.url + "/v1/chat/completions", {"model": "local", "messages": msgs,
                                                                 "enable_thinkin": False})
    assert status == 400 and "enable_thinkin" in body["error"]["message"]
    status, body = call(gateway.url + "/v1/chat/completions", {"model": "local", "messages": msgs,
                                                                 "thinking": {"type": "sometimes"}})
    assert status == 400 and body["error"]["param"] == "thinking"
    status, body = call(gateway.url + "/api/chat", {"model": "local", "messages": msgs, "think": "maybe"})
    assert status == 400 and "think" in body["error"]


@pytest.mark.model
def test_local_template_gets_the_thinking_switch() -> None:
    from hearth.backends.llamacpp import LlamaCppBackend
    from hearth.config import LocalModel
    from hearth.lifecycle.residency import Residency

    template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if enable_thinking is defined and enable_thinking is false %}NOTHINK{% endif %}"
                "<|im_start|>assistant\n")
    cfg = LocalModel(path="builtin:smollm2-135m", n_ctx=256, threads=2, chat_template=template, warmup=False)

    async def run() -> tuple[str, str]:
        residency = Residency(max_models=1, max_bytes=1 << 40)
        b = LlamaCppBackend("t", cfg, residency)
        residency.register(b, float("inf"))
        await b.start()
        try:
            assert b.engine is not None
            off = b._prompt_tokens(_req(thinking=False))
            default = b._prompt_tokens(_req())
            return "".join(b.engine.token_text(t) for t in off), "".join(b.engine.token_text(t) for t in default)
        finally:
            await b.close()

    off, default = asyncio.run(run())
    assert "NOTHINK" in off and "NOTHINK" not in default
