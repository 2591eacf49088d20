"""A real llama.cpp-based inference server behind hearth: `python -m llama_cpp.server` (llama-cpp-python's
OpenAI-compatible server) serving SmolLM2, reached through `kind: openai` with the real `openai` client in front.
Also: the upstream's context window learnt from its model list (vLLM's `max_model_len`, a served `meta.n_ctx`;
never a training context), from a real HTTP server that answers like each."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import openai
import pytest
from aiohttp import web

from hearth.backends.openai_compat import OpenAICompatBackend
from hearth.config import OpenAIModel
from hearth.model_files import resolve_model_path
from tests.conftest import Server, free_port, start_hearth

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    model = resolve_model_path("builtin:smollm2-135m")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smol",
                             "--n_ctx", "1024", "--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def gw(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cfg = f"models:\n  up: {{kind: openai, base_url: 'http://127.0.0.1:{upstream}/v1', model: smol}}\n"
    server = start_hearth(cfg, tmp_path_factory.mktemp("gw"), "gw")
    yield server
    server.stop()


def test_chat_through_hearth_to_llama_cpp_server(gw: Server) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused")
    msgs = [{"role": "user", "content": "What is the capital of France? One word."}]
    r = c.chat.completions.create(model="up", messages=msgs, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].message.content and r.usage and r.usage.completion_tokens > 0
    parts = list(c.chat.completions.create(model="up", messages=msgs, max_tokens=8, temperature=0, stream=True))  # type: ignore[arg-type]
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert any(p.choices and p.choices[0].finish_reason for p in parts)


def test_an_aborted_stream_does_not_break_the_next(gw: Server) -> None:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused")
    msgs = [{"role": "user", "content": "Count from one to fifty."}]
    with c.chat.completions.create(model="up", messages=msgs, max_tokens=64, stream=True) as s:  # type: ignore[arg-type]
        next(iter(s))
    r = c.chat.completions.create(model="up", messages=msgs, max_tokens=4, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(("entry", "expected"), [
    ({"id": "m", "object": "model", "max_model_len": 32768}, 32768),  # vLLM
    ({"id": "m", "object": "model", "meta": {"n_ctx": 8192, "n_vocab": 1}}, 8192),  # a served context in meta
    ({"id": "m", "object": "model", "meta": {"n_ctx_train": 131072}}, None),  # llama-server: training context only
    ({"id": "m", "object": "model"}, None),  # llama_cpp.server, OpenAI: not told
])
def test_context_window_is_learnt_from_the_model_list(entry: dict[str, object], expected: int | None) -> None:
    async def go() -> int | None:
        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "other"}, entry]})

        app = web.Application()
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        b = OpenAICompatBackend("m", OpenAIModel(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m"))
        try:
            await b.start()
            for _ in range(100):
                if b.discovered_context is not None:
                    break
                await asyncio.sleep(0.02)
            return b.info().context_length
        finally:
            await b.close()
            await runner.cleanup()

    assert asyncio.run(go()) == expected


def test_configured_context_wins_and_no_discovery_runs() -> None:
    b = OpenAICompatBackend("m", OpenAIModel(kind="openai", base_url="http://127.0.0.1:9/v1", context_length=4096))
    asyncio.run(b.start())
    assert b.info().context_length == 4096 and b._discovery is None


