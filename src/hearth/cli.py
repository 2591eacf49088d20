"""`hearth serve`, `config check`, `models`, `route explain`, `cache`, `rag`, `keys`, and the model commands
(`pull`, `list`, `rm`, `cp`, `ps`, `adapter`), `finetune`, `eval` and `doctor`.

argparse rather than click/typer: the CLI starts in a few tens of milliseconds, and nothing heavy is
imported until a command needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

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
    if getattr(args, "insecure", False):
        cfg.server.insecure = True
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
    cfg = _load(args)
    from hearth.config import EmbeddingModel, LocalModel, RemoteModel

    for name, m in cfg.models.items():  # type: ignore[attr-defined]
        if isinstance(m, LocalModel | EmbeddingModel):
            where = m.path
        elif isinstance(m, RemoteModel):
            where = f"{m.kind} {m.base_url}"
        else:
            where = m.kind
        aliases = f" (aliases: {', '.join(m.aliases)})" if m.aliases else ""
        print(f"{name}{aliases}\t{where}")
    return 0


def cmd_route_explain(args: argparse.Namespace) -> int:
    import json

    from hearth.config import RouterModel
    from hearth.core.types import ChatRequest, Message
    from hearth.routing.policy import RoutingPolicy

    cfg: Any = _load(args)
    routers = {n: m for n, m in cfg.models.items() if isinstance(m, RouterModel)}
    if not routers:
        print("hearth: the config defines no router model (kind: router)", file=sys.stderr)
        return 2
    name = args.router or next(iter(routers))
    if name not in routers:
        print(f"hearth: no router named {name!r}; routers: {', '.join(routers)}", file=sys.stderr)
        return 2
    local = {n for n, m in cfg.models.items() if m.kind == "llamacpp"}
    policy = RoutingPolicy(routers[name], is_local=lambda n: n in local)
    from hearth.convo.intent import IntentTracker

    intent = IntentTracker().label(args.prompt, ())
    d = policy.decide(ChatRequest(model=name, messages=[Message("user", args.prompt)], intent=intent))
    if args.json:
        print(json.dumps({"router": name, "intent": intent.label, **d.as_dict()}, ensure_ascii=False))
        return 0
    print(f"router {name}: -> {d.target}  (reason: {d.reason}: {d.detail}; intent: {intent.label})")
    print(f"complexity score {d.score:.3f}; prompt ~{d.prompt_tokens} tokens; chain: {' -> '.join(d.chain)}")
    if d.signals:
        sig = d.signals.signals
        print("signals: " + ", ".join(f"{k}={getattr(sig, k)}" for k in sig.__slots__))
        print("score terms: " + ", ".join(f"{k} {v:+.2f}" for k, v in d.signals.contributions.items() if v))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    method = "DELETE" if args.cache_command == "clear" else "GET"
    req = urllib.request.Request(args.url.rstrip("/") + "/admin/cache", method=method)
    if admin := os.environ.get("HEARTH_ADMIN_KEY"):
        req.add_header("Authorization", f"Bearer {admin}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            print(json.dumps(json.loads(r.read()), indent=2))
    except (urllib.error.URLError, OSError) as e:
        print(f"hearth: cannot reach the gateway at {args.url}: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hearth", description="A local-first LLM gateway (OpenAI and Ollama APIs).")
    p.add_argument("--version", action="version", version=f"hearth {__version__}")
    p.add_argument("--log-level", default=os.environ.get("HEARTH_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default 8434)")
    s.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG, else built-in defaults)")
    s.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback even though no API key exists (anyone reaching the port may call)",
    )
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("config", help="inspect configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a config file and print what it means")
    cc.add_argument("config", nargs="?", help="YAML config file (default: $HEARTH_CONFIG)")
    cc.set_defaults(func=cmd_config_check)

    r = sub.add_parser("route", help="routing tools")
    rsub = r.add_subparsers(dest="route_command", required=True)
    re_ = rsub.add_parser("explain", help="show how a router would route a prompt (nothing is generated)")
    re_.add_argument("prompt")
    re_.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG)")
    re_.add_argument("--router", help="router model name (default: the first one in the config)")
    re_.add_argument("--json", action="store_true", help="print one JSON object")
    re_.set_defaults(func=cmd_route_explain)

    ca = sub.add_parser("cache", help="inspect or clear a running gateway's response cache")
    ca.add_argument("cache_command", choices=["stats", "clear"])
    ca.add_argument("--url", default=os.environ.get("HEARTH_URL", "http://127.0.0.1:8434"))
    ca.set_defaults(func=cmd_cache)

    from hearth.access.cli import add_parser as add_keys
    from hearth.doctor import add_parser as add_doctor
    from hearth.lifecycle.cli import add_parser as add_lifecycle
    from hearth.rag.cli import add_parser as add_rag
    from hearth.tune.cli import add_parser as add_tune

    add_rag(sub, _load)
    add_keys(sub, _load)
    add_lifecycle(sub, _load)
    add_tune(sub, _load)
    add_doctor(sub, _load)

    m = sub.add_parser("models", help="list configured models")
    m.add_argument("--config")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
