"""What the benchmark scripts share: a free port, waiting for a server, and one streamed chat completion
read as raw SSE (http.client: the least client overhead, so the figures are the server's)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str = "/health", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout}s")


@dataclass
class Streamed:
    t0: float
    stamps: list[float] = field(default_factory=list)  # arrival time of each content chunk
    parts: list[str] = field(default_factory=list)
    finish: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ttft(self) -> float | None:
        return self.stamps[0] - self.t0 if self.stamps else None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def decode_rate(self) -> float | None:
        """Content chunks per second after the first one."""
        if len(self.stamps) < 2 or self.stamps[-1] <= self.stamps[0]:
            return None
        return (len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0])


def stream_chat(port: int, body: dict[str, Any], *, t0: float | None = None,
                conn: http.client.HTTPConnection | None = None) -> Streamed:
    """POST /v1/chat/completions with stream=true; `t0` lets a caller time from an earlier moment."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    out = Streamed(t0 if t0 is not None else time.perf_counter())
    c.request(
        "POST", "/v1/chat/completions", json.dumps({**body, "stream": True}), {"Content-Type": "application/json"}
    )
    resp = c.getresponse()
    out.headers = {k.lower(): v for k, v in resp.getheaders()}
    while line := resp.readline():
        if not line.startswith(b"data: {"):
            continue
        ev = json.loads(line[6:])
        if not ev.get("choices"):
            continue
        ch = ev["choices"][0]
        out.finish = ch.get("finish_reason") or out.finish
        if text := ch["delta"].get("content"):
            out.stamps.append(time.perf_counter())
            out.parts.append(text)
    if conn is None:
        c.close()
    return out
