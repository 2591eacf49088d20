"""A remote Ollama server (`/api/chat`, `/api/generate`), streamed line by line as NDJSON arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from hearth.backends.http import RemoteBackend
from hearth.config import OllamaModel
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

_NS = 1e-9


def message_to_ollama(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        out["images"] = [i.split(",", 1)[1] if i.startswith("data:") else i for i in m.images]
    if m.tool_calls:
        calls = []
        for c in m.tool_calls:
            try:
                args = orjson.loads(c.arguments or "{}")
            except orjson.JSONDecodeError:
                args = {}
            calls.append({"function": {"name": c.name, "arguments": args}})
        out["tool_calls"] = calls
    if m.role == "tool" and m.name:
        out["tool_name"] = m.name
    return out


def sampling_to_options(req: ChatRequest) -> dict[str, Any]:
    s = req.sampling
    opts: dict[str, Any] = {}
    mapping = {
        "max_tokens": "num_predict", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
        "min_p": "min_p", "seed": "seed", "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty", "repeat_penalty": "repeat_penalty",
    }
    for ours, theirs in mapping.items():
        v = getattr(s, ours)
        if v is not None:
            opts[theirs] = v
    if s.stop:
        opts["stop"] = s.stop
    return opts


class OllamaBackend(RemoteBackend):
    kind = "ollama"
    cfg: OllamaModel

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        body: dict[str, Any] = {"model": self.http.upstream_model, "stream": request.stream}
        if opts := sampling_to_options(request):
            body["options"] = opts
        if request.thinking is not None:
            body["think"] = request.thinking  # Ollama's own switch for reasoning models
        if request.response_format:
            rf = request.response_format
            body["format"] = rf.get("json_schema", {}).get("schema") if rf.get("type") == "json_schema" else "json"
        if request.prompt is not None:
            path = "/api/generate"
            body.update(prompt=request.prompt, raw=True)
            key = "response"
        else:
            path = "/api/chat"
            body["messages"] = [message_to_ollama(m) for m in request.messages]
            if request.tools:
                body["tools"] = request.tools
            key = "message"
        async with self.http.post(path, body) as resp:
            if not request.stream:
                try:
                    data = orjson.loads(await resp.read())
                except orjson.JSONDecodeError as e:
                    raise self.http.fail("sent invalid JSON", e) from e
                for chunk in self._convert(data, key):
                    yield chunk
                return
            done = False
            async for line in resp.lines():
                line = line.strip()
                if not line:
                    continue
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise self.http.fail("sent a broken stream line", repr(line[:200])) from e
                for chunk in self._convert(data, key):
                    yield chunk
                if data.get("done"):
                    done = True
                    break
            if not done:
                raise self.http.fail("closed the stream before it finished")

    def _convert(self, data: Any, key: str) -> list[Chunk]:
        if not isinstance(data, dict):
            raise self.http.fail("sent an unexpected value", str(data)[:200])
        if err := data.get("error"):
            raise self.http.fail("failed", err)
        out: list[Chunk] = []
        if key == "message":
            msg = data.get("message") or {}
            if text := msg.get("content"):
                out.append(TextDelta(text))
            for i, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") or {}
                args = fn.get("arguments")
                text = args if isinstance(args, str) else orjson.dumps(args or {}).decode()
                out.append(ToolCallDelta(i, f"call_{i}", fn.get("name"), text))
        elif text := data.get(key):
            out.append(TextDelta(text))
        if data.get("done"):
            out.append(Usage(
                int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0),
                prompt_seconds=(data.get("prompt_eval_duration") or 0) * _NS or None,
                completion_seconds=(data.get("eval_duration") or 0) * _NS or None,
            ))
            reason = data.get("done_reason") or "stop"
            has_calls = any(isinstance(c, ToolCallDelta) for c in out)
            out.append(Finish("tool_calls" if has_calls else ("length" if reason == "length" else "stop")))
        return out

    async def list_models(self) -> list[str]:
        data = await self.http.get_json("/api/tags")
        return [m.get("name", "") for m in data.get("models", [])]

    async def embed(self, texts: list[str], *, truncate: bool = True, dimensions: int | None = None,
                    input_type: InputType | None = None) -> Embeddings:
        """`input_type` is not sent: neither API has it (a provider's own models embed symmetrically)."""
        import numpy as np

        body: dict[str, Any] = {"model": self.http.upstream_model, "input": texts, "truncate": truncate}
        if dimensions is not None:
            body["dimensions"] = dimensions
        async with self.http.post("/api/embed", body) as resp:
            try:
                data = orjson.loads(await resp.read())
                vectors = np.asarray(data["embeddings"], np.float32)
                tokens = int(data.get("prompt_eval_count") or 0)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise self.http.fail("sent invalid embeddings", e) from e
        if len(vectors) != len(texts):
            raise UpstreamError(f"{self.http.where()} sent {len(vectors)} embeddings for {len(texts)} inputs")
        return Embeddings(vectors, tokens, self.name)
