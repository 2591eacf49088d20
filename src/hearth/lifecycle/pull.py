"""Pulls a GGUF model from the Hugging Face Hub (or a mirror) into the model store.

The transfer is `huggingface_hub`'s: it resumes an interrupted download from its `.incomplete` file,
retries a dropped connection from where it stopped, honours `HF_ENDPOINT` (the mirrors users in China rely
on) and sends `HF_TOKEN` for gated repositories. What it does not do, this does: check the sha256 the Hub
lists for each file (a corrupted or tampered file is deleted, never served), refuse what is not a GGUF,
refuse a pull the disk cannot hold before a byte is written, and report progress in Ollama's terms.

Blocking by design: it runs in a worker thread, and progress leaves through the `report` callback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core.errors import BadRequest, HearthError, ModelNotFound
from hearth.gguf_meta import NotGguf, details, read_meta
from hearth.lifecycle.names import ModelRef, pick_files
from hearth.lifecycle.store import Blob, Manifest, ModelStore

DISK_MARGIN = 64 << 20  # what a pull leaves free beyond its own bytes: logs and databases keep working


@dataclass(frozen=True)
class Progress:
    """One line of Ollama's `/api/pull` stream."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def ollama(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.digest is not None:
            d.update(digest=self.digest, total=self.total, completed=self.completed)
        return d


Report = Callable[[Progress], None]


class PullError(HearthError):
    pass


@dataclass(frozen=True)
class _Remote:
    path: str
    size: int
    sha256: str | None  # the Hub lists one for files stored in LFS (every GGUF in practice)


