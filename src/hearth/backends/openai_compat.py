"""Any OpenAI-compatible provider: OpenAI, DeepSeek, DashScope's compatible mode, vLLM, another hearth.

Streams are passed through event by event as they arrive: each SSE line becomes a chunk at once,
nothing is collected. A stream that ends without `[DONE]` or a finish reason is a truncation and
ends in an error chunk, never in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import orjson

from hearth.backends.http import RemoteBackend
from hearth.config import OpenAIModel
from hearth.core.errors import UpstreamError
from hearth.core.types import (
    ChatRequest,
    Chunk,
    Embeddings,
    Finish,
    InputType,
    Message,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_FINISH = {"stop", "length", "tool_calls", "content_filter"}


def message_to_openai(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        for img in m.images:
            url = img if img.startswith(("data:", "http://", "https://")) else f"data:image/png;base64,{img}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out["content"] = parts
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
        if not m.content:
            out["content"] = None
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


class OpenAICompatBackend(RemoteBackend):

    _discovery: asyncio.Task[None] | None = None
    kind = "openai"
    cfg: OpenAIModel

    def _body(self, req: ChatRequest) -> dict[str, Any]:
        s = req.sampling
        body: dict[str, Any] = {"model": self.http.upstream_model, "stream": req.stream}
        if req.prompt is not None:
            body["messages"] = [{"role": "user", "content": req.prompt}]
        else:
            body["messages"] = [message_to_openai(m) for m in req.messages]
        for key in ("max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            v = getattr(s, key)
            if v is not None:
                body[key] = v
        if s.stop:
            body["stop"] = s.stop
        if s.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
        if req.tools:
            body["tools"] = req.tools
            if req.tool_choice is not None:
                body["tool_choice"] = req.tool_choice
            if req.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = req.parallel_tool_calls
        if req.response_format:
            body["response_format"] = req.response_format
        if req.stream and self.cfg.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if req.provider_fields and self._forwards_fields:
            for k, v in req.provider_fields.items():
                body.setdefault(k, v)
        return body

    @functools.cached_property
    def _forwards_fields(self) -> bool:
        """OpenAI's own API answers 400 to fields it does not define; the providers that define these (DashScope,
        DeepSeek, GLM, Moonshot, Doubao, vLLM, llama.cpp's server, another hearth) take them."""
        if self.cfg.provider_fields is not None:
            return self.cfg.provider_fields
        host = (urllib.parse.urlsplit(self.cfg.base_url).hostname or "").lower()
        return not (host == "api.openai.com" or host.endswith((".openai.azure.com", ".openai.com")))

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        path = "/chat/completions"
        async with self.http.post(path, self._body(request)) as resp:
            if not request.stream:
                try:
                    data = orjson.loads(await resp.read())
                    choice = data["choices"][0]
                    msg = choice.get("message") or {}
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                    raise self.http.fail("sent an invalid completion", e) from e
                if msg.get("content"):
                    yield TextDelta(msg["content"])
                for i, call in enumerate(msg.get("tool_calls") or []):
                    fn = call.get("function") or {}
                    yield ToolCallDelta(i, call.get("id"), fn.get("name"), fn.get("arguments") or "")
                if u := data.get("usage"):
                    yield _usage(u)
                reason = choice.get("finish_reason")
                yield Finish(reason if reason in _FINISH else "stop")
                return
            pending: Finish | None = None
            async for raw in resp.lines():
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments (": ping"), event: lines
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                try:
                    event = orjson.loads(payload)
                except orjson.JSONDecodeError as e:
                    raise self.http.fail("sent broken stream data", repr(payload[:200])) from e
                if not isinstance(event, dict):
                    raise self.http.fail("sent broken stream data", repr(payload[:200]))
                if err := event.get("error"):
                    msg = err.get("message") if isinstance(err, dict) else err
                    raise self.http.fail("failed mid-stream", msg)
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if text := delta.get("content"):
                        yield TextDelta(text)
                    for call in delta.get("tool_calls") or ():
                        fn = call.get("function") or {}
                        yield ToolCallDelta(call.get("index", 0), call.get("id"), fn.get("name"),
                                            fn.get("arguments") or "")
                    if reason := choice.get("finish_reason"):
                        pending = Finish(reason if reason in _FINISH else "stop")
                if u := event.get("usage"):
                    yield _usage(u)
                    if pending is not None:
                        break  # usage is the last event; do not wait on [DONE]
            # A stream without a finish reason was cut short, whether or not [DONE] came.
            if pending is None:
                raise self.http.fail("ended the stream before it finished")
            # Read to EOF (normally just [DONE] and the chunked terminator, already sent) so that the
            # connection goes back to the pool instead of being closed.
            await resp.drain()
            yield pending

    async def embed(self, texts: list[str], *, truncate: bool = True, dimensions: int | None = None,
                    input_type: InputType | None = None) -> Embeddings:
        """`input_type` is not sent: neither API has it (a provider's own models embed symmetrically)."""
        import numpy as np

        body: dict[str, Any] = {"model": self.http.upstream_model, "input": texts, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        async with self.http.post("/embeddings", body) as resp:
            try:
                data = orjson.loads(await resp.read())
                rows = sorted(data["data"], key=lambda d: d.get("index", 0))
                vectors = np.asarray([r["embedding"] for r in rows], np.float32)
                tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise self.http.fail("sent invalid embeddings", e) from e
        if len(vectors) != len(texts):
            raise UpstreamError(f"{self.http.where()} sent {len(vectors)} embeddings for {len(texts)} inputs")
        return Embeddings(vectors, tokens, self.name)

    async def list_models(self) -> list[str]:
        data = await self.http.get_json("/models")
        models = [m for m in data.get("data", []) if isinstance(m, dict)]
        mine = next((m for m in models if m.get("id") == self.http.upstream_model), None)
        if mine is not None:
            self.discovered_context = context_of(mine)
        return [m.get("id", "") for m in models]

    async def start(self) -> None:
        """Learn the upstream's context window in the background: a provider that is down must not hold up
        the gateway's start, and its requests report that themselves."""
        if self.cfg.context_length is None:
            self._discovery = asyncio.get_running_loop().create_task(self._discover())

    async def _discover(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.list_models(), 5.0)

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        await super().close()


def context_of(model: dict[str, Any]) -> int | None:
    """vLLM's `max_model_len`, or a served context in `meta.n_ctx`. Not `n_ctx_train` (llama-server reports the
    model's training context there, often far beyond the `-c` it serves with: RAG would overfill it)."""
    meta: dict[str, Any] = model["meta"] if isinstance(model.get("meta"), dict) else {}
    for value in (model.get("max_model_len"), meta.get("n_ctx"), model.get("context_length")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def _usage(u: dict[str, Any]) -> Usage:
    details = u.get("prompt_tokens_details") or {}
    return Usage(
        int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0),
        cached_tokens=details.get("cached_tokens"),
    )
