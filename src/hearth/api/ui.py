"""The web console at `/ui`: static files shipped in the package (no build step, no CDN), read once at start.

The pages are public, like any static site: they hold no data and no key. Everything they show comes from
the same APIs, with the same key, as any other client (the key lives in the tab's sessionStorage, never in
a URL).
"""

from __future__ import annotations

import hashlib
import mimetypes
from importlib import resources

from aiohttp import web

from hearth.api.gate import Route, add_routes

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png",
          ".svg": "image/svg+xml", ".txt": "text/plain"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'")


def _load() -> dict[str, tuple[bytes, str, str]]:
    """Every file under ui/static: path -> (content, content type, etag)."""
    files: dict[str, tuple[bytes, str, str]] = {}
    root = resources.files("hearth.ui").joinpath("static")

    def walk(node: resources.abc.Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            else:
                body = child.read_bytes()
                suffix = "." + child.name.rsplit(".", 1)[-1]
                ctype = _TYPES.get(suffix) or mimetypes.guess_type(child.name)[0] or "application/octet-stream"
                files[name] = (body, ctype, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    walk(root, "")
    return files


def setup(app: web.Application) -> None:
    files = _load()

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("path") or "index.html"
        entry = files.get(name)
        if entry is None:
            raise web.HTTPNotFound(text=f"no console file {name!r}")
        body, ctype, etag = entry
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if ctype.startswith("text/") else None
        return web.Response(body=body, content_type=ctype, charset=charset, headers=headers)

    # Not in /openapi.json: the console's own files.
    add_routes(app, [Route("GET", "/ui", redirect, "public"), Route("GET", "/ui/", serve, "public"),
                     Route("GET", "/ui/{path:.+}", serve, "public")])
