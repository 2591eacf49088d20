"""`hearth finetune` and `hearth eval`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.terminal import bar

Load = Callable[[argparse.Namespace], object]


def add_parser(sub: Any, load: Load) -> None:
    f = sub.add_parser("finetune", help="train a LoRA adapter on the CPU (needs hearth[finetune]) and serve it")
    f.add_argument("--base", required=True, help="a local model of the config, a pulled model, or a GGUF file")
    f.add_argument("--data", required=True, type=Path, help="chat-format JSONL ({\"messages\": [...]} per line)")
    f.add_argument("--name", help="the adapter's name (served as <base>+<name>); default: the data file's name")
    f.add_argument("--epochs", type=int, default=3)
    f.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    f.add_argument("--rank", type=int, default=16, help="LoRA rank")
    f.add_argument("--batch-size", type=int, default=4)
    f.add_argument("--max-length", type=int, default=512, help="tokens per example (older context is cut)")
    f.add_argument("--held-out", type=float, default=0.0,
                   help="share of the examples kept out of training for `hearth eval` (written beside the adapter)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-add", action="store_true", help="write the GGUF adapter only; do not add it to the store")
    f.add_argument("--config")
    f.set_defaults(func=lambda a: _finetune(a, load))

    e = sub.add_parser("eval", help="score models or adapters on a labelled JSONL set through a running gateway")
    e.add_argument("models", nargs="+", help="model names as the gateway serves them (e.g. smol smol+my-adapter)")
    e.add_argument("--data", required=True, type=Path)
    e.add_argument("--url", default=os.environ.get("HEARTH_URL", "http://127.0.0.1:8434"))
    e.add_argument("--judge", help="a model that grades each answer (its score, 0 to 1, is the judge column)")
    e.add_argument("--constrained", action="store_true",
                   help="ask for each example's JSON schema as response_format (else validity is the model's own)")
    e.add_argument("--max-tokens", type=int, default=256)
    e.add_argument("--json", action="store_true", help="print one JSON object per model instead of a table")
    e.set_defaults(func=_eval)


def _base_path(base: str, cfg: Any, store: Any) -> tuple[Path, str | None]:
    """The GGUF to train on, and the served model name it belongs to (None for a bare file)."""
    from hearth.config import LocalModel
    from hearth.model_files import resolve_model_path

    m = cfg.models.get(base)
    if isinstance(m, LocalModel):
        return resolve_model_path(m.path), base
    manifest = store.get(base)
    if manifest is not None:
        if len(manifest.blobs) > 1:
            raise SystemExit("hearth: training on a split (multi-file) GGUF is not supported")
        return store.paths(manifest)[0], base
    p = Path(base).expanduser()
    if p.is_file():
        return p, None
    raise SystemExit(f"hearth: --base {base!r} is neither a local model of the config, a pulled model, nor a file")


def _finetune(args: argparse.Namespace, load: Load) -> int:
    from hearth.config import Config, home_dir
    from hearth.core.errors import HearthError
    from hearth.core.registry import ModelRegistry
    from hearth.gguf_meta import details, read_meta
    from hearth.lifecycle.adapters import Adapters
    from hearth.lifecycle.store import ModelStore
    from hearth.tune.data import read_examples, split
    from hearth.tune.export import ExportError, export_gguf
    from hearth.tune.train import TrainOptions, train

    cfg = load(args)
    assert isinstance(cfg, Config)
    store = ModelStore(cfg.local.root())
    name = args.name or args.data.stem
    base_path, base_name = _base_path(args.base, cfg, store)
    try:
        examples = read_examples(args.data)
    except HearthError as e:
        print(f"hearth: {e.message}", file=sys.stderr)
        return 2
    family = details(read_meta(base_path))["family"]
    work = home_dir() / "finetune" / name
    train_set, held = split(examples, args.held_out, args.seed)
    work.mkdir(parents=True, exist_ok=True)
    if held:
        (work / "heldout.jsonl").write_text("".join(json.dumps({"messages": e.messages}) + "\n" for e in held))
    opts = TrainOptions(epochs=args.epochs, learning_rate=args.lr, rank=args.rank, alpha=2 * args.rank,
                        batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    print(f"training {name} on {base_name or base_path.name}: {len(train_set)} examples "
          f"({len(held)} held out), {opts.epochs} epochs", file=sys.stderr)
    try:
        trained = train(base_path, train_set, work, opts, _bar())
        print(file=sys.stderr)
        out = export_gguf(trained.adapter_dir, trained.base_config_dir, work / f"{name}.gguf")
    except (RuntimeError, ExportError) as e:
        print(f"\nhearth: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nhearth: interrupted; run the same command again to resume from {work / 'checkpoint'}",
              file=sys.stderr)
        return 130
    if trained.resumed_from:
        print(f"resumed from step {trained.resumed_from}", file=sys.stderr)
    print(f"adapter: {out} (final loss {trained.final_loss:.4f})")
    if held:
        print(f"held-out set: {work / 'heldout.jsonl'}")
    if base_name is not None and not args.no_add:
        adapters = Adapters(cfg, store, ModelRegistry({}), dict)
        try:
            if any(e.name == name for e in adapters.stored()):
                adapters.delete(name)  # a new training of the same name replaces the old adapter
            adapters.save(name, out, base_name, family)
        except HearthError as e:
            print(f"hearth: {e.message}", file=sys.stderr)
            return 1
        print(f"serving as {base_name}+{name} (a running gateway picks it up within seconds)")
    return 0


def _bar() -> Callable[[int, int, float, float], None]:
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(step: int, total: int, loss: float, seconds: float) -> None:
        now = time.monotonic()
        if step != total and now - last[0] < (0.2 if tty else 10.0):
            return
        last[0] = now
        left = seconds / step * (total - step) if step else 0.0
        line = (f"step {step}/{total} {bar(step / total)} loss {loss:.4f} "
                f"{seconds / step:.2f} s/step, {left:.0f} s left")
        sys.stderr.write(("\r" + line) if tty else (line + "\n"))
        sys.stderr.flush()

    return show


def _eval(args: argparse.Namespace) -> int:
    from hearth.core.errors import HearthError
    from hearth.tune.data import read_examples
    from hearth.tune.evaluate import Client, evaluate, score_table

    try:
        examples = read_examples(args.data)
    except HearthError as e:
        print(f"hearth: {e.message}", file=sys.stderr)
        return 2
    client = Client(args.url, os.environ.get("HEARTH_API_KEY") or os.environ.get("HEARTH_ADMIN_KEY"))
    try:
        served = client.models()
    except (OSError, ValueError) as e:
        print(f"hearth: cannot reach the gateway at {args.url}: {e}", file=sys.stderr)
        return 1
    missing = [m for m in [*args.models, *([args.judge] if args.judge else [])] if m not in served]
    if missing:
        print(f"hearth: the gateway serves no {', '.join(missing)} (it serves: {', '.join(served)})", file=sys.stderr)
        return 1
    scores = [evaluate(client, model, examples, judge=args.judge, constrained=args.constrained,
                       max_tokens=args.max_tokens) for model in args.models]
    if args.json:
        for s in scores:
            print(json.dumps(s.row()))
    else:
        print(score_table(scores))
    return 0
