"""`hearth rag ingest | list | rm | search | reembed`: the same store under $HEARTH_HOME that the server uses
(or the configured Chroma server), so what the CLI ingests, a running gateway finds."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hearth.config import Config, EmbeddingModel, RemoteModel
from hearth.core.errors import HearthError
from hearth.core.registry import ModelRegistry
from hearth.rag.stage import RagStage


def add_parser(sub: Any, load: Callable[[argparse.Namespace], Any]) -> None:
    r = sub.add_parser("rag", help="knowledge bases: ingest documents, list, remove, search")
    rsub = r.add_subparsers(dest="rag_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config file (default: $HEARTH_CONFIG)")
        p.set_defaults(load=load)

    i = rsub.add_parser("ingest", help="ingest files and folders (incremental: unchanged files are skipped)")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--kb", required=True, help="knowledge base name (created if new)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    common(i)
    i.set_defaults(func=lambda a: _run(a, _ingest))

    ls = rsub.add_parser("list", help="list knowledge bases, or one knowledge base's documents")
    ls.add_argument("kb", nargs="?")
    common(ls)
    ls.set_defaults(func=lambda a: _run(a, _list))

    rm = rsub.add_parser("rm", help="remove a knowledge base, or some of its documents")
    rm.add_argument("kb")
    rm.add_argument("sources", nargs="*", metavar="SOURCE", help="documents to remove (default: all, the whole kb)")
    common(rm)
    rm.set_defaults(func=lambda a: _run(a, _rm))

    s = rsub.add_parser("search", help="hybrid search (BM25 + vectors)")
    s.add_argument("kb")
    s.add_argument("query")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    s.add_argument("--json", action="store_true")
    common(s)
    s.set_defaults(func=lambda a: _run(a, _search))

    r = rsub.add_parser("reembed", help="embed a knowledge base again with another embedding model (its chunks "
                                        "are kept; no source file is needed)")
    r.add_argument("kb")
    r.add_argument("--model", help="the embedding model (default: rag.embedding_model)")
    common(r)
    r.set_defaults(func=lambda a: _run(a, _reembed))


def _run(args: argparse.Namespace, fn: Callable[[argparse.Namespace, Any], Awaitable[int]]) -> int:
    cfg = args.load(args)

    async def go() -> int:
        registry = _embedders(cfg)
        rag = RagStage.for_config(cfg, registry)
        try:
            return await fn(args, rag.service())
        except HearthError as e:
            print(f"hearth: {e.message}", file=sys.stderr)
            return 1
        finally:
            await rag.close()
            await registry.close()

    return asyncio.run(go())


def _embedders(cfg: Config) -> ModelRegistry:
    """Only what the knowledge bases need: the configured models that embed (local embedding models and remote
    providers), never the chat engine, the caches or the routers of a whole gateway."""
    from hearth import backends  # noqa: F401  (registers the built-in providers)
    from hearth.providers import Services, aliases, build

    _, embedders = build({n: m for n, m in cfg.models.items() if isinstance(m, EmbeddingModel | RemoteModel)},
                         Services())
    return ModelRegistry({}, embedders, aliases(cfg.models))


class _Progress:
    """A one-line bar on a terminal; nothing per file otherwise (logs stay readable)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()

    def __call__(self, done: int, total: int, source: str) -> None:
        if not self.tty:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        name = source if len(source) < 40 else "..." + source[-37:]
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name:<40}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _ingest(args: argparse.Namespace, svc: Any) -> int:
    report = await svc.ingest_paths(args.kb, args.paths, progress=_Progress())
    d = report.as_dict()
    if args.json:
        print(json.dumps(d, ensure_ascii=False, indent=2))
    else:
        print(f"{args.kb}: {len(d['added'])} added, {len(d['updated'])} updated, {d['unchanged']} unchanged, "
              f"{len(d['removed'])} removed, {len(d['skipped'])} skipped; {d['chunks']} chunks "
              f"({d['embedded']} embedded) in {d['seconds']} s ({d['chunks_per_second']} chunks/s)")
        for s in d["skipped"]:
            print(f"  skipped {s['source']}: {s['reason']}")
    store = await svc.catalog.open(args.kb)
    store.save()  # the server starts from the saved vector index instead of rebuilding it
    return 0


async def _reembed(args: argparse.Namespace, svc: Any) -> int:
    store = await svc.catalog.open(args.kb)
    before = await svc.model_of(args.kb, store)
    report = await svc.reembed(args.kb, args.model, progress=_Progress())
    after = await svc.model_of(args.kb, store)
    print(f"{args.kb}: {len(report.updated)} documents, {report.chunks} chunks embedded with {after} (was {before}) "
          f"in {report.seconds:.1f} s")
    store.save()
    return 0


async def _list(args: argparse.Namespace, svc: Any) -> int:
    if args.kb:
        store = await svc.catalog.open(args.kb)
        for d in sorted((await store.documents()).values(), key=lambda d: d.source):
            print(f"{d.source}\t{d.chunks} chunks\t{d.size} chars")
        return 0
    for name in await svc.catalog.names():
        st = await (await svc.catalog.open(name)).stats()
        print(f"{name}\t{st['documents']} documents\t{st['chunks']} chunks\t{st['store']}")
    return 0


async def _rm(args: argparse.Namespace, svc: Any) -> int:
    if args.sources:
        store = await svc.catalog.open(args.kb)
        n = await store.remove(args.sources)
        print(f"{args.kb}: removed {n} documents")
        return 0
    if not await svc.catalog.drop(args.kb):
        print(f"hearth: knowledge base {args.kb!r} not found", file=sys.stderr)
        return 1
    print(f"removed knowledge base {args.kb}")
    return 0


async def _search(args: argparse.Namespace, svc: Any) -> int:
    hits = await svc.search(args.kb, args.query, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(json.dumps([{"source": h.source, "title": h.title, "lines": [h.line_start, h.line_end],
                           "score": h.score, "text": h.text} for h in hits], ensure_ascii=False, indent=2))
        return 0
    for i, h in enumerate(hits, 1):
        title = f" > {h.title}" if h.title else ""
        print(f"[{i}] {h.score:.3f} {h.source}{title} (lines {h.line_start}-{h.line_end})")
        print("    " + h.text[:300].replace("\n", "\n    "))
    return 0
