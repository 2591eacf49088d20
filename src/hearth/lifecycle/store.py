"""Pulled models on disk: content-addressed blobs and one small manifest per served name.

Layout under `$HEARTH_HOME/models/`: `blobs/sha256-<hex>` holds each verified file once, whatever the
number of names that use it (`hearth cp` writes a manifest, not a copy); `manifests/<name>.json` says which
blobs a name is made of and where they came from; `downloads/` holds interrupted transfers, resumed by
the next pull. A manifest is written last and atomically, so a name is listed only once all of its bytes
are verified, and a crash at any point leaves either the old state or the new one.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    file: str  # its name in the repository, for messages and for the order of split parts


@dataclass(frozen=True)
class Manifest:
    name: str
    blobs: tuple[Blob, ...]
    source: str  # "hf:<repo>" or "copy:<name>"
    modified_at: float
    details: dict[str, Any] = field(default_factory=dict)  # family, parameter_size, quantization_level, ...

    @property
    def digest(self) -> str:
        """The first part's digest identifies the model (Ollama shows a digest per model)."""
        return self.blobs[0].digest.removeprefix("sha256:")

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.downloads = root / "downloads"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.replace(":", "-")

    def paths(self, m: Manifest) -> list[Path]:
        return [self.blob_path(b.digest) for b in m.blobs]

    def _manifest_path(self, name: str) -> Path:
        # Names hold '/' and ':'; quoting keeps one flat folder and a reversible file name.
        return self.manifests / (urllib.parse.quote(name, safe="") + ".json")

    def entries(self) -> list[Manifest]:
        if not self.manifests.is_dir():
            return []
        found = [self._read(p) for p in sorted(self.manifests.glob("*.json"))]
        return [m for m in found if m is not None]

    def get(self, name: str) -> Manifest | None:
        p = self._manifest_path(name)
        return self._read(p) if p.is_file() else None

    def _read(self, p: Path) -> Manifest | None:
        try:
            d = json.loads(p.read_text())
            return Manifest(d["name"], tuple(Blob(**b) for b in d["blobs"]), d["source"], d["modified_at"],
                            d.get("details") or {})
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a foreign or damaged file is not a model

    def save(self, m: Manifest) -> None:
        for b in m.blobs:
            if not self.blob_path(b.digest).is_file():
                raise FileNotFoundError(f"blob {b.digest} of {m.name} is missing")
        self.manifests.mkdir(parents=True, exist_ok=True)
        data = asdict(m)
        _write_atomic(self._manifest_path(m.name), json.dumps(data, indent=1).encode())

    def copy(self, source: str, destination: str) -> Manifest:
        m = self.get(source)
        if m is None:
            raise KeyError(source)
        new = Manifest(destination, m.blobs, f"copy:{source}", time.time(), dict(m.details))
        self.save(new)
        return new

    def remove(self, name: str) -> list[Path]:
        """Forget `name`; delete the blobs no other name uses. Returns the deleted files."""
        m = self.get(name)
        if m is None:
            raise KeyError(name)
        self._manifest_path(name).unlink()
        return self.drop_unused(m.blobs)

    def used_digests(self) -> set[str]:
        """Blobs some model or adapter manifest names (adapters live in the same blob folder)."""
        used = {b.digest for m in self.entries() for b in m.blobs}
        for p in (self.root / "adapters").glob("*.json") if (self.root / "adapters").is_dir() else []:
            try:
                used.add(str(json.loads(p.read_text())["digest"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return used

    def drop_unused(self, blobs: tuple[Blob, ...] | list[Blob]) -> list[Path]:
        used = self.used_digests()
        gone = []
        for b in blobs:
            if b.digest not in used:
                p = self.blob_path(b.digest)
                p.unlink(missing_ok=True)
                gone.append(p)
        return gone

    def adopt(self, file: Path, digest: str) -> Path:
        """Move a verified download into the blob store (same filesystem: a rename, never a copy)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blob_path(digest)
        os.replace(file, target)
        return target

    def download_dir(self, repo: str) -> Path:
        return self.downloads / re.sub(r"[^\w.-]+", "--", repo)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
