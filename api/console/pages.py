"""The console: server-rendered pages on the API's port, under the API's token.

GET / is the overview (a card per dataset, worker problems first); each dataset and
each file has a page. Pages are Jinja2 templates with autoescape on, so a file name or a
value is always text, never markup; a small script (static/console.js) refreshes the
parts marked live and switches the theme. Nothing is fetched from elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from api import params
from api.console import actions, cards, inputs
from api.console import queries as sql
from api.console.slow import SlowCache
from api.errors import ApiError, not_found
from api.routes import (
    CONFIG,
    FILES_CURSOR,
    POOL,
    QUERIES,
    REJECTS_CURSOR,
    SERVED,
    USES_BROKER,
    dataset_rows,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SLOW = web.AppKey("console_slow", SlowCache)
RECENT = 50  # files on the overview, as many as the status page before it showed
FILES_PAGE = 20  # files on a dataset's page
ROWS_PAGE = 25
REJECTS_PAGE = 50

routes = web.RouteTableDef()
# The admin's sign-in and actions: added only where actions are on (see install).
action_routes = web.RouteTableDef()

# The console's own script and style, read once: shipped in the package, never fetched
# from elsewhere, so the console works offline.
STATIC = {path.name: (path.read_bytes(), "text/css" if path.suffix == ".css"
                      else "text/javascript")
          for path in (HERE / "static").iterdir() if path.suffix in (".css", ".js")}

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
templates.filters["n"] = lambda value: "" if value is None else f"{value:,}"
templates.filters["when"] = lambda value: "" if value is None else value.strftime(
    "%Y-%m-%d %H:%M:%S %Z")
templates.filters["share"] = lambda value: "–" if value is None else (
    f"{value:.1%}" if value >= 0.001 or value == 0 else "<0.1%")
templates.filters["value"] = lambda value: "" if value is None else (
    ("true" if value else "false") if isinstance(value, bool) else str(value))  # as in JSON
templates.globals["sparkline"] = cards.sparkline


def install(app: web.Application) -> None:
    """The console's state, and its actions' routes where they are on: elsewhere they
    do not exist (404), and the document does not list them."""
    app[SLOW] = SlowCache(app[CONFIG], app[QUERIES], app[USES_BROKER])
    if actions.enabled(app[CONFIG], app[USES_BROKER]):
        app.add_routes(action_routes)


def render(request: web.Request, name: str, status: int = 200, **context: Any
           ) -> web.Response:
    config = request.app[CONFIG]
    session = actions.session_of(config, request)
    body = templates.get_template(name).render(
        actions_on=actions.enabled(config, request.app[USES_BROKER]),
        signed_in=session is not None,
        csrf=actions.csrf_token(config, session) if session else "",
        here=request.path_qs, now=datetime.now().astimezone(), **context)
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy": CSP,
                                 "X-Frame-Options": "DENY"})


# Only this console's own script and style; no inline script can run, even one that
# slipped past escaping; no other site may frame the pages (clickjacking).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@routes.get("/console/static/{name}")
async def static(request: web.Request) -> web.Response:
    found = STATIC.get(request.match_info["name"])
    if found is None:
        raise not_found(f"no console file {params.show(request.match_info['name'])}")
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers={"Cache-Control": "max-age=300"})


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    queries = request.app[QUERIES]
    pool = request.app[POOL]
    names = [d.name for d in config.datasets]
    slow = await request.app[SLOW].get(pool)
    async with pool.acquire() as conn:
        live = await sql.overview(conn, names)
        tables = await queries.tables(conn)
        workers = await queries.worker_problems(conn)
        recent = await queries.files(conn, None, None, None, RECENT)
    return render(request, "overview.html",
                  cards=cards.build_cards(config.datasets, live, slow, tables),
                  workers=workers, dead_letters=slow.dead_letters, recent=recent,
                  entries=_entries)


@routes.get("/console/datasets/{name}")
async def dataset_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    config = request.app[CONFIG]
    if name not in {d.name for d in config.datasets}:
        raise not_found(f"no dataset {params.show(name)}")
    route = request.app[SERVED].routes[name]
    given = {key: value for key, value in request.query.items()}
    asked = inputs.rows_query(route.query, given)
    rows, problem = None, None
    api = request.clone(rel_url=request.rel_url.with_path(f"/datasets/{name}/rows")
                        .with_query({**asked, "limit": str(ROWS_PAGE)}))
    try:
        rows = json.loads((await dataset_rows(api, name)).text)
    except ApiError as e:
        problem = e.message  # a value the API refuses: said beside the form
    route = request.app[SERVED].routes[name]  # followed to the table's declaration
    files_cursor = request.query.get("files_cursor")
    before = None
    if files_cursor:
        try:
            before = FILES_CURSOR.parse(files_cursor)[0]
        except ApiError as e:
            problem = e.message
    async with request.app[POOL].acquire() as conn:
        files = await request.app[QUERIES].files(conn, None, None, before, FILES_PAGE + 1,
                                                 name)
    next_files = (FILES_CURSOR.encode([files[FILES_PAGE - 1]["seq"]])
                  if len(files) > FILES_PAGE else None)
    filters = {k: v for k, v in asked.items() if k != "cursor"}
    return render(request, "dataset.html", dataset=route.dataset,
                  inputs=inputs.inputs(route.query, given), filters=filters, rows=rows,
                  problem=problem, files=files[:FILES_PAGE], next_files=next_files,
                  told=request.query.get("told"), entries=_entries, rules=_rules)


@routes.get("/console/files/{file_id}")
async def file_page(request: web.Request) -> web.Response:
    file_id = params.file_id(request)
    after = None
    if cursor := request.query.get("rejects_cursor"):
        after = REJECTS_CURSOR.parse(cursor)[0]
    queries = request.app[QUERIES]
    async with request.app[POOL].acquire() as conn:
        item = await queries.file(conn, file_id)
        if item is None:
            raise not_found(f"no file {file_id}")
        details = await sql.file_details(conn, file_id)
        rejects = await queries.rejects(conn, file_id, after, REJECTS_PAGE + 1)
    next_rejects = (REJECTS_CURSOR.encode([rejects[REJECTS_PAGE - 1]["line"]])
                    if len(rejects) > REJECTS_PAGE else None)
    groups: list[dict[str, Any]] = []
    for row in details["groups"]:
        if not groups or groups[-1]["reason"] != row["reason"]:
            groups.append({"reason": row["reason"], "count": row["n"], "examples": []})
        groups[-1]["examples"].append(row)
    return render(request, "file.html", file=item, extra=details["extra"],
                  batches=details["batches"], groups=groups,
                  rejects=rejects[:REJECTS_PAGE], next_rejects=next_rejects,
                  retryable=actions.retryable(item["state"]) and item["dataset"] is not None,
                  replayable=actions.replayable(item) and item["dataset"] is not None,
                  paging=after is not None, told=request.query.get("told"),
                  entries=_entries)


@routes.get("/console/files/{file_id}/rejects.csv")
async def rejects_csv(request: web.Request) -> web.StreamResponse:
    """Every reject of the file, as CSV: line, reason, raw; streamed from a cursor."""
    file_id = params.file_id(request)
    async with request.app[POOL].acquire() as conn:
        item = await request.app[QUERIES].file(conn, file_id)
        if item is None:
            raise not_found(f"no file {file_id}")
        filename = f"rejects-{file_id}.csv"
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"'})
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(["line", "reason", "raw"])
        async with conn.transaction(readonly=True):
            async for row in conn.cursor(sql.ALL_REJECTS, file_id, prefetch=1000):
                writer.writerow([row["line"], row["reason"], row["raw"]])
                if buffer.tell() > 1 << 16:
                    await response.write(buffer.getvalue().encode())
                    buffer.seek(0)
                    buffer.truncate()
        await response.write(buffer.getvalue().encode())
        await response.write_eof()
    return response


async def _refusal(request: web.Request, context: dict[str, Any]) -> web.Response | None:
    """The page saying why this POST may not act (403), logged; None when it may."""
    try:
        await actions.check_action(request.app[CONFIG], request.app[USES_BROKER], request)
    except actions.Forbidden as e:
        return _refused(request, context, 403, str(e))
    return None


def _refused(request: web.Request, context: dict[str, Any], status: int,
             reason: str) -> web.Response:
    log.warning("console action refused", extra={**context, "reason": reason})
    return render(request, "refused.html", status=status, reason=reason)


async def _file(request: web.Request, file_id: Any) -> dict[str, Any]:
    async with request.app[POOL].acquire() as conn:
        item = await request.app[QUERIES].file(conn, file_id)
    if item is None:
        raise not_found(f"no file {file_id}")
    return dict(item)


@action_routes.post("/console/files/{file_id}/retry")
async def retry(request: web.Request) -> web.Response:
    """Ask the watcher to put the file through again (see actions.py)."""
    file_id = params.file_id(request)
    context = {"action": "retry", "file_id": str(file_id), "remote": request.remote}
    if refused := await _refusal(request, context):
        return refused
    item = await _file(request, file_id)
    if not actions.retryable(item["state"]):
        return _refused(request, context, 409, f"{item['name']} is {item['state']}: only "
                                               "quarantined or failed files retry")
    await actions.request_retry(request.app[CONFIG], str(file_id))
    log.info("console action requested", extra={**context, "file_name": item["name"]})
    raise web.HTTPSeeOther(f"/console/files/{file_id}?told=retry")


@action_routes.post("/console/files/{file_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """Ask the watcher to run `chute replay FILE_ID` (see actions.py)."""
    file_id = params.file_id(request)
    context = {"action": "replay", "file_id": str(file_id), "remote": request.remote}
    if refused := await _refusal(request, context):
        return refused
    item = await _file(request, file_id)
    if not actions.replayable(item) or item["dataset"] is None:
        return _refused(request, context, 409,
                        f"{item['name']} is {item['state']} with {item['rows_rejected'] or 0} "
                        "rejected rows: only a loaded file's rejected rows replay")
    await actions.request_command(request.app[CONFIG], "replay", str(file_id), item["dataset"])
    log.info("console action requested", extra={**context, "file_name": item["name"]})
    raise web.HTTPSeeOther(f"/console/files/{file_id}?told=replay")


@action_routes.post("/console/datasets/{name}/rebuild")
async def rebuild(request: web.Request) -> web.Response:
    """Ask the watcher to run `chute rebuild NAME` (see actions.py)."""
    name = request.match_info["name"]
    context = {"action": "rebuild", "dataset": name, "remote": request.remote}
    if refused := await _refusal(request, context):
        return refused
    if request.app[CONFIG].datasets.get(name) is None:
        raise not_found(f"no dataset {params.show(name)}")
    await actions.request_command(request.app[CONFIG], "rebuild", "", name)
    log.info("console action requested", extra=context)
    raise web.HTTPSeeOther(f"/console/datasets/{name}?told=rebuild")


@action_routes.get("/console/admin")
async def admin_page(request: web.Request) -> web.Response:
    return render(request, "admin.html", next=_local(request.query.get("next", "/")),
                  reason=None)


@action_routes.post("/console/admin")
async def admin_sign_in(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    form = await request.post()
    target = _local(str(form.get("next", "/")))
    try:
        if not actions.enabled(config, request.app[USES_BROKER]):
            raise actions.Forbidden("actions are off on this server")
        actions.check_same_origin(request)
        response = web.HTTPSeeOther(target)
        actions.sign_in(config, request, response, str(form.get("token", "")))
    except actions.Forbidden as e:
        log.warning("console sign-in refused", extra={"remote": request.remote,
                                                      "reason": str(e)})
        return render(request, "admin.html", status=403, next=target, reason=str(e))
    log.info("console sign-in", extra={"remote": request.remote})
    raise response


@action_routes.post("/console/admin/sign-out")
async def admin_sign_out(request: web.Request) -> web.Response:
    try:
        actions.check_same_origin(request)
    except actions.Forbidden as e:
        return render(request, "refused.html", status=403, reason=str(e))
    response = web.HTTPSeeOther("/")
    actions.sign_out(response)
    raise response


def _local(target: str) -> str:
    """Only a path of this server (never //elsewhere or a scheme): no open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _entries(item: Any) -> dict[str, Any] | None:
    """A zip archive's summary: its members by state, and how many entries it skipped."""
    if item["entries"] is None:
        return None
    entries = json.loads(item["entries"])
    states: dict[str, int] = {}
    for entry in entries:
        if entry["file_id"] is not None:
            states[entry["state"]] = states.get(entry["state"], 0) + 1
    return {"members": sum(states.values()), "states": sorted(states.items()),
            "skipped": len(entries) - sum(states.values()), "list": entries}


def _rules(column: Any) -> list[str]:
    """A column's declared rules, as a person would write them."""
    rules = column.rules
    found = []
    if column.header != column.name:
        found.append(f"header “{column.header}”")
    if column.needs_value:
        found.append("required")
    for label, value in (("min", rules.min), ("max", rules.max),
                         ("max length", rules.max_length), ("pattern", rules.pattern),
                         ("format", rules.format)):
        if value is not None:
            found.append(f"{label} {value}")
    if rules.values is not None:
        found.append("one of " + ", ".join(rules.values))
    if column.type.name == "timestamptz" and rules.timezone != "UTC":
        found.append(f"time zone {rules.timezone}")
    if column.nulls - {""}:
        found.append("nulls " + ", ".join(sorted(column.nulls - {""})))
    if column.take:
        found.append(f"takes {column.take.replace('_', ' ')}")
    return found
