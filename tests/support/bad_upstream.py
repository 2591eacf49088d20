"""A real HTTP server that misbehaves on purpose, for fault tests.

Run as `python bad_upstream.py PORT`. The first path segment picks the failure; the rest is an
OpenAI (`/v1/chat/completions`, `/v1/models`) or Ollama (`/api/chat`) path:

  /ok/...        a correct, short answer ("Hello from upstream")
  /500/...       HTTP 500 with an OpenAI error body
  /429/...       HTTP 429 with Retry-After: 7
  /401/...       HTTP 401 (bad key)
  /hang/...      accepts the request and never answers (no headers)
  /stall/...     streams two tokens, then goes silent without closing
  /garbage/...   streams one token, then a line that is not JSON
  /truncate/...  streams two tokens, then closes the stream without a finish reason or [DONE]
  /slow/...      answers correctly after 1.0 s
  /drip/...      streams 30 tokens, one every 0.1 s (a stream long enough to kill a replica in the middle)
  /flap/...      up for 2 s, down (HTTP 500) for 2 s, and so on
  /jsonfence/... JSON inside a ```json fence with a trailing comma (repairable)
  /jsonretry/... JSON missing a required field, then correct once the request carries the feedback
  /jsonbad/...   never JSON
  /toolbad/...   a tool call whose arguments break the function's schema
  /echokey/...   HTTP 500 whose error message repeats the Authorization header it was sent (as some do)
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiohttp import web


def _chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    ev = {"id": "x", "object": "chat.completion.chunk", "created": int(time.time()), "model": "bad",
          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(ev) + b"\n\n"


def _ollama_line(text: str, done: bool = False) -> bytes:
    d = {"model": "bad", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": text},
         "done": done}
    if done:
        d.update(done_reason="stop", prompt_eval_count=3, eval_count=4)
    return orjson.dumps(d) + b"\n"


async def handle(request: web.Request) -> web.StreamResponse:
    mode = request.match_info["mode"]
    rest = request.match_info["rest"]
    ollama = rest.startswith("api/")
    if rest.endswith("models") or rest.endswith("tags"):
        return web.json_response({"object": "list", "data": [{"id": "bad", "object": "model"}], "models": []})
    body = orjson.loads(await request.read()) if request.can_read_body else {}
    stream = body.get("stream", ollama)
    if mode == "500":
        return web.json_response(
            {"error": {"message": "internal upstream failure", "type": "server_error"}}, status=500
        )
    if mode == "echokey":
        said = f"invalid request for key {request.headers.get('Authorization', '')}"
        return web.json_response({"error": {"message": said, "type": "server_error"}}, status=500)
    if mode == "429":
        return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})
    if mode == "401":
        return web.json_response({"error": {"message": "invalid api key"}}, status=401)
    if mode == "hang":
        await asyncio.sleep(3600)
    if mode == "slow":
        await asyncio.sleep(1.0)
    if mode == "flap" and int(time.time() / 2) % 2:
        return web.json_response({"error": {"message": "flapping: down", "type": "server_error"}}, status=500)
    if mode.startswith(("json", "tool")):
        return _structured(mode, body)
    if not stream:
        if ollama:
            return web.Response(body=_ollama_line("Hello from upstream", done=True), content_type="application/json")
        return web.json_response({
            "id": "x", "object": "chat.completion", "created": 0, "model": "bad",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from upstream"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        })
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson" if ollama else "text/event-stream"})
    await resp.prepare(request)
    line = _ollama_line if ollama else _chunk
    if mode == "drip":
        for i in range(30):
            await resp.write(line(f" t{i}"))
            await asyncio.sleep(0.1)
    await resp.write(line("Hello"))
    await resp.write(line(" from"))
    if mode == "stall":
        await asyncio.sleep(3600)
    if mode == "garbage":
        await resp.write(b"data: {this is not json\n\n" if not ollama else b"{this is not json\n")
        await asyncio.sleep(0.05)
        return resp
    if mode == "truncate":
        await resp.write_eof()
        return resp
    await resp.write(line(" upstream"))
    if ollama:
        await resp.write(_ollama_line("", done=True))
    else:
        await resp.write(_chunk(None, "stop"))
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def _structured(mode: str, body: dict) -> web.Response:  # type: ignore[type-arg]
    msg: dict = {"role": "assistant", "content": None}  # type: ignore[type-arg]
    feedback = any("previous answer was invalid" in str(m.get("content")) for m in body.get("messages", []))
    if mode == "jsonfence":
        msg["content"] = 'Here you go:\n```json\n{"name": "Ada", "age": 36,}\n```'
    elif mode == "jsonretry":
        msg["content"] = '{"name": "Ada", "age": 36}' if feedback else '{"name": "Ada"}'
    elif mode == "jsonbad":
        msg["content"] = "I would rather not."
    else:
        msg["tool_calls"] = [{"id": "c1", "type": "function",
                              "function": {"name": "get_weather", "arguments": '{"city": 5}'}}]
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 0, "model": "bad",
        "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if mode == "toolbad" else "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    })


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{mode}/{rest:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
