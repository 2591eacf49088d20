"""Real processes for the integration tests, started once per session.

- `upstream`: a second hearth serving SmolLM2-135M, used as the OpenAI-compatible and the
  Ollama-compatible remote provider.
- `bad`: tests/support/bad_upstream.py, a real server that fails in scripted ways.
- `gateway`: the hearth under test: the default local model (Qwen2.5-Coder-0.5B, alias `local`),
  SmolLM2 for the faster engine tests, and remote models pointing at the two servers above.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def start_hearth(config: str, tmp: Path, name: str, wait: bool = True, env: dict[str, str] | None = None,
                 port: int | None = None) -> Server:
    port = port or free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(config)
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--config", str(cfg), "--port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    server = Server(proc, port, log)
    if wait:
        try:
            wait_http(server.url + "/health", proc, log)
        except Exception:
            server.stop()
            raise
    return server


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A real redis-server on a free loopback port, without persistence; yields the port."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (scripts/test.sh installs it)"
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def smol_model(**fields: object) -> str:
    """The YAML of a model entry `smol` (SmolLM2-135M, 1024-token context, 2 threads), with extra fields."""
    extra = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return f"  smol:\n    kind: llamacpp\n    path: builtin:smollm2-135m\n    n_ctx: 1024\n    threads: 2\n{extra}"


@pytest.fixture(scope="session", autouse=True)
def hearth_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh $HEARTH_HOME for the whole run (keys, knowledge bases), so that nothing a developer keeps in
    theirs (an API key turns authentication on) changes what the tests see. The joined model files are
    shared through a link: joining the default model takes a while."""
    real = Path(os.environ.get("HEARTH_HOME") or Path.home() / ".cache" / "hearth")
    (real / "models").mkdir(parents=True, exist_ok=True)
    home = tmp_path_factory.mktemp("hearth-home")
    (home / "models").symlink_to(real / "models", target_is_directory=True)
    before = os.environ.get("HEARTH_HOME")
    os.environ["HEARTH_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("HEARTH_HOME", None)
    else:
        os.environ["HEARTH_HOME"] = before


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hearth")


@pytest.fixture(scope="session")
def upstream(tmp_session: Path) -> Iterator[Server]:
    s = start_hearth("models:\n" + smol_model(), tmp_session, "upstream")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def bad(tmp_session: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_session / "bad.log"
    proc = subprocess.Popen([sys.executable, str(HERE / "support" / "bad_upstream.py"), str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    s = Server(proc, port, log)
    wait_http(f"{s.url}/ok/v1/models", proc, log, timeout=30)
    yield s
    s.stop()


def _remote(name: str, kind: str, base: str, first_token: float = 2.0, total: float = 8.0) -> str:
    return f"""
  {name}:
    kind: {kind}
    base_url: {base}
    model: smol
    api_key_env: HEARTH_TEST_KEY
    timeouts: {{connect: 1.0, first_token: {first_token}, total: {total}}}
"""


@pytest.fixture(scope="session")
def gateway(tmp_session: Path, upstream: Server, bad: Server) -> Iterator[Server]:
    refused = free_port()  # nothing listens there
    remotes = "".join([
        _remote("remote-openai", "openai", f"{upstream.url}/v1", first_token=30, total=60),
        _remote("remote-ollama", "ollama", upstream.url, first_token=30, total=60),
        # The upstream hearth speaks Anthropic's Messages API too: the anthropic provider with a real model behind.
        _remote("remote-anthropic", "anthropic", upstream.url, first_token=30, total=60),
        _remote("bad-refused", "openai", f"http://127.0.0.1:{refused}/v1"),
        *(_remote(f"bad-{m}", "openai", f"{bad.url}/{m}/v1") for m in
          ("ok", "500", "429", "401", "hang", "stall", "garbage", "truncate", "slow", "jsonfence", "jsonretry",
           "jsonbad", "toolbad")),
        *(_remote(f"bad-ollama-{m}", "ollama", f"{bad.url}/{m}") for m in ("ok", "stall", "garbage", "truncate")),
        _remote("remote-embed", "openai", f"{upstream.url}/v1", first_token=30, total=60).replace("smol", "all-minilm"),
        _remote("remote-embed-ollama", "ollama", upstream.url, first_token=30, total=60).replace("smol", "all-minilm"),
    ])
    config = f"""
server:
  max_body_bytes: 262144
models:
  qwen2.5-coder-0.5b:
    kind: llamacpp
    aliases: [local]
    threads: 2
  smol:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 512
    threads: 2
    max_sequences: 2
    max_queue: 1
  smol-small-kv:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 256
    threads: 2
    kv_cache_tokens: 512
    prefix_slots: 3
    max_sequences: 2
    warmup: false
  to-remote:
    kind: router
    default: remote-openai
    rules: [{{pattern: '(?i)^local:', target: qwen2.5-coder-0.5b}}]
    health_interval: null
{remotes}
"""
    s = start_hearth(config, tmp_session, "gateway", env={"HEARTH_TEST_KEY": "sk-test"})
    yield s
    s.stop()
