"""Faults, with real parts: two hearth replicas behind Debian's nginx (configured from deploy/nginx/hearth.conf),
sharing a real Redis, in front of a real upstream that misbehaves on purpose (tests/support/bad_upstream.py).

- a replica killed mid-stream: its client's stream ends (it does not hang), and nginx sends the next
  requests to the replica that is left;
- Redis killed and restarted: requests keep being answered, and the shared cache comes back;
- an upstream that flaps every 2 s: every request is answered, by it or by the fallback;
- a client that aborts its stream while others run: the others finish;
- a client that dribbles its body: a 408 in the API's format after server.body_timeout;
- a client that dribbles its headers: nginx closes the connection after client_header_timeout.

Every test is bounded in time (pytest-timeout, and each wait has its own deadline).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, free_port, smol_model, start_hearth, wait_http

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]
DEPLOY = Path(__file__).parents[2] / "deploy"


@dataclass
class Cluster:
    nginx: int  # the port clients use
    replicas: list[Server]
    redis_port: int
    redis: subprocess.Popen[bytes]
    tmp: Path

    def start_redis(self) -> None:
        exe = shutil.which("redis-server")
        assert exe
        self.redis = subprocess.Popen([exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.redis_port)


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _nginx_conf(tmp: Path, listen: int, replicas: list[int]) -> Path:
    """deploy/nginx/hearth.conf as shipped, with this test's replicas and port, inside a minimal nginx.conf."""
    server = (DEPLOY / "nginx" / "hearth.conf").read_text()
    upstreams = "".join(f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=5s;\n" for p in replicas)
    server = server.replace("    server hearth:8434 resolve max_fails=3 fail_timeout=5s;\n", upstreams)
    assert upstreams in server, "deploy/nginx/hearth.conf changed its upstream line: update this test"
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    # The shipped 15 s, shortened so that the header-dribble test takes 2 s.
    assert "client_header_timeout 15s;" in server, "deploy/nginx/hearth.conf changed its header timeout"
    server = server.replace("client_header_timeout 15s;", "client_header_timeout 2s;")
    server = server.replace("proxy_pass http://hearth;", "proxy_pass http://hearth;\n        add_header X-Upstream $upstream_addr always;")
    (tmp / "hearth.conf").write_text(server)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    include {tmp}/hearth.conf;
}}
""")
    return conf


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, bad: Server) -> Iterator[Cluster]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx is not installed (scripts/test.sh installs Debian's nginx-light)"
    tmp = tmp_path_factory.mktemp("faults")
    redis_port = free_port()
    c = Cluster(free_port(), [], redis_port, None, tmp)  # type: ignore[arg-type]
    c.start_redis()
    cfg = (
        f"server: {{body_timeout: 1.5}}\ncache: {{redis_url: 'redis://127.0.0.1:{redis_port}/0', redis_timeout: 0.2}}\n"
        "models:\n" + smol_model() +
        f"  drip: {{kind: openai, base_url: '{bad.url}/drip/v1', model: x}}\n"
        f"  ok: {{kind: openai, base_url: '{bad.url}/ok/v1', model: x}}\n"
        f"  flap: {{kind: openai, base_url: '{bad.url}/flap/v1', model: x}}\n"
        "  steady: {kind: router, default: flap, fallbacks: {flap: [ok]}, retries: 0, health_interval: null,\n"
        "           breaker: {failures: 1, cooldown: 1}}\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(2):
            c.replicas.append(start_hearth(cfg, tmp, f"replica{i}", wait=False))
        for r in c.replicas:
            wait_http(r.url + "/health", r.proc, r.log)
        conf = _nginx_conf(tmp, c.nginx, [r.port for r in c.replicas])
        procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=(tmp / "nginx.out").open("wb")))
        _wait_port(c.nginx)
        yield c
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for r in c.replicas:
            r.stop()
        c.redis.terminate()
        c.redis.wait(10)


def chat(port: int, model: str, text: str = "hi", timeout: float = 30, **extra: Any) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                                 data=json.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                                                  **extra}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_replica_killed_mid_stream(cluster: Cluster) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.nginx, timeout=10)
    conn.request("POST", "/v1/chat/completions", json.dumps({"model": "drip", "stream": True,
                 "messages": [{"role": "user", "content": "a long answer"}]}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    upstream = resp.getheader("X-Upstream") or ""
    victim = next(r for r in cluster.replicas if upstream.endswith(f":{r.port}"))
    survivor = next(r for r in cluster.replicas if r is not victim)
    got = 0
    while got < 5:
        line = resp.readline()
        assert line, "the stream ended before the replica was killed"
        got += line.startswith(b"data: {")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    t0 = time.monotonic()
    rest = b""
    try:
        while chunk := resp.read1(4096):
            rest += chunk
    except (http.client.IncompleteRead, ConnectionError, TimeoutError):
        pass  # the stream was cut: what a client must see when its replica dies
    assert time.monotonic() - t0 < 5, "the client's stream hung after its replica died"
    assert b"[DONE]" not in rest  # never a silently truncated answer that looks complete
    for _ in range(4):  # nginx sends everything to the replica that is left
        status, headers, body = chat(cluster.nginx, "ok")
        assert status == 200 and body["choices"][0]["message"]["content"] == "Hello from upstream"
        assert headers["X-Upstream"].endswith(f":{survivor.port}")
    # Bring the replica back, on its port, for the tests after this one (nginx's config names the port).
    back = start_hearth(victim.log.with_suffix(".yaml").read_text(), cluster.tmp, victim.log.stem + "b",
                        port=victim.port)
    cluster.replicas[cluster.replicas.index(victim)] = back


def test_redis_killed_and_restarted(cluster: Cluster) -> None:
    r0 = cluster.replicas[0]
    q = {"temperature": 0}
    assert chat(r0.port, "ok", "redis test one", **q)[0] == 200
    cluster.redis.kill()
    cluster.redis.wait(10)
    for i in range(3):  # Redis down: answered all the same (the cache is skipped, never waited on)
        t0 = time.monotonic()
        status, _, _body = chat(r0.port, "ok", f"while redis is down {i}", **q)
        assert status == 200 and time.monotonic() - t0 < 5
    cluster.start_redis()
    # The cache comes back: an answer one replica stores is a hit on the other, which never saw the question
    # (a new one each pass, so neither in-process cache can answer it: only Redis).
    deadline = time.monotonic() + 10
    n = 0
    while True:
        n += 1
        chat(cluster.replicas[0].port, "ok", f"after redis returned {n}", **q)
        status, headers, _ = chat(cluster.replicas[1].port, "ok", f"after redis returned {n}", **q)
        if headers.get("x-hearth-cache") == "hit":
            break
        assert time.monotonic() < deadline, "the shared cache did not come back after Redis restarted"
        time.sleep(0.5)


def test_upstream_that_flaps(cluster: Cluster) -> None:
    served: list[str] = []
    t_end = time.monotonic() + 6  # three flaps
    while time.monotonic() < t_end:
        status, headers, body = chat(cluster.nginx, "steady")
        assert status == 200, body
        served.append(headers["x-hearth-backend"])
        time.sleep(0.2)
    assert {"flap", "ok"} <= set(served)  # both the flapping upstream (when up) and the fallback answered


def test_client_abort_leaves_other_streams_running(cluster: Cluster) -> None:
    port = cluster.replicas[0].port
    conns = []
    for model in ("drip", "drip", "smol", "smol"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = {"model": model, "stream": True, "max_tokens": 24, "temperature": 0,
                "messages": [{"role": "user", "content": "Count from one to twenty."}]}
        c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        conns.append((model, c, c.getresponse()))
    for _, c, resp in conns[::2]:  # one of each kind is dropped after its first tokens
        resp.readline()
        c.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        c.close()
    for model, _, resp in conns[1::2]:
        text = resp.read()
        assert b"data: [DONE]" in text, f"{model}: {text[-300:]!r}"
        assert b'"finish_reason":"stop"' in text or b'"finish_reason":"length"' in text
    status, _, _ = chat(port, "smol", "still there?", max_tokens=4)
    assert status == 200


def test_client_that_dribbles_its_headers(cluster: Cluster) -> None:
    """aiohttp has no header timeout; the load balancer in front of the replicas (deploy/nginx) cuts such a
    client off after client_header_timeout, and no replica ever sees the request."""
    with socket.create_connection(("127.0.0.1", cluster.nginx), timeout=10) as s:
        t0 = time.monotonic()
        closed_after = None
        for ch in b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" * 10:
            try:
                s.sendall(bytes([ch]))
            except OSError:
                closed_after = time.monotonic() - t0
                break
            time.sleep(0.2)
            s.setblocking(False)
            try:
                if s.recv(65536) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_after = time.monotonic() - t0
                break
            finally:
                s.setblocking(True)
            if time.monotonic() - t0 > 8:
                break
    assert closed_after is not None and 1.5 < closed_after < 5, closed_after


def test_client_that_dribbles_its_body(cluster: Cluster) -> None:
    port = cluster.replicas[0].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 200\r\n\r\n{\"model\":")
        t0 = time.monotonic()
        reply = b""
        for ch in b' "ok", "messages": []':
            try:
                s.sendall(bytes([ch]))
            except OSError:
                break
            time.sleep(0.3)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                reply += s.recv(65536)
            s.setblocking(True)
            if reply:
                break
        took = time.monotonic() - t0
        s.settimeout(5)
        try:
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except (TimeoutError, OSError):
            pass
    head, _, raw = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"Connection: close" in head  # and the server closes it (after aiohttp's lingering read)
    assert json.loads(raw)["error"]["code"] == "request_timeout" and took < 4
