"""The views: parse parameters, run one query, shape the JSON. Errors are raised as
ApiError and answered by the middleware in app.py."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp import web

from api import params
from api.errors import ApiError, not_found
from api.queries import Queries
from chute import broker
from chute.config import Config

CONFIG = web.AppKey("config", Config)
POOL = web.AppKey("pool", asyncpg.Pool)
QUERIES = web.AppKey("queries", Queries)

STATES = ("received", "processing", "loaded", "duplicate", "quarantined", "failed")
MAX_LIMIT = 1000

routes = web.RouteTableDef()


@routes.get("/read/first-chunk")
async def first_chunk(request: web.Request) -> web.Response:
    """The old client's route. Its db_name, user and password are accepted and ignored:
    the API never connects with credentials from a request (nor logs them)."""
    limit = params.integer(request, "num_records", 10, 1, MAX_LIMIT)
    table = request.query.get("table_name")
    if table is not None and table != request.app[CONFIG].table:
        raise not_found(f"no table {params._show(table)}; this API serves "
                        f"{request.app[CONFIG].table!r}")
    async with request.app[POOL].acquire() as conn:
        rows = await request.app[QUERIES].first_chunk(conn, limit)
    return web.json_response([dict(row) for row in rows])


@routes.get("/files")
async def list_files(request: web.Request) -> web.Response:
    limit = params.integer(request, "limit", 100, 1, MAX_LIMIT)
    name = params.text(request, "name")
    state = params.choice(request, "state", STATES)
    cursor = params.cursor(request, 1)
    async with request.app[POOL].acquire() as conn:
        rows = await request.app[QUERIES].files(conn, name, state, cursor and cursor[0],
                                                limit + 1)
    items = [_file_json(row) for row in rows[:limit]]
    next_cursor = params.encode_cursor([rows[limit - 1]["seq"]]) if len(rows) > limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    file_id = params.file_id(request)
    async with request.app[POOL].acquire() as conn:
        row = await request.app[QUERIES].file(conn, file_id)
    if row is None:
        raise not_found(f"no file {file_id}")
    return web.json_response(_file_json(row))


@routes.get("/files/{file_id}/rejects")
async def file_rejects(request: web.Request) -> web.Response:
    file_id = params.file_id(request)
    limit = params.integer(request, "limit", 100, 1, MAX_LIMIT)
    cursor = params.cursor(request, 1)
    async with request.app[POOL].acquire() as conn:
        if await request.app[QUERIES].file(conn, file_id) is None:
            raise not_found(f"no file {file_id}")
        rows = await request.app[QUERIES].rejects(conn, file_id, cursor and cursor[0],
                                                  limit + 1)
    items = [dict(row) for row in rows[:limit]]
    next_cursor = params.encode_cursor([rows[limit - 1]["line"]]) if len(rows) > limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/health")
async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """200 when both the database and the broker answer, else 503 naming which does not."""
    config = request.app[CONFIG]
    problems = []
    try:
        async with request.app[POOL].acquire(timeout=3) as conn:
            await conn.fetchval("SELECT 1", timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        problems.append(f"database: {type(e).__name__}")
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, broker.ping, config.amqp_url):
        problems.append("broker: no answer")
    if problems:
        raise ApiError(503, "not_ready", "; ".join(problems))
    return web.json_response({"status": "ready", "database": "ok", "broker": "ok"})


def _file_json(row: Any) -> dict[str, Any]:
    item = dict(row)
    item.pop("seq", None)
    for key in ("received_at", "finished_at"):
        if item[key] is not None:
            item[key] = item[key].isoformat()
    return item
