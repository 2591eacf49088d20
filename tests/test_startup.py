"""Start-up behaviour: a light `import hearth`, /health 503 while loading, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hearth.config import multilingual_embedder_available
from tests.conftest import start_hearth, wait_http


def test_import_is_light() -> None:
    code = "import sys, hearth, hearth.config, hearth.core.types; print(sorted(m for m in ('aiohttp', 'llama_cpp', 'openai', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_health_is_503_while_the_model_loads(tmp_path: Path) -> None:
    s = start_hearth("models:\n  smol: {kind: llamacpp, path: 'builtin:smollm2-135m', n_ctx: 256}\n", tmp_path, "h",
                     wait=False)
    try:
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and 200 not in seen:
            try:
                with urllib.request.urlopen(s.url + "/health", timeout=2) as r:
                    seen.add(r.status)
                    body = json.loads(r.read())
            except urllib.error.HTTPError as e:
                seen.add(e.code)
                assert json.loads(e.read())["models"]["smol"] == "loading"
            except urllib.error.URLError:
                pass
            time.sleep(0.02)
        embedders = {"all-minilm", *(["multilingual-e5-small"] if multilingual_embedder_available() else [])}
        assert seen == {503, 200} and body == {"status": "ready", "models": {"smol": "ready"} | dict.fromkeys(
            embedders, "ready")}
    finally:
        s.stop()


def test_remote_only_gateway_is_ready_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    s = start_hearth("models:\n  r: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}\n", tmp_path, "r", wait=False)
    try:
        wait_http(s.url + "/health", s.proc, s.log, timeout=10)
        assert time.monotonic() - t0 < 5
    finally:
        s.stop()


def test_missing_model_file_fails_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  m: {kind: llamacpp, path: /nonexistent/x.gguf}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "serve", "--config", str(cfg), "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "model file not found: /nonexistent/x.gguf" in out.stderr
