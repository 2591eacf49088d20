"""The engine build and its start-up check (issue 23): the installed llama.cpp carries no AMX kernels, a build
that crashes is caught in a child process, reported once with what to do, remembered, and the gateway keeps
serving its other models.

A crashing build is simulated the way one looks from outside: a library folder (LLAMA_CPP_LIB_PATH, which
llama-cpp-python honours) whose libllama.so segfaults when it is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine import build, probe
from hearth.model_files import resolve_model_path
from tests.conftest import Server, start_hearth
from tests.support.httpcall import call

CRASH_C = r"""
#include <signal.h>
__attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }
int llama_decode(void) { return 0; }
"""


@pytest.fixture
def crashing_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A llama.cpp library folder whose libllama.so dies of SIGSEGV, selected through LLAMA_CPP_LIB_PATH."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed (scripts/setup.sh needs one to build llama.cpp)"
    lib = tmp_path / "crashing-build"
    lib.mkdir()
    src = tmp_path / "crash.c"
    src.write_text(CRASH_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib / "libllama.so"), str(src)], check=True)
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(lib))
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))  # its own verdict cache
    yield lib


@pytest.fixture(scope="module")
def smol_path() -> str:
    return str(resolve_model_path("builtin:smollm2-135m"))


def test_the_installed_build_has_no_amx_kernels() -> None:
    info, failure = build.system_info_isolated()
    assert info is not None, failure
    feats = build.compiled_features(info)
    assert feats, info
    assert not build.has_amx_kernels(info), f"llama.cpp was compiled with AMX: {info}"
    # The fast paths the CPU has are kept (setup.sh only takes AMX away from -march=native).
    flags = build.cpu_flags()
    if "avx2" in flags:
        assert feats.get("AVX2") == "1", info
    if "avx512f" in flags:
        assert feats.get("AVX512") == "1", info


def test_system_info_parsing() -> None:
    info = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
    feats = build.compiled_features(info)
    assert feats["AVX2"] == "1" and feats["SSE3"] == "1" and feats["REPACK"] == "1"
    assert build.has_amx_kernels(info)
    assert not build.has_amx_kernels(info.replace("AMX_INT8 = 1 | ", ""))


def test_check_passes_on_this_build_and_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 smol_path: str) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    first = probe.check("llamacpp", [smol_path])
    assert first.ok and not first.cached, first.detail
    t0 = time.perf_counter()
    again = probe.check("llamacpp", [smol_path])
    assert again.ok and again.cached
    assert time.perf_counter() - t0 < 0.1  # later starts cost nothing
    kept = json.loads(probe.cache_path().read_text())
    assert [v["ok"] for v in kept.values()] == [True]


def test_a_crashing_build_is_caught_described_and_never_run_again(crashing_build: Path, smol_path: str) -> None:
    verdict = probe.check("llamacpp", [smol_path])
    assert not verdict.ok and not verdict.cached
    detail = verdict.detail
    assert "SIGSEGV" in detail
    assert str(crashing_build) in detail  # which build
    assert build.cpu_model() in detail  # which CPU
    assert "--force-reinstall" in detail and "-mno-amx-int8" in detail  # the exact command
    assert "SIGSEGV" in verdict.summary and str(crashing_build) not in verdict.summary  # no paths for tenants
    again = probe.check("llamacpp", [smol_path])
    assert not again.ok and again.cached and again.detail == detail
    # A new build (here: the library replaced) is checked afresh.
    lib = crashing_build / "libllama.so"
    os.utime(lib, ns=(lib.stat().st_atime_ns, lib.stat().st_mtime_ns + 1_000_000_000))
    assert not probe.check("llamacpp", [smol_path]).cached


def test_a_clean_refusal_is_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file llama.cpp refuses (not a GGUF) is left to the normal load, which words it as a load error."""
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model" * 100)
    assert probe.check("llamacpp", [str(junk)]).ok


