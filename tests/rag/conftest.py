"""A gateway with a knowledge-base store in a temporary folder, and a real Chroma server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, free_port, start_hearth, wait_http

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rag")


@pytest.fixture(scope="module")
def rag_config(rag_home: Path) -> str:
    return f"""
server:
  max_body_bytes: 65536
models:
  smol:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 2048
    threads: 2
rag:
  path: {rag_home / "kbs"}
  chat_model: smol
  profiles:
    docs-bot: {{kb: docs, top_k: 2}}
"""


@pytest.fixture(scope="module")
def rag_gateway(rag_home: Path, rag_config: str) -> Iterator[Server]:
    s = start_hearth(rag_config, rag_home, "rag-gateway")
    yield s
    s.stop()


def chroma_binary() -> str | None:
    found = os.environ.get("HEARTH_TEST_CHROMA") or str(ROOT / ".venv-chroma" / "bin" / "chroma")
    return found if os.path.exists(found) else shutil.which("chroma")


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = chroma_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the Chroma server is not installed; scripts/test.sh installs it into .venv-chroma")
        pytest.skip("the Chroma server is not installed (scripts/test.sh installs it into .venv-chroma)")
    data = tmp_path_factory.mktemp("chroma")
    port = free_port()
    log = data / "chroma.log"
    proc = subprocess.Popen([binary, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(proc, port, log)
    try:
        wait_http(f"{server.url}/api/v2/heartbeat", proc, log, timeout=60)
        yield server.url
    finally:
        server.stop()
