"""The OpenAPI 3 document of every route, built from the same parameter declarations the
views validate with (api/routes.py), and served at /openapi.json and, as HTML, /docs.

The document describes the server that serves it: when CHUTE_API_TOKEN is set, every
operation but /health and /ready requires the bearer token; when it is not, no operation
does (the scheme stays declared, and the description says so).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api import docs, params
from api import routes as views
from chute.datasets.declarations import Column, Dataset
from chute.runtime.config import Config

DOCUMENT = web.AppKey("openapi", bytes)
DOCS_PAGE = web.AppKey("docs_page", str)
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties,
            "additionalProperties": False}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _page(item: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": _ref(item)},
                 "next_cursor": _nullable({"type": "string"})})


COUNT = {"type": "integer", "minimum": 0}
SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}})}),
    "Person": _obj({
        "id": {"type": "string", "format": "uuid"},
        "first_name": {"type": "string"},
        "last_name": _nullable({"type": "string"}),
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "location": {"type": "string"},
    }),
    "PeoplePage": _page("Person"),
    "File": _obj({
        "file_id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "dataset": _nullable({"type": "string"}),
        "sha256": _nullable({"type": "string", "pattern": "^[0-9a-f]{64}$",
                             "description": "Null for a file quarantined unread (a "
                             "symbolic link, a file chute may not read)."}),
        "state": {"type": "string", "enum": list(views.STATES)},
        "rows_total": _nullable(COUNT),
        "rows_loaded": _nullable(COUNT),
        "rows_rejected": _nullable(COUNT),
        # A keyed dataset's rows_loaded, split (docs/keys.md); null without a key.
        "rows_inserted": _nullable({**COUNT, "description": "Keyed datasets: loaded rows "
                                    "whose key was new. Null for a dataset without a key."}),
        "rows_replaced": _nullable({**COUNT, "description": "Keyed datasets: loaded rows "
                                    "that replaced an older version of their key."}),
        "rows_ignored": _nullable({**COUNT, "description": "Keyed datasets: loaded rows "
                                   "older than the version of their key already loaded "
                                   "(or than a later line of the file), so left out. Not "
                                   "rejects."}),
        "archive_id": _nullable({"type": "string", "format": "uuid", "description":
                                 "The zip archive this file is a member of, if any."}),
        "entries": _nullable({"type": "array", "description": "A zip archive's entries: "
                              "each member (its file_id and state) or why it was skipped "
                              "(a folder, not a CSV file ...). Null for any other file.",
                              "items": _obj({
                                  "entry": {"type": "string"},
                                  "file_id": _nullable({"type": "string", "format": "uuid"}),
                                  "state": _nullable({"type": "string"}),
                                  "skipped": _nullable({"type": "string"})})}),
        "rows_deleted": _nullable({**COUNT, "description": "Snapshot datasets (mode = "
                                   "\"snapshot\"): rows this file removed, those whose keys "
                                   "it does not hold. Null for a dataset of another mode."}),
        "error": _nullable({"type": "string"}),
        "move_error": _nullable({"type": "string", "description": "Why the finished file "
                                 "is still in work/: its move to archive/ or quarantine/ "
                                 "failed, and is tried again later. Null once it has "
                                 "moved."}),
        "received_at": {"type": "string", "format": "date-time"},
        "finished_at": _nullable({"type": "string", "format": "date-time"}),
    }),
    "FilesPage": _page("File"),
    "Reject": _obj({"line": {"type": "integer", "minimum": 1}, "reason": {"type": "string"},
                    "raw": {"type": "string"}}),
    "RejectsPage": _page("Reject"),
    "Dataset": _obj({
        "name": {"type": "string"},
        "table": {"type": "string"},
        "key": {"type": "array", "items": {"type": "string"}},
        "columns": {"type": "array", "items": _obj({
            "name": {"type": "string"}, "type": {"type": "string"},
            "required": {"type": "boolean"}, "filter": {"type": "boolean"}})},
        "rows": COUNT,
        "declaration": _obj({
            "declared": {"type": "string", "description": "The hash of the declaration "
                         "in this API's datasets file."},
            "table": _nullable({"type": "string", "description": "The hash of the "
                                "declaration the table holds rows of (chute.declarations)."}),
            "matches": {"type": "boolean", "description": "False while a rebuild is due "
                        "or running (chute rebuild)."},
            "rebuild": _nullable(_obj({
                "rebuild_id": {"type": "integer"}, "files_done": COUNT,
                "files_total": _nullable(COUNT),
                "started_at": {"type": "string", "format": "date-time"}})),
        }),
    }),
    "Datasets": _obj({"items": {"type": "array", "items": _ref("Dataset")}}),
    "Health": _obj({"status": {"type": "string", "enum": ["ok"]}}),
    "Ready": _obj({"status": {"type": "string", "enum": ["ready"]},
                   "database": {"type": "string"}, "broker": {"type": "string"}}),
}

ERRORS = {
    "400": "A parameter breaks its rules: wrong type, out of range, unknown, repeated, "
           "or a cursor this listing did not give out. The message names it.",
    "401": "CHUTE_API_TOKEN is set and the request has no `Authorization: Bearer <token>` "
           "with it.",
    "404": "No such file, path or table.",
    "503": "The database (or for /ready, the broker) is not answering; retry later.",
}


def _answer(description: str, media: str = JSON, schema: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema or {}}}}


def _operation(op_id: str, summary: str, description: str, ok: dict[str, Any],
               errors: tuple[str, ...], query: params.Query | None = None,
               path_params: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    parameters = [*path_params]
    for param in query.params if query else ():
        parameters.append({"name": param.name, "in": "query", "required": False,
                           "description": param.description, "schema": param.schema()})
    for name in query.ignored if query else ():
        parameters.append({"name": name, "in": "query", "required": False,
                           "description": "Accepted for the old client and ignored "
                                          "(never used, never logged).",
                           "schema": {"type": "string"}})
    responses = {"200": ok}
    for status in errors:
        responses[status] = _answer(ERRORS[status], schema=_ref("Error"))
    return {"operationId": op_id, "summary": summary, "description": description,
            "parameters": parameters, "responses": responses}


FILE_ID = {"name": "file_id", "in": "path", "required": True,
           "description": "The arrival's id (`file_id` in /files).",
           "schema": {"type": "string", "format": "uuid"}}
DATASET_NAME = {"name": "name", "in": "path", "required": True,
                "description": "A declared dataset's name (`name` in /datasets).",
                "schema": {"type": "string"}}
STATIC_NAME = {"name": "name", "in": "path", "required": True,
               "description": "console.css or console.js.",
               "schema": {"type": "string", "enum": ["console.css", "console.js"]}}
READ = ("400", "401", "503")


def _value_schema(column: Column) -> dict[str, Any]:
    """How a row's value of this column is written in JSON (see routes._json_value)."""
    kind = column.type
    if kind.json_kind == "integer":
        schema: dict[str, Any] = {"type": "integer", "minimum": kind.low, "maximum": kind.high}
    elif kind.json_kind in ("number", "boolean"):
        schema = {"type": kind.json_kind}
    elif kind.json_format in ("uuid", "date") or kind.name == "timestamptz":
        # A naive timestamp's ISO text has no offset, so it is no RFC 3339 date-time.
        schema = {"type": "string", "format": kind.json_format}
    else:
        schema = {"type": "string"}
    return schema if column.needs_value else _nullable(schema)