def test_doctor_names_a_crashing_build(crashing_build: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "doctor.yaml"
    cfg.write_text("server: {port: 1}\nmodels:\n  smol: {kind: llamacpp, path: 'builtin:smollm2-135m'}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "doctor", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120, env=os.environ.copy())
    assert out.returncode == 1, out.stdout + out.stderr
    assert "PROBLEM" in out.stdout and "does not load" in out.stdout and str(crashing_build) in out.stdout
    assert "--force-reinstall" in out.stdout


def test_doctor_on_this_install(tmp_path: Path) -> None:
    cfg = tmp_path / "doctor.yaml"
    cfg.write_text("server: {port: 1}\nmodels:\n  smol: {kind: llamacpp, path: 'builtin:smollm2-135m'}\n")
    out = subprocess.run([sys.executable, "-m", "hearth", "doctor", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120)
    text = out.stdout
    for topic in ("hearth", "cpu", "amx", "llama.cpp", "model smol", "port", "keys"):
        assert any(line.split()[1:2] == topic.split()[:1] for line in text.splitlines()), (topic, text)
    assert "engine check passed" in text and "compiled with:" in text
    # Port 1 cannot be bound without privileges, or is free as root: either way the doctor says which.
    assert out.returncode == (1 if "PROBLEM" in text else 0), text


@pytest.fixture
def gateway_on_crashing_build(crashing_build: Path, tmp_path: Path, upstream: Server) -> Iterator[Server]:
    config = f"""
models:
  smol:
    kind: llamacpp
    path: builtin:smollm2-135m
    n_ctx: 256
    threads: 2
  remote:
    kind: openai
    base_url: {upstream.url}/v1
    model: smol
    timeouts: {{first_token: 30, total: 60}}
  both:
    kind: router
    default: smol
    fallbacks: {{smol: [remote]}}
"""
    s = start_hearth(config, tmp_path, "crashing", env={"LLAMA_CPP_LIB_PATH": str(crashing_build),
                                                         "HEARTH_HOME": str(tmp_path / "home")})
    yield s
    s.stop()


def test_gateway_serves_its_other_models_when_the_engine_crashes(gateway_on_crashing_build: Server) -> None:
    s = gateway_on_crashing_build
    with urllib.request.urlopen(s.url + "/health", timeout=5) as r:
        health = json.loads(r.read())
        assert r.status == 200
    assert health["status"] == "degraded"
    assert health["models"]["smol"] == "unavailable" and health["models"]["remote"] == "ready"
    assert "SIGSEGV" in health["unavailable"]["smol"]
    msg = [{"role": "user", "content": "Say hi"}]
    status, body = call(s.url + "/v1/chat/completions", {"model": "remote", "messages": msg, "max_tokens": 4})
    assert status == 200, body
    status, body = call(s.url + "/v1/chat/completions", {"model": "smol", "messages": msg, "max_tokens": 4})
    assert status == 503 and body["error"]["code"] == "model_unavailable", body  # type: ignore[index]
    assert "crashing-build" not in json.dumps(body)  # no paths for tenants
    status, body = call(s.url + "/api/chat", {"model": "smol", "messages": msg, "stream": False})
    assert status == 503 and "cannot run on this server" in str(body["error"])
    # A router falls back past it without trying it.
    status, body = call(s.url + "/v1/chat/completions", {"model": "both", "messages": msg, "max_tokens": 4})
    assert status == 200, body
    with urllib.request.urlopen(s.url + "/api/ps", timeout=5) as r:
        ps = json.loads(r.read())["models"]
    assert [(m["name"], m["state"]) for m in ps] == [("smol", "unavailable")]
    out = subprocess.run([sys.executable, "-m", "hearth", "ps", "--url", s.url], capture_output=True, text=True,
                         timeout=30)
    assert "unavailable" in out.stdout and "SIGSEGV" in out.stdout, out.stdout
    # One clear paragraph in the log, with the command that fixes it; the gateway did not die.
    log = s.log.read_text()
    assert log.count("model smol is unavailable") == 1, log
    assert "--force-reinstall" in log and "Segmentation" not in log
    assert s.proc.poll() is None
