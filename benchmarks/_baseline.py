"""The source tree of hearth as it was before a file was added: the "today" anchor of a benchmark, checked
out once into a temporary git worktree (removed at exit), to run in a process with PYTHONPATH set to it."""

from __future__ import annotations

import atexit
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def src_before(added_file: str, label: str) -> str:
    """`src/` of the commit before `added_file` (a repo path) first appeared; HEAD while it is uncommitted."""
    git = ["git", "-C", str(ROOT)]
    added = subprocess.run([*git, "log", "--diff-filter=A", "--format=%H", "--", added_file],
                           capture_output=True, text=True, check=True).stdout.split()
    return src_at(f"{added[-1]}^" if added else "HEAD", label)


def src_at(rev: str, label: str) -> str:
    """`src/` of the commit `rev` (a tag, a hash, `main~3`), checked out the same way."""
    git = ["git", "-C", str(ROOT)]
    short = subprocess.run([*git, "rev-parse", "--short", rev], capture_output=True, text=True, check=True)
    path = Path(tempfile.gettempdir()) / f"hearth-{label}-{short.stdout.strip()}"
    if not path.exists():
        subprocess.run([*git, "worktree", "add", "--detach", str(path), rev], check=True, capture_output=True)
        atexit.register(subprocess.run, [*git, "worktree", "remove", "--force", str(path)], capture_output=True)
    return str(path / "src")