def _dataset_paths(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each dataset's rows route, with its own typed parameters and row schema."""
    paths, schemas = {}, {}
    for route in views.RowsRoute.of_all(config.datasets):
        dataset = route.dataset
        row = f"Row_{dataset.name}"
        schemas[row] = _obj({"id": {"type": "string", "format": "uuid"},
                             **{c.name: _value_schema(c) for c in dataset.columns}})
        schemas[f"{row}_page"] = _page(row)
        paths[f"/datasets/{dataset.name}/rows"] = {"get": _operation(
            f"rows_{dataset.name}", f"Rows of {dataset.name}, filtered, page by page",
            f"Rows of the dataset {dataset.name} (table {dataset.table}) in arrival order "
            "(file, then line). COL= matches a filter column exactly; min_COL and max_COL "
            "bound an ordered column (numbers, dates, times). Rows appear once their file "
            "and every earlier arrival of the dataset have settled, so following "
            "`next_cursor` never skips nor repeats a row while files load." + _keyed(dataset),
            _answer("One page of rows.", schema=_ref(f"{row}_page")), READ, route.query)}
    return paths, schemas


def _html_post(op_id: str, summary: str, description: str,
               path_params: tuple[dict[str, Any], ...] = (),
               errors: tuple[str, ...] = ("401",)) -> dict[str, Any]:
    """A console form's POST: answered with a redirect, or an HTML page saying why not."""
    operation = _operation(op_id, summary, description,
                           _answer("The page it redirected to.", "text/html",
                                   {"type": "string"}), errors, path_params=path_params)
    page = {"text/html": {"schema": {"type": "string"}}}
    operation["responses"]["303"] = {"description": "Done: on to the next page.",
                                     "content": {}}
    operation["responses"]["403"] = {"description": "Not allowed; the page says why.",
                                     "content": page}
    operation["responses"]["409"] = {"description": "Not possible now; the page says why.",
                                     "content": page}
    return operation


def _keyed(dataset: Dataset) -> str:
    if not dataset.key:
        return ""
    return (f" Keyed by {', '.join(dataset.key)}: one row per key, its latest version "
            "in arrival order, placed where that version came from; a key replaced by a "
            "later file moves to that file's place (so a reader paging meanwhile may meet "
            "it again, newer).")


def _paths() -> dict[str, dict[str, Any]]:
    return {
        "/datasets": {"get": _operation(
            "listDatasets", "The declared datasets",
            "Every dataset: its table, key, columns (type, required, filter) and the rows "
            "loaded so far.",
            _answer("The datasets.", schema=_ref("Datasets")), READ, views.DATASETS)},
        "/read/first-chunk": {"get": _operation(
            "firstChunk", "The first rows, for the old client",
            "The first `num_records` rows in arrival order (file, then line), whatever "
            "state their file is in.",
            _answer("The rows.", schema={"type": "array", "items": _ref("Person")}),
            ("400", "401", "404", "503"), views.FIRST_CHUNK)},
        "/people": {"get": _operation(
            "listPeople", "Loaded people, filtered, page by page",
            "Rows in arrival order (file, then line). Text filters match the whole stored "
            "value exactly, case-sensitive (stored values are trimmed, inner spaces "
            "collapsed). Rows appear once their file and every earlier arrival have "
            "settled (no longer `received` or `processing`), so following `next_cursor` "
            "never skips nor repeats a row while files load. `next_cursor` is null on "
            "the last page.",
            _answer("One page of people.", schema=_ref("PeoplePage")), READ, views.PEOPLE)},
        "/files": {"get": _operation(
            "listFiles", "Arrivals of files, newest first",
            "Every arrival of a file and its outcome. Counts of a file still `processing` "
            "are the batches loaded so far. For a keyed dataset, rows_loaded is split into "
            "rows_inserted, rows_replaced and rows_ignored; a snapshot also counts "
            "rows_deleted.",
            _answer("One page of arrivals.", schema=_ref("FilesPage")), READ, views.FILES)},
        "/files/{file_id}": {"get": _operation(
            "getFile", "One arrival", "One arrival of a file and its outcome.",
            _answer("The arrival.", schema=_ref("File")), ("400", "401", "404", "503"),
            path_params=(FILE_ID,))},
        "/files/{file_id}/rejects": {"get": _operation(
            "listRejects", "An arrival's rejected rows",
            "Rows that broke a cleaning rule, by line: the reason and the raw text.",
            _answer("One page of rejected rows.", schema=_ref("RejectsPage")),
            ("400", "401", "404", "503"), views.REJECTS, path_params=(FILE_ID,))},
        "/health": {"get": _operation(
            "health", "Liveness", "200 while the process runs. Needs no token.",
            _answer("Alive.", schema=_ref("Health")), ())},
        "/ready": {"get": _operation(
            "ready", "Readiness", "200 when the database and the broker answer and no worker "
            "reports that it cannot work, else 503 naming why. Needs no token.",
            _answer("Ready.", schema=_ref("Ready")), ("503",))},
        "/metrics": {"get": _operation(
            "metrics", "Prometheus metrics", "Requests by route template and status, "
            "latency histogram, process figures; Prometheus text format.",
            _answer("The metrics.", "text/plain", {"type": "string"}), ("401",))},
        "/openapi.json": {"get": _operation(
            "openapi", "This document", "The OpenAPI 3 document of every route.",
            _answer("The document.", schema={"type": "object"}), ("401",))},
        "/": {"get": _operation(
            "consoleOverview", "The console: overview", "A card per dataset (rows, files "
            "today, rejected share, last arrival, files waiting by stage, rows per minute "
            "over the last hour, the declaration against the database), worker problems "
            "first, then the recent files; HTML for people (docs/console.md).",
            _answer("The page.", "text/html", {"type": "string"}), ("401", "503"))},
        "/console/datasets/{name}": {"get": _operation(
            "consoleDataset", "The console: a dataset", "The declaration, a rows browser "
            "with a typed input per filter, and the dataset's files; HTML.",
            _answer("The page.", "text/html", {"type": "string"}), ("401", "404", "503"),
            path_params=(DATASET_NAME,))},
        "/console/files/{file_id}": {"get": _operation(
            "consoleFile", "The console: a file", "One arrival: its timeline, counts, and "
            "rejects grouped by reason with examples; HTML.",
            _answer("The page.", "text/html", {"type": "string"}), ("400", "401", "404", "503"),
            path_params=(FILE_ID,))},
        "/console/files/{file_id}/rejects.csv": {"get": _operation(
            "consoleRejectsCsv", "An arrival's rejects as CSV", "Every rejected row: line, "
            "reason, raw, with a header.",
            _answer("The rejects.", "text/csv", {"type": "string"}),
            ("400", "401", "404", "503"), path_params=(FILE_ID,))},
        "/console/static/{name}": {"get": _operation(
            "consoleStatic", "The console's script and style", "console.css and "
            "console.js, shipped in the package.",
            {"description": "The file.", "content": {
                "text/css": {"schema": {"type": "string"}},
                "text/javascript": {"schema": {"type": "string"}}}}, ("401", "404"),
            path_params=(STATIC_NAME,))},
        "/docs": {"get": _operation(
            "docs", "This document as a web page", "The document rendered as plain HTML.",
            _answer("The page.", "text/html", {"type": "string"}), ("401",))},
    }


def _action_paths() -> dict[str, Any]:
    """The console's actions: served only where they are on (CHUTE_ADMIN_TOKEN set and a
    broker in the deployment; api/console/actions.py)."""
    return {
        "/console/admin": {
            "get": _operation(
                "consoleAdmin", "The console: admin sign-in", "A form for the admin token "
                "(CHUTE_ADMIN_TOKEN); says when actions are off.",
                _answer("The page.", "text/html", {"type": "string"}), ("401",)),
            "post": _html_post(
                "consoleSignIn", "Sign in as admin", "Form field `token`: the admin token. "
                "Sets the admin session's cookie and redirects (303); 403 when the token is "
                "wrong, actions are off, or the request comes from another site.")},
        "/console/admin/sign-out": {"post": _html_post(
            "consoleSignOut", "Sign out", "Ends the admin session and redirects (303) to /.")},
        "/console/files/{file_id}/retry": {"post": _html_post(
            "consoleRetry", "Retry a quarantined or failed file", "For a signed-in admin, "
            "with the form's `csrf` token: asks the watcher, through the broker, to send the "
            "file through again, then redirects (303) to its page. 403 without an admin "
            "session, its token, or from another site; 409 when the file is not "
            "quarantined or failed (docs/console.md).", path_params=(FILE_ID,),
            errors=("400", "401", "404"))},
        "/console/files/{file_id}/replay": {"post": _html_post(
            "consoleReplay", "Replay a loaded file's rejected rows", "For a signed-in "
            "admin, with the form's `csrf` token: asks the watcher, through the broker, to "
            "run `chute replay FILE_ID`, then redirects (303) to the file's page. 403 "
            "without an admin session, its token, or from another site; 409 when the file "
            "is not loaded or has no rejected row (docs/console.md).",
            path_params=(FILE_ID,), errors=("400", "401", "404"))},
        "/console/datasets/{name}/rebuild": {"post": _html_post(
            "consoleRebuild", "Rebuild a dataset's table", "For a signed-in admin, with the "
            "form's `csrf` token: asks the watcher, through the broker, to run `chute "
            "rebuild NAME`, then redirects (303) to the dataset's page. 403 without an "
            "admin session, its token, or from another site (docs/console.md).",
            path_params=(DATASET_NAME,), errors=("401", "404"))},
    }


OPEN_PATHS = frozenset({"/health", "/ready"})  # answer without a token: probes need them


def build(config: Config, actions: bool = False) -> dict[str, Any]:
    """`actions`: the console's actions are served (api/console/actions.py enabled)."""
    required = [{"bearer": []}] if config.api_token else []
    dataset_paths, dataset_schemas = _dataset_paths(config)
    paths = _paths() | dataset_paths | (_action_paths() if actions else {})
    console_dataset = paths["/console/datasets/{name}"]["get"]
    console_dataset["parameters"] = [{**DATASET_NAME, "schema": {
        "type": "string", "enum": [d.name for d in config.datasets]}}]
    for path, operations in paths.items():
        for operation in operations.values():
            operation["security"] = [] if path in OPEN_PATHS else required
    auth = ("Every route but /health and /ready needs `Authorization: Bearer <token>`."
            if config.api_token else "This server has no CHUTE_API_TOKEN: no route needs "
            "a token. With one set, every route but /health and /ready needs it.")
    return {
        "openapi": "3.0.3",
        "info": {"title": "chute", "version": "0.1.0",
                 "description": "Rows loaded from CSV files, and what happened to each file. "
                                "Every answer is JSON; errors are "
                                '`{"error": {"code", "message"}}`. ' + auth},
        "paths": paths,
        "components": {"schemas": SCHEMAS | dataset_schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def install(app: web.Application, config: Config, actions: bool = False) -> None:
    """Build the document and its page once: they change only with the configuration."""
    document = build(config, actions)
    app[DOCUMENT] = json.dumps(document, indent=1).encode()
    app[DOCS_PAGE] = docs.render(document)


routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type=JSON)


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=request.app[DOCS_PAGE], content_type="text/html")
