"""A stand-in for the Hugging Face Hub on loopback, speaking enough of its protocol for `huggingface_hub`'s
own client code (listing a repository, HEAD and ranged GET of `resolve/` URLs, error codes) to run
against it unchanged: `hearth pull` and the lifecycle benchmark are tested with it, with no internet.

    hub = HubStandIn({"org/Model-GGUF": {"model-q4_k_m.gguf": Path("...")}})
    with running(hub.app) as url:   # HF_ENDPOINT=url
        ...

Faults are played as a network and a bad mirror produce them: `cut_once` drops the connection half-way
through the first download of a file (the client must resume with a Range request), `corrupt` serves bytes
that differ from the listed sha256, `huge` lists a file as 10 PB, `token` makes every repository gated
behind that bearer token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    source: Path | bytes
    size: int = 0
    sha256: str = ""

    def __post_init__(self) -> None:
        h = hashlib.sha256()
        if isinstance(self.source, bytes):
            h.update(self.source)
            self.size = len(self.source)
        else:
            with self.source.open("rb") as f:
                while block := f.read(4 << 20):
                    h.update(block)
            self.size = self.source.stat().st_size
        self.sha256 = h.hexdigest()

    def read(self, start: int, end: int) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[start:end]
        with self.source.open("rb") as f:
            f.seek(start)
            return f.read(end - start)


@dataclass
class HubStandIn:
    repos: dict[str, dict[str, Path | bytes]]
    cut_once: set[str] = field(default_factory=set)  # file paths whose first transfer is cut half-way
    corrupt: set[str] = field(default_factory=set)  # file paths served with one byte flipped
    token: str | None = None
    huge: set[str] = field(default_factory=set)  # file paths listed as 10 PB (a pull the disk cannot hold)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)

    def __post_init__(self) -> None:
        self._files = {repo: {p: HubFile(src) for p, src in files.items()} for repo, files in self.repos.items()}
        self._cut_done: set[str] = set()

    def add(self, repo: str, path: str, source: Path | bytes) -> None:
        self._files.setdefault(repo, {})[path] = HubFile(source)

    def sha256(self, repo: str, path: str) -> str:
        return self._files[repo][path].sha256

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/models/{owner}/{name}/tree/{rev}", self._tree)
        app.router.add_get("/api/models/{owner}/{name}/tree/{rev}/{sub:.*}", self._tree)
        app.router.add_route("HEAD", "/{owner}/{name}/resolve/{rev}/{path:.+}", self._resolve)
        app.router.add_get("/{owner}/{name}/resolve/{rev}/{path:.+}", self._resolve, allow_head=False)
        return app

    def _repo(self, request: web.Request) -> dict[str, HubFile]:
        self.requests.append((request.method, request.path, request.headers.get("Range", "")))
        repo = f"{request.match_info['owner']}/{request.match_info['name']}"
        files = self._files.get(repo)
        if files is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "RepoNotFound",
                                            "X-Error-Message": "Repository not found"})
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized(headers={"X-Error-Code": "GatedRepo",
                                                "X-Error-Message": "Access to this model is restricted"})
        return files

    async def _tree(self, request: web.Request) -> web.Response:
        files = self._repo(request)
        return web.json_response([
            {"type": "file", "oid": hashlib.sha1(f.sha256.encode()).hexdigest(), "size": self._size(p, f), "path": p,
             "lfs": {"oid": f.sha256, "size": self._size(p, f), "pointerSize": 134}}
            for p, f in sorted(files.items())
        ])

    def _size(self, path: str, f: HubFile) -> int:
        return 10**16 if path in self.huge else f.size

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        files = self._repo(request)
        path = request.match_info["path"]
        f = files.get(path)
        if f is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound",
                                            "X-Error-Message": f"{path} does not exist"})
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(f.size)})
        start = 0
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0] or 0)
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
        resp = web.StreamResponse(status=status, headers={**headers, "Content-Length": str(f.size - start)})
        await resp.prepare(request)
        cut = f.size // 2 if path in self.cut_once and path not in self._cut_done else None
        pos = start
        while pos < f.size:
            end = min(pos + (1 << 20), f.size, cut if cut is not None and cut > pos else f.size)
            block = f.read(pos, end)
            if path in self.corrupt and pos <= f.size // 2 < end:
                i = f.size // 2 - pos
                block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1 :]
            await resp.write(block)
            pos = end
            if cut is not None and pos >= cut:
                self._cut_done.add(path)
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-body, as a flaky network does
                return resp
        await resp.write_eof()
        return resp
