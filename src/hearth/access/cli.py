"""`hearth keys create | list | show | update | revoke | spend`: on the configured store directly (the SQLite
file or Redis), so no server has to run, and a running one sees the change within `keys.refresh` seconds."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from hearth.core.errors import HearthError


def _limits(p: argparse.ArgumentParser, creating: bool) -> None:
    p.add_argument("--name", required=creating, help="who or what the key is for")
    p.add_argument("--models", help="comma-separated names or glob patterns (routers and rag:<kb> too); default *")
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--max-parallel", type=int, help="requests in flight at once")
    p.add_argument("--budget", type=float, help="spend allowed per period, in the price table's unit")
    p.add_argument("--budget-period", help="30d, 7d, 24h...; default: the key's whole life")
    p.add_argument("--expires", help="30d from now, or an ISO date")
    p.add_argument("--scopes", help="comma-separated: chat, embeddings, rag:read, rag:write, admin")
    if not creating:
        p.add_argument("--clear", action="append", default=[], metavar="FIELD",
                       help="remove a limit: rpm, tpm, max_parallel, budget, budget_period, expires")


def add_parser(sub: Any, load: Callable[[argparse.Namespace], Any]) -> None:
    k = sub.add_parser("keys", help="API keys: create, list, show, update, revoke, spend")
    ksub = k.add_subparsers(dest="keys_command", required=True)

    def common(p: argparse.ArgumentParser, run: Callable[[argparse.Namespace, Any], Awaitable[int]]) -> None:
        p.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(load=load, func=lambda a: _run(a, run))

    c = ksub.add_parser("create", help="create a key; its secret is printed once")
    _limits(c, creating=True)
    common(c, _create)
    common(ksub.add_parser("list", help="list keys (never their secrets)"), _list)
    s = ksub.add_parser("show", help="one key, with its spend this period")
    s.add_argument("id")
    common(s, _show)
    u = ksub.add_parser("update", help="change a key's name, models, limits, budget, expiry or scopes")
    u.add_argument("id")
    _limits(u, creating=False)
    common(u, _update)
    r = ksub.add_parser("revoke", help="revoke a key (refused everywhere within keys.refresh seconds)")
    r.add_argument("id")
    common(r, _revoke)
    sp = ksub.add_parser("spend", help="spend per key and model in the current budget period")
    sp.add_argument("id", nargs="?")
    common(sp, _spend)


def _fields(a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in ("name", "rpm", "tpm", "max_parallel", "budget", "budget_period", "expires"):
        if getattr(a, f, None) is not None:
            out[f] = getattr(a, f)
    for f in ("models", "scopes"):
        if getattr(a, f, None):
            out[f] = [x.strip() for x in getattr(a, f).split(",") if x.strip()]
    for f in getattr(a, "clear", []):
        out[f.replace("-", "_")] = None
    return out


def _run(a: argparse.Namespace, fn: Callable[[argparse.Namespace, Any], Awaitable[int]]) -> int:
    from hearth.access import open_stores

    cfg = a.load(a)

    async def go() -> int:
        store, meter = open_stores(cfg)
        try:
            return await fn(a, (store, meter))
        except HearthError as e:
            print(f"hearth: {e.message}", file=sys.stderr)
            return 2
        finally:
            await meter.close()
            if id(store) != id(meter):  # Redis: one object is both
                await store.close()

    return asyncio.run(go())


def _print_key(a: argparse.Namespace, d: dict[str, Any]) -> None:
    if a.json:
        print(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        if v is not None and k != "key":
            print(f"{k:14} {json.dumps(v) if isinstance(v, list | dict) else v}")


async def _create(a: argparse.Namespace, stores: Any) -> int:
    from hearth.access.manage import create_key

    key, secret = await create_key(stores[0], _fields(a))
    if a.json:
        print(json.dumps({"key": secret, **key.public()}, indent=2))
        return 0
    _print_key(a, key.public())
    print(f"\nkey: {secret}\nThis is the only time the key is shown; hearth keeps only its hash.")
    return 0


async def _list(a: argparse.Namespace, stores: Any) -> int:
    keys = [k.public() for k in await stores[0].all()]
    if a.json:
        print(json.dumps(keys, indent=2))
        return 0
    for k in keys:
        state = "revoked" if k["revoked"] else ("expires " + k["expires"] if k["expires"] else "active")
        print(f"{k['id']}\t{k['prefix']}...\t{k['name']}\t{','.join(k['models'])}\t{state}")
    return 0


async def _show(a: argparse.Namespace, stores: Any) -> int:
    from hearth.access.manage import find_key, spend_report

    key = await find_key(stores[0], a.id)
    _print_key(a, {**key.public(), "spend": await spend_report(stores[1], key)})
    return 0


async def _update(a: argparse.Namespace, stores: Any) -> int:
    from hearth.access.manage import update_key

    _print_key(a, (await update_key(stores[0], a.id, _fields(a))).public())
    return 0


async def _revoke(a: argparse.Namespace, stores: Any) -> int:
    from hearth.access.manage import revoke_key

    _print_key(a, (await revoke_key(stores[0], a.id)).public())
    return 0


async def _spend(a: argparse.Namespace, stores: Any) -> int:
    from hearth.access.manage import find_key, spend_report

    keys = [await find_key(stores[0], a.id)] if a.id else await stores[0].all()
    rows = [await spend_report(stores[1], k) for k in keys]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        budget = f" of {r['budget']}" if r["budget"] is not None else ""
        print(f"{r['id']}\t{r['name']}\tspent {r['spent']:g}{budget}\t(reserved {r['reserved']:g})")
        for m, v in r["models"].items():
            print(f"    {m}\t{v['requests']} requests\t{v['prompt_tokens']}+{v['completion_tokens']} tokens\t"
                  f"{v['cost']:g}")
    return 0
