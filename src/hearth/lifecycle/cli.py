"""`hearth pull`, `hearth list`, `hearth rm`, `hearth cp`, `hearth ps`: Ollama's model commands, and
`hearth adapter add|list|rm` for LoRA adapters.

Pull, list, remove and copy work on the model store directly, with no gateway running; a running gateway
follows the store and serves the change within seconds. `ps` asks a running gateway (what is loaded is
its memory, not the disk's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hearth.terminal import bar, size, table

if TYPE_CHECKING:
    from hearth.config import Config
    from hearth.lifecycle.store import ModelStore

Load = Callable[[argparse.Namespace], object]


def add_parser(sub: Any, load: Load) -> None:
    def command(parent: Any, name: str, help: str, run: Callable[[argparse.Namespace, Load], int],
                *positionals: str) -> argparse.ArgumentParser:
        """A command that works on the model store of `--config`."""
        p: argparse.ArgumentParser = parent.add_parser(name, help=help)
        for arg in positionals:
            p.add_argument(arg)
        p.add_argument("--config")
        p.set_defaults(func=lambda a: run(a, load))
        return p

    command(sub, "pull", "download a GGUF model from the Hugging Face Hub (or $HF_ENDPOINT): qwen2.5:1.5b, "
            "Qwen/Qwen2.5-1.5B-Instruct-GGUF:q4_k_m, or owner/repo/file.gguf", _pull, "name")
    command(sub, "list", "list pulled models", _list)
    command(sub, "rm", "remove a pulled model (its files go when no other name uses them)", _rm, "name")
    command(sub, "cp", "serve a pulled model under a second name (no bytes are copied)", _cp, "source",
            "destination")
    ad = sub.add_parser("adapter", help="LoRA adapters (GGUF) served on local models as <base>+<name>")
    asub = ad.add_subparsers(dest="adapter_command", required=True)
    aa = command(asub, "add", "serve an adapter file (copied into the model store)", _adapter_add, "name", "file")
    aa.add_argument("--base", help="the local model it was trained on (default: the only one)")
    aa.add_argument("--scale", type=float, default=1.0)
    command(asub, "list", "list stored adapters", _adapter_list)
    command(asub, "rm", "remove a stored adapter", _adapter_rm, "name")
    ps = sub.add_parser("ps", help="list the models a running gateway has loaded")
    ps.add_argument("--url", default=os.environ.get("HEARTH_URL", "http://127.0.0.1:8434"))
    ps.set_defaults(func=_ps)


def _store(args: argparse.Namespace, load: Load) -> tuple[Config, ModelStore]:
    from hearth.config import Config
    from hearth.lifecycle.store import ModelStore

    cfg = load(args)
    assert isinstance(cfg, Config)
    return cfg, ModelStore(cfg.local.root())


def _pull(args: argparse.Namespace, load: Load) -> int:
    from hearth.core.errors import HearthError
    from hearth.lifecycle.names import parse_ref
    from hearth.lifecycle.pull import Puller

    cfg, store = _store(args, load)
    bar = ProgressBar(sys.stderr, sys.stderr.isatty())
    try:
        ref = parse_ref(args.name)
        if ref.name in cfg.models:
            print(f"hearth: {ref.name!r} is a model of the config, not one to pull", file=sys.stderr)
            return 2
        token = os.environ.get(cfg.local.hub_token_env) or None
        Puller(store, endpoint=cfg.local.hub_endpoint, token=token).pull(ref, bar.update)
    except HearthError as e:
        bar.end()
        print(f"hearth: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.end()
        print("hearth: interrupted; pull again to resume", file=sys.stderr)
        return 130
    bar.end()
    print(f"success: {ref.name}")
    return 0


def _list(args: argparse.Namespace, load: Load) -> int:
    _, store = _store(args, load)
    rows = [(m.name, m.digest[:12], size(m.size), m.details.get("quantization_level", ""),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(m.modified_at))) for m in store.entries()]
    print(table(["NAME", "ID", "SIZE", "QUANT", "MODIFIED"], rows))
    return 0


def _rm(args: argparse.Namespace, load: Load) -> int:
    _, store = _store(args, load)
    try:
        freed = store.remove(args.name)
    except KeyError:
        print(f"hearth: model {args.name!r} not found", file=sys.stderr)
        return 1
    print(f"deleted '{args.name}'" + (f" ({len(freed)} file(s) freed)" if freed else ""))
    return 0


def _cp(args: argparse.Namespace, load: Load) -> int:
    _, store = _store(args, load)
    if store.get(args.destination) is not None:
        print(f"hearth: {args.destination!r} exists already", file=sys.stderr)
        return 1
    try:
        store.copy(args.source, args.destination)
    except KeyError:
        print(f"hearth: model {args.source!r} not found", file=sys.stderr)
        return 1
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def _adapters(args: argparse.Namespace, load: Load) -> Any:
    from hearth.core.registry import ModelRegistry
    from hearth.lifecycle.adapters import Adapters

    cfg, store = _store(args, load)
    return cfg, store, Adapters(cfg, store, ModelRegistry({}), dict)


def _local_bases(cfg: Any, store: Any) -> dict[str, str]:
    """Local models by name, with their architecture (an adapter must match it)."""
    from hearth.config import LocalModel
    from hearth.gguf_meta import details, read_meta
    from hearth.model_files import resolve_model_path

    out = {}
    for name, m in cfg.models.items():
        if isinstance(m, LocalModel):
            try:
                out[name] = details(read_meta(resolve_model_path(m.path, progress=False)))["family"]
            except Exception:
                out[name] = ""
    for m in store.entries():
        out.setdefault(m.name, str(m.details.get("family", "")))
    return out


def _adapter_add(args: argparse.Namespace, load: Load) -> int:
    from pathlib import Path

    from hearth.core.errors import HearthError

    cfg, store, adapters = _adapters(args, load)
    bases = _local_bases(cfg, store)
    base = args.base or (next(iter(bases)) if len(bases) == 1 else None)
    if base not in bases:
        print(f"hearth: name the base model with --base (local models: {', '.join(bases) or 'none'})", file=sys.stderr)
        return 2
    try:
        entry = adapters.save(args.name, Path(args.file), base, bases[base], args.scale)
    except HearthError as e:
        print(f"hearth: {e.message}", file=sys.stderr)
        return 1
    print(f"added {entry.base}+{entry.name} (a running gateway serves it within seconds)")
    return 0


def _adapter_list(args: argparse.Namespace, load: Load) -> int:
    _, _, adapters = _adapters(args, load)
    rows = [(f"{e.base}+{e.name}", e.digest.removeprefix("sha256:")[:12], e.scale) for e in adapters.stored()]
    print(table(["MODEL", "ID", "SCALE"], rows))
    return 0


def _adapter_rm(args: argparse.Namespace, load: Load) -> int:
    from hearth.core.errors import HearthError

    _, _, adapters = _adapters(args, load)
    try:
        adapters.delete(args.name)
    except HearthError as e:
        print(f"hearth: {e.message}", file=sys.stderr)
        return 1
    print(f"deleted adapter '{args.name}'")
    return 0


def _ps(args: argparse.Namespace) -> int:
    req = urllib.request.Request(args.url.rstrip("/") + "/api/ps")
    if key := os.environ.get("HEARTH_API_KEY") or os.environ.get("HEARTH_ADMIN_KEY"):
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            models = json.loads(r.read())["models"]
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"hearth: cannot reach the gateway at {args.url}: {e}", file=sys.stderr)
        return 1
    rows = [(m["name"], size(m["size"]), m.get("state", "loaded"), m["expires_at"] if m.get("size") else "-",
             _voice(m)) for m in models]
    print(table(["NAME", "SIZE", "STATE", "UNTIL", "VOICE DEVICES"], rows))
    for m in models:
        if m.get("reason"):
            print(f"{m['name']}: {m['reason']}")
    return 0


class ProgressBar:
    """One line per file on a terminal: percentage, bytes, speed and time left; plain lines elsewhere."""

    def __init__(self, out: Any, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.status = ""
        self.t0 = 0.0
        self.start_bytes = 0

    def update(self, p: Any) -> None:
        if p.status != self.status:
            if self.status and self.tty:
                self.out.write("\n")
            self.status, self.t0, self.start_bytes = p.status, time.monotonic(), p.completed or 0
            if p.total is None or not self.tty:
                self.out.write(p.status + ("" if self.tty and p.total is not None else "\n"))
        if p.total is not None and self.tty:
            done, total = p.completed or 0, p.total or 1
            elapsed = max(time.monotonic() - self.t0, 1e-3)
            speed = (done - self.start_bytes) / elapsed
            left = (total - done) / speed if speed > 0 else 0
            self.out.write(f"\r{p.status} {100 * done / total:5.1f}% {bar(done / total)} "
                           f"{size(done)}/{size(total)} {size(speed)}/s {left:4.0f}s ")
        self.out.flush()

    def end(self) -> None:
        if self.status and self.tty:
            self.out.write("\n")
            self.out.flush()
        self.status = ""


def _voice(m: dict[str, object]) -> str:
    """The paced voice streams the model's engine holds on this machine: "3" once steps as wide as the figure
    have run, ">=2" while wider ones have not (a lower bound), "-" before any decode step or for remote models."""
    width = int(str(m.get("voice_devices_measured_width") or 0))
    if not width:
        return "-"
    held = int(str(m.get("voice_devices") or 0))
    return f">={held}" if held == width else str(held)

