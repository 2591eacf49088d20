"""What the command-line commands print: aligned tables, progress bars, byte sizes. One place, so that
`hearth list`, `hearth ps`, `hearth pull`, `hearth finetune` and `hearth eval` look alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BAR_WIDTH = 30


def bar(fraction: float) -> str:
    filled = int(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
    return f"▕{'█' * filled}{' ' * (BAR_WIDTH - filled)}▏"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns two spaces apart, as wide as their widest cell; None shows as '-'."""
    cells = [[str(h) for h in head], *([("-" if x is None else str(x)) for x in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in cells)
