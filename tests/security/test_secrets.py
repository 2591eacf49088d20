"""What tenants are shown of the operator's secrets: provider names, never addresses or upstream bodies; and an
admin key that can be guessed is refused at start. (Before: `owned_by` carried `user:password@`, and a
provider's 500 that repeated the key hearth sent reached the tenant verbatim; `HEARTH_ADMIN_KEY=a` worked.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.conftest import Gateway, call, chat

pytestmark = pytest.mark.model


def test_model_listings_show_no_provider_address(gw: Gateway) -> None:
    key = gw.key("tenant-a")
    listing = call(gw.url, "GET", "/v1/models", key=key)
    one = call(gw.url, "GET", "/v1/models/leaky", key=key)
    for r in (listing, one):
        assert r.status == 200
        text = r.raw.decode()
        assert "hunter2" not in text and "operator" not in text and "token=abc" not in text and "://" not in text
    assert one.body["owned_by"] == "openai"


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_error_that_echoes_the_key_stays_in_the_log(gw: Gateway, stream: bool) -> None:
    r = chat(gw.url, gw.key("tenant-a"), "hi", model="leaky", stream=stream)
    text = r.raw.decode()
    assert r.status == 502, text
    assert "sk-provider-secret-42" not in text and "hunter2" not in text and "127.0.0.1" not in text
    assert "provider 'leaky' answered 500" in text
    log = gw.server.log.read_text()
    assert "sk-provider-secret-42" in log  # the operator sees what the provider said...
    assert "hunter2" not in log  # ...and where it is, without its password


def test_a_short_admin_key_is_refused_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text("models:\n  smol: {kind: llamacpp, path: 'builtin:smollm2-135m'}\n")
    for weak in ("weak-zq", "x" * 31):
        p = subprocess.run([sys.executable, "-m", "hearth", "serve", "--config", str(cfg), "--port", "9"],
                           env={**os.environ, "HEARTH_ADMIN_KEY": weak}, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "at least 32" in p.stderr, p.stderr
        assert weak not in p.stderr
