"""`/admin/keys` and `/admin/spend`: key management over HTTP, for the admin key or keys with the admin scope.

A new key's secret is in the creation answer and nowhere else, ever: listings show its first characters.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from hearth.access.keys import KeySpec
from hearth.access.manage import create_key, find_key, revoke_key, spend_report, update_key
from hearth.api.common import guarded, json_response, openai_error, read_body
from hearth.api.gate import ACCESS, Route, add_routes
from hearth.core.errors import BadRequest


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@guarded(openai_error)
async def create(request: web.Request) -> web.Response:
    key, secret = await create_key(request.app[ACCESS].store, await _object(request))
    return json_response({"key": secret, **key.public()})


@guarded(openai_error)
async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[ACCESS].store.all()
    return json_response({"object": "list", "data": [k.public() for k in keys]})


@guarded(openai_error)
async def show(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    key = await find_key(access.store, request.match_info["id"])
    return json_response({**key.public(), "spend": await spend_report(access.meter, key)})


@guarded(openai_error)
async def update(request: web.Request) -> web.Response:
    key = await update_key(request.app[ACCESS].store, request.match_info["id"], await _object(request))
    return json_response(key.public())


@guarded(openai_error)
async def revoke(request: web.Request) -> web.Response:
    key = await revoke_key(request.app[ACCESS].store, request.match_info["id"])
    return json_response(key.public())


@guarded(openai_error)
async def spend(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    wanted = request.query.getall("key", [])
    keys = [await find_key(access.store, k) for k in wanted] if wanted else await access.store.all()
    return json_response({"object": "list", "data": [await spend_report(access.meter, k) for k in keys]})


ROUTES = [
    Route("POST", "/admin/keys", create, "admin", "Create an API key (the secret is shown once)", KeySpec),
    Route("GET", "/admin/keys", list_keys, "admin", "API keys"),
    Route("GET", "/admin/keys/{id}", show, "admin", "One API key and its spend"),
    Route("PATCH", "/admin/keys/{id}", update, "admin", "Change an API key's limits"),
    Route("POST", "/admin/keys/{id}", update, "admin",
          "Change an API key's limits (for clients without PATCH)"),  # for clients without PATCH
    Route("DELETE", "/admin/keys/{id}", revoke, "admin", "Revoke an API key"),
    Route("GET", "/admin/spend", spend, "admin", "Spend per key (?key=...)"),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)
