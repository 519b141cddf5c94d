"""The views: parse parameters, run one query, shape the JSON. Errors are raised as
ApiError and answered by the middleware in app.py.

Each route's query parameters are declared here (params.Query) and documented from the
same declarations by api/openapi.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from api import params
from api.errors import DATABASE_UNAVAILABLE, ApiError, not_found
from api.queries import Queries
from chute.datasets.declarations import Dataset, Datasets, from_declaration
from chute.rabbitmq import broker
from chute.runtime.config import Config

CONFIG = web.AppKey("config", Config)
POOL = web.AppKey("pool", asyncpg.Pool)
QUERIES = web.AppKey("queries", Queries)
# False where no broker is part of the deployment (AWS Lambda): /ready checks only the database.
USES_BROKER = web.AppKey("uses_broker", bool)

STATES = ("received", "processing", "loaded", "duplicate", "quarantined", "failed")
MAX_LIMIT = 1000


def _limit(default: int) -> params.Integer:
    return params.Integer("limit", "Items per page.", 1, MAX_LIMIT, default)


def _exact(name: str, what: str) -> params.Text:
    return params.Text(name, f"Only people whose {what} is exactly this (case-sensitive).")


FIRST_CHUNK = params.Query(
    params.Integer("num_records", "How many rows, from the first.", 1, MAX_LIMIT, 10),
    params.Text("table_name", "The old client's table name: the served table or left out; "
                              "any other table is a 404."),
    ignored=("db_name", "user", "password"),
)
PEOPLE_CURSOR = params.Cursor("people", 2)
PEOPLE = params.Query(
    _limit(100), PEOPLE_CURSOR,
    _exact("location", "location"), _exact("first_name", "first name"),
    _exact("last_name", "last name"),
    params.Integer("min_age", "Only people at least this old.", 0, 150),
    params.Integer("max_age", "Only people at most this old.", 0, 150),
)
FILES_CURSOR = params.Cursor("files", 1)
FILES = params.Query(
    _limit(100), FILES_CURSOR,
    params.Text("name", "Only arrivals of the file with exactly this name (its path under "
                        "inbox/).", max_length=1000),
    params.Text("dataset", "Only arrivals of this dataset."),
    params.Choice("state", "Only arrivals in this state.", STATES),
)
REJECTS_CURSOR = params.Cursor("rejects", 1)
REJECTS = params.Query(_limit(100), REJECTS_CURSOR)
DATASETS = params.Query()


@dataclass(frozen=True)
class RowsRoute:
    """/datasets/{name}/rows of one dataset: its parameters, from its declaration."""

    dataset: Dataset
    cursor: params.Cursor
    query: params.Query

    @classmethod
    def of(cls, dataset: Dataset) -> RowsRoute:
        cursor = params.Cursor(f"rows-{dataset.name}", 2)
        filters: list[params.Param] = []
        for column in dataset.columns:
            if column.filter:
                filters.append(
                    params.Text(column.name, f"Only rows whose {column.name} is exactly this "
                                             "(case-sensitive).")
                    if column.type.name == "text" else
                    params.Typed.of(column.name, f"Only rows whose {column.name} is this.",
                                    column.type, column.rules.timezone))
            if column.type.ordered:
                filters += [
                    params.Typed.of(f"min_{column.name}", f"Only rows whose {column.name} is "
                                    "at least this.", column.type, column.rules.timezone),
                    params.Typed.of(f"max_{column.name}", f"Only rows whose {column.name} is "
                                    "at most this.", column.type, column.rules.timezone)]
        return cls(dataset, cursor, params.Query(_limit(100), cursor, *filters))

    @classmethod
    def of_all(cls, datasets: Datasets) -> list[RowsRoute]:
        return [cls.of(dataset) for dataset in datasets]


routes = web.RouteTableDef()


@routes.get("/read/first-chunk")
async def first_chunk(request: web.Request) -> web.Response:
    """The old client's route. Its db_name, user and password are accepted and ignored:
    the API never connects with credentials from a request (nor logs them)."""
    query = FIRST_CHUNK.parse(request)
    served = request.app[CONFIG].datasets["people"].table
    # PostgreSQL folds unquoted names to lower case, so the old client's "People" was ours.
    if query["table_name"] is not None and query["table_name"].lower() != served:
        raise not_found(f"no table {params.show(query['table_name'])}; "
                        f"this API serves {served!r}")
    async with request.app[POOL].acquire() as conn:
        rows = await request.app[QUERIES].first_chunk(conn, query["num_records"])
    return web.json_response([dict(row) for row in rows])


@routes.get("/people")
async def people(request: web.Request) -> web.Response:
    """People in arrival order, filtered; min_age above max_age simply matches nobody
    (the document cannot state a rule between two parameters, so it is not an error)."""
    query = PEOPLE.parse(request)
    limit = query["limit"]
    async with request.app[POOL].acquire() as conn:
        rows = await request.app[QUERIES].people_rows(conn, query, query["cursor"], limit + 1)
    items = [_person(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = PEOPLE_CURSOR.encode([last["file_seq"], last["line"]]) if last else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/datasets")
async def list_datasets(request: web.Request) -> web.Response:
    """Every declared dataset: its table, key, columns and the rows loaded so far."""
    DATASETS.parse(request)
    datasets: Datasets = request.app[CONFIG].datasets
    async with request.app[POOL].acquire() as conn:
        loaded = await request.app[QUERIES].loaded_rows(conn)
        tables = await request.app[QUERIES].tables(conn)
    items = [{
        "name": d.name, "table": d.table, "key": list(d.key),
        "columns": [{"name": c.name, "type": c.type.name, "required": c.needs_value,
                     "filter": c.filter} for c in d.columns],
        "rows": loaded.get(d.name, 0),
        "declaration": _declaration(d, tables.get(d.name)),
    } for d in datasets]
    return web.json_response({"items": items})


class Served:
    """What each dataset's table holds: the declaration this API serves it by.

    That is the declared one, unless the table holds rows of another (chute.datasets
    says which): while a declaration the table cannot take waits for `chute rebuild`,
    the API serves the old table by the old declaration (from chute.declarations), and
    after the swap by the new one. Each page's statement also reads which declaration
    the table holds, in the same snapshot, so a page is typed by its own table's.
    """

    def __init__(self, datasets: Datasets) -> None:
        self.routes = {route.dataset.name: route for route in RowsRoute.of_all(datasets)}

    async def follow(self, conn: asyncpg.Connection, name: str) -> RowsRoute:
        """The route by the declaration the table holds now (read afresh)."""
        text = await conn.fetchval(
            "SELECT d.declaration FROM chute.datasets s JOIN chute.declarations d "
            "ON d.hash = s.declaration WHERE s.name = $1", name)
        route = self.routes[name]
        if text is not None and text != route.dataset.declaration:
            route = self.routes[name] = RowsRoute.of(from_declaration(name, text))
        return route


SERVED = web.AppKey("served", Served)


def add_dataset_routes(app: web.Application, datasets: Datasets) -> None:
    """/datasets/NAME/rows for each dataset: one route each, as the document lists them."""
    app[SERVED] = Served(datasets)
    for dataset in datasets:
        async def handler(request: web.Request, name: str = dataset.name) -> web.Response:
            return await dataset_rows(request, name)

        app.router.add_get(f"/datasets/{dataset.name}/rows", handler)


async def dataset_rows(request: web.Request, name: str) -> web.Response:
    """A dataset's rows in arrival order, filtered by its declared filters, page by page;
    stable while files load, as /people is."""
    served = request.app[SERVED]
    route = served.routes[name]
    async with request.app[POOL].acquire() as conn:
        for attempt in range(3):
            query = route.query.parse(request)
            limit = query.pop("limit")
            after = query.pop("cursor")
            try:
                rows = await request.app[QUERIES].rows(conn, route.dataset, query, after,
                                                       limit + 1)
            except asyncpg.UndefinedColumnError:
                if attempt == 2:
                    raise
                route = await served.follow(conn, name)  # rebuilt: a column went
                continue
            if not rows or rows[0]["served_declaration"] in (
                    None, route.dataset.declaration_hash) or attempt == 2:
                break
            route = await served.follow(conn, name)  # rebuilt under another declaration
    columns = [c.name for c in route.dataset.columns]
    items = [{"id": row["id"], **{c: _json_value(row[c]) for c in columns}}
             for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = route.cursor.encode([last["file_seq"], last["line"]]) if last else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/files")
async def list_files(request: web.Request) -> web.Response:
    query = FILES.parse(request)
    limit = query["limit"]
    before = query["cursor"][0] if query["cursor"] else None
    async with request.app[POOL].acquire() as conn:
        rows = await request.app[QUERIES].files(conn, query["name"], query["state"], before,
                                                limit + 1, query["dataset"])
    items = [_file(row) for row in rows[:limit]]
    next_cursor = FILES_CURSOR.encode([rows[limit - 1]["seq"]]) if len(rows) > limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/files/{file_id}")
async def get_file(request: web.Request) -> web.Response:
    params.Query().parse(request)
    file_id = params.file_id(request)
    async with request.app[POOL].acquire() as conn:
        row = await request.app[QUERIES].file(conn, file_id)
    if row is None:
        raise not_found(f"no file {file_id}")
    return web.json_response(_file(row))


@routes.get("/files/{file_id}/rejects")
async def file_rejects(request: web.Request) -> web.Response:
    query = REJECTS.parse(request)
    file_id = params.file_id(request)
    limit = query["limit"]
    after = query["cursor"][0] if query["cursor"] else None
    async with request.app[POOL].acquire() as conn:
        if await request.app[QUERIES].file(conn, file_id) is None:
            raise not_found(f"no file {file_id}")
        rows = await request.app[QUERIES].rejects(conn, file_id, after, limit + 1)
    items = [dict(row) for row in rows[:limit]]
    next_cursor = REJECTS_CURSOR.encode([rows[limit - 1]["line"]]) if len(rows) > limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/health")
async def health(_request: web.Request) -> web.Response:
    """The process is up; says nothing about the database or the broker (see /ready)."""
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """200 when both the database and the broker answer, else 503 naming which does not.
    Where the deployment has no broker (AWS Lambda), only the database is checked.

    Also 503 while a worker reports that it cannot work, is restarting or is waiting
    (chute.worker_problems, written by chute.runtime.health), naming it and why. Workers that are
    absent are not a problem: the API may run alone.
    """
    config = request.app[CONFIG]
    uses_broker = request.app[USES_BROKER]
    problems = []
    try:
        async with request.app[POOL].acquire(timeout=3) as conn:
            await conn.fetchval("SELECT 1", timeout=3)
            workers = await request.app[QUERIES].worker_problems(conn)
        problems.extend(f"{w['service']} {w['kind']}: {w['problem']}" for w in workers)
    except (*DATABASE_UNAVAILABLE, asyncpg.PostgresError) as e:
        problems.append(f"database: {type(e).__name__}")
    else:
        if uses_broker:  # where workers run: can they connect? (max_connections reached)
            problems.extend(await _new_connection_problem(config))
    loop = asyncio.get_running_loop()
    if uses_broker and not await loop.run_in_executor(None, broker.ping, config.amqp_url):
        problems.append("broker: no answer")
    if problems:
        raise ApiError(503, "not_ready", "; ".join(problems))
    return web.json_response({"status": "ready", "database": "ok",
                              "broker": "ok" if uses_broker else "not used"})


async def _new_connection_problem(config: Config) -> list[str]:
    """The API's pooled connection may outlive the server's will to take new ones, and a
    worker that cannot connect cannot report it: so /ready opens one as the workers do,
    to the database they write (not a standby the API may read), and closes it."""
    try:
        conn = await asyncpg.connect(config.database_url, timeout=3)
    except (*DATABASE_UNAVAILABLE, asyncpg.PostgresError) as e:
        return [f"database refuses new connections: {type(e).__name__}"]
    await conn.close()
    return []


def _person(row: asyncpg.Record) -> dict[str, Any]:
    return {key: row[key] for key in ("id", "first_name", "last_name", "age", "location")}


def _declaration(dataset: Dataset, table: asyncpg.Record | None) -> dict[str, Any]:
    """The declaration declared and the one its table holds (they differ while a
    rebuild is due or running), and the running rebuild's progress."""
    held = table["declaration"] if table else None
    rebuild = None
    if table and table["rebuild_id"] is not None:
        rebuild = {"rebuild_id": table["rebuild_id"], "files_done": table["files_done"],
                   "files_total": table["files_total"],
                   "started_at": table["started_at"].isoformat()}
    return {"declared": dataset.declaration_hash, "table": held,
            "matches": held == dataset.declaration_hash, "rebuild": rebuild}


def _json_value(value: Any) -> Any:
    """Numbers as JSON numbers, numeric as a string (no precision lost), dates and times
    in ISO 8601, uuids as text."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return value


def _file(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    item.pop("seq", None)
    for key in ("received_at", "finished_at"):
        if item[key] is not None:
            item[key] = item[key].isoformat()
    if item["entries"] is not None:  # a zip archive's (asyncpg gives json as text)
        item["entries"] = json.loads(item["entries"])
    return item