class Puller:
    def __init__(self, store: ModelStore, *, endpoint: str | None = None, token: str | None = None,
                 cancel: threading.Event | None = None) -> None:
        """`cancel`, when set, stops the transfer at its next chunk (the partial file stays, to resume)."""
        self.store = store
        self.cancel = cancel or threading.Event()
        # Read now, not at import: huggingface_hub reads HF_ENDPOINT once when first imported.
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.token = token if token is not None else os.environ.get("HF_TOKEN") or None

    def pull(self, ref: ModelRef, report: Report) -> Manifest:
        report(Progress("pulling manifest"))
        files = self._plan(ref)
        self._check_disk(files)
        blobs: list[Blob] = []
        fetched: list[Blob] = []  # downloaded by this pull (the others were in the store already)
        for f in files:
            blob, new = self._fetch(ref, f, report)
            blobs.append(blob)
            if new:
                fetched.append(blob)
        report(Progress("writing manifest"))
        first = self.store.blob_path(blobs[0].digest)
        d = details(read_meta(first))
        if d["adapter"]:
            for b in fetched:  # only what this pull brought: a blob already here may be a served adapter's
                self.store.blob_path(b.digest).unlink(missing_ok=True)
            raise BadRequest(f"{files[0].path} is a LoRA adapter, not a model; add it with `hearth adapter add`")
        old = self.store.get(ref.name)
        manifest = Manifest(ref.name, tuple(blobs), f"hf:{ref.repo}", time.time(), d)
        self.store.save(manifest)
        if old is not None:  # pulled again: files of the old version that no name uses any more go
            self.store.drop_unused(old.blobs)
        self._clean_downloads(ref.repo)
        return manifest  # the caller says "success" once the model is served

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token or False)

    def _plan(self, ref: ModelRef) -> list[_Remote]:
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
        from huggingface_hub.hf_api import RepoFile

        try:
            listing = [f for f in self._api().list_repo_tree(ref.repo, recursive=True) if isinstance(f, RepoFile)]
        except GatedRepoError:
            raise PullError(f"{ref.repo} is gated: accept its terms on the Hub and set HF_TOKEN", status=403) from None
        except RepositoryNotFoundError:
            hint = "" if self.token else " (a private or gated repository needs HF_TOKEN)"
            where = f"repository {ref.repo} not found on {self.endpoint}{hint}"
            raise ModelNotFound(f"pull model manifest: {where}") from None
        except HfHubHTTPError as e:
            raise PullError(f"pull model manifest: the Hub at {self.endpoint} answered: {e}", status=502) from None
        except (OSError, *_transport_errors()) as e:  # type: ignore[misc]  # refused, DNS, TLS, a dropped link
            raise PullError(f"pull model manifest: cannot reach {self.endpoint}: {e}", status=502) from None
        by_path = {f.path: f for f in listing}
        try:
            chosen = pick_files(ref, list(by_path))
        except ValueError as e:
            raise BadRequest(f"pull model manifest: {e}", param="model") from None
        except LookupError as e:
            raise ModelNotFound(f"pull model manifest: {e}") from None
        out = []
        for path in chosen:
            f = by_path[path]
            out.append(_Remote(path, int(f.size), f.lfs.sha256 if f.lfs is not None else None))
        return out

    def _check_disk(self, files: list[_Remote]) -> None:
        need = sum(f.size for f in files if not (f.sha256 and self.store.blob_path(f"sha256:{f.sha256}").is_file()))
        self.store.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.store.root).free
        if need and need + DISK_MARGIN > free:
            raise PullError(f"not enough disk space in {self.store.root}: the model needs {need / 1e9:.2f} GB, "
                            f"{free / 1e9:.2f} GB are free", status=507)

    def _fetch(self, ref: ModelRef, f: _Remote, report: Report) -> tuple[Blob, bool]:
        """The file as a blob of the store, and whether this pull downloaded it."""
        from huggingface_hub import hf_hub_download

        label = f"sha256:{f.sha256}" if f.sha256 else f"file:{f.path}"
        status = f"pulling {(f.sha256 or f.path)[:12]}"
        if f.sha256 and self.store.blob_path(label).is_file():  # already here (another name, an earlier pull)
            report(Progress(status, label, f.size, f.size))
            return Blob(label, f.size, f.path), False
        report(Progress(status, label, f.size, 0))
        folder = self.store.download_dir(ref.repo)
        try:
            local = Path(hf_hub_download(
                ref.repo, f.path, local_dir=folder, endpoint=self.endpoint, token=self.token or False,
                tqdm_class=_progress_class(lambda done: report(Progress(status, label, f.size, done)), self.cancel),
            ))
        except OSError as e:
            if e.errno == errno.ENOSPC:  # resuming cannot help, so free the space now
                shutil.rmtree(folder, ignore_errors=True)
                raise PullError(f"the disk filled up while pulling {f.path}; nothing was kept", status=507) from None
            raise PullError(f"pulling {f.path} failed: {e}; pull again to resume", status=502) from None
        except _transport_errors() as e:
            raise PullError(f"pulling {f.path} failed: {e}; pull again to resume", status=502) from None
        report(Progress(status, label, f.size, f.size))
        report(Progress("verifying sha256 digest"))
        digest = _sha256(local)
        if f.sha256 and digest != f.sha256:
            local.unlink(missing_ok=True)
            raise PullError(f"sha256 mismatch for {f.path}: the Hub lists {f.sha256}, the download is {digest}; "
                            "it was deleted, pull again", status=502)
        try:
            read_meta(local)
        except NotGguf as e:
            local.unlink(missing_ok=True)
            raise BadRequest(f"{ref.repo}: {e}", param="model") from None
        label = f"sha256:{digest}"
        self.store.adopt(local, label)
        return Blob(label, f.size, f.path), True

    def _clean_downloads(self, repo: str) -> None:
        """Forget huggingface_hub's bookkeeping of finished transfers; keep what an interrupted one can resume."""
        folder = self.store.download_dir(repo)
        if folder.is_dir() and not any(folder.rglob("*.incomplete")):
            shutil.rmtree(folder, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors, which are not OSErrors (huggingface_hub 2 uses httpx2, 1 httpx)."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(importlib.import_module(module).TransportError)
    return tuple(found)


class PullCancelled(PullError):
    pass


def _progress_class(on_bytes: Callable[[int], None], cancel: threading.Event) -> type:
    """A tqdm class that prints nothing and reports bytes done (`hf_hub_download` takes a class, not a callback),
    and stops the transfer when `cancel` is set (the gateway is shutting down). Reports are thinned to 5 a
    second: a pull must not flood a slow client with NDJSON lines."""
    from tqdm import tqdm

    class _Report(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._done = int(kwargs.get("initial") or 0)
            self._last = 0.0
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel.is_set():
                raise PullCancelled("the pull was stopped; pull again to resume", status=503)
            self._done += int(n or 0)
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                on_bytes(self._done)
            return None

    return _Report
