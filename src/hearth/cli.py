"""`hearth serve`, `hearth config check`, `hearth models`.

argparse rather than click/typer: the CLI starts in a few tens of milliseconds, and nothing heavy is
imported until a command needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from hearth import __version__


def _load(args: argparse.Namespace) -> object:
    from hearth.config import ConfigError, load_config

    env = dict(os.environ)
    try:
        cfg = load_config(args.config, env)
    except ConfigError as e:
        print(f"hearth: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if getattr(args, "host", None):
        cfg.server.host = args.host
    if getattr(args, "port", None) is not None:
        cfg.server.port = args.port
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from hearth.server import serve

    cfg = _load(args)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(serve(cfg))  # type: ignore[arg-type]


def cmd_config_check(args: argparse.Namespace) -> int:
    from hearth.config import describe_config

    cfg = _load(args)
    print(describe_config(cfg))  # type: ignore[arg-type]
    print("config OK")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from hearth.config import LocalModel

    cfg = _load(args)
    for name, m in cfg.models.items():  # type: ignore[attr-defined]
        where = m.path if isinstance(m, LocalModel) else f"{m.kind} {m.base_url}"
        aliases = f" (aliases: {', '.join(m.aliases)})" if m.aliases else ""
        print(f"{name}{aliases}\t{where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hearth", description="A local-first LLM gateway (OpenAI and Ollama APIs).")
    p.add_argument("--version", action="version", version=f"hearth {__version__}")
    p.add_argument("--log-level", default=os.environ.get("HEARTH_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 8434)")
    s.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG, else built-in defaults)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("config", help="inspect configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a config file and print what it means")
    cc.add_argument("config", nargs="?", help="YAML config file (default: $HEARTH_CONFIG)")
    cc.set_defaults(func=cmd_config_check)

    m = sub.add_parser("models", help="list configured models")
    m.add_argument("--config")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
