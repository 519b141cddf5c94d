"""The read API through a running `python -m api`, against a real database.

Most tests share one API process and one seeded database (module scope: the data is
only read); tests that need loading, a token or many rows have their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest
import requests
from aiohttp import test_utils
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.queries import Queries, create_reader_pool
from chute.datasets.declarations import load
from chute.postgres import db
from chute.reading.rowids import row_uuid
from chute.runtime.config import Config
from harness import Environment, Services, free_port, wait_until

LOCATIONS = ("Oslo", "Lima", "Rome")
TOKEN = "s3cret-token"


def person(line: int) -> tuple[str, str | None, int, str]:
    """first_name, last_name, age, location of a seeded row: varied enough to filter."""
    last = None if line % 11 == 0 else f"Berg{line % 3}"
    return f"Ann{line % 5}", last, line % 90, LOCATIONS[line % 3]


# name, state, rows loaded; the order is the arrival order.
SEED = (
    ("alpha.csv", "loaded", 250),
    ("beta.csv", "loaded", 50),
    ("broken.csv", "quarantined", 0),
    ("delta.csv", "processing", 10),
    ("echo.csv", "loaded", 20),
    ("alpha.csv", "duplicate", 0),
)


def seed(environment: Environment) -> None:
    """Arrivals, rows, rejects and a ledger row, as the pipeline would leave them."""
    conn = psycopg2.connect(environment.database_url)
    files = []  # file_id of each arrival, in order
    with conn, conn.cursor() as cur:
        for n, (name, state, rows) in enumerate(SEED):
            sha = hashlib.sha256(f"{n}:{name}".encode()).hexdigest()
            final = state != "processing"
            cur.execute(
                """INSERT INTO chute.files (file_id, name, path, sha256, size_bytes, state,
                       rows_total, rows_loaded, rows_rejected, error, finished_at, dataset)
                   VALUES (%s, %s, %s, %s, 1, %s, %s, %s, %s, %s,
                           CASE WHEN %s THEN now() END, 'people')
                   RETURNING file_id::text, seq""",
                (str(uuid.uuid4()), name, f"archive/{name}", sha, state,
                 rows + 3 * (n == 0) if final else None, rows if final else None,
                 3 * (n == 0) if final else None,
                 "no header" if state == "quarantined" else None, final))
            file_id, seq = cur.fetchone()
            files.append(file_id)
            psycopg2.extras.execute_values(
                cur, "INSERT INTO people VALUES %s",
                [(str(row_uuid(sha, line)), *person(line), seq, line)
                 for line in range(2, rows + 2)])
        alpha, delta = files[0], files[3]
        psycopg2.extras.execute_values(
            cur, "INSERT INTO chute.rejects VALUES %s",
            [(alpha, line, "age: not a whole number", f"Row {line},x,Oslo")
             for line in (300, 120, 7)])
        cur.execute("INSERT INTO chute.batches VALUES (%s, 0, 10, 2)", (delta,))
    conn.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    """One API over a seeded database, shared by the read-only tests of this module."""
    environment = Environment(tmp_path_factory.mktemp("api"))
    services = Services(environment)
    try:
        services.start("api")
        wait_until(services._api_up, 30, what="the API to answer /health")
        seed(environment)
        yield environment
    finally:
        services.stop_all()
        environment.cleanup()


def arrivals(environment: Environment) -> list[dict[str, Any]]:
    rows = environment.sql("SELECT file_id::text, seq, name, state FROM chute.files ORDER BY seq")
    return [dict(zip(("file_id", "seq", "name", "state"), r, strict=True)) for r in rows]


def visible_people(environment: Environment, where: str = "true",
                   args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """What /people should show: rows below the first arrival still in progress."""
    rows = environment.sql(
        f"""SELECT id::text, first_name, last_name, age, location FROM people
            WHERE file_seq < (SELECT min(seq) FROM chute.files
                              WHERE state IN ('received', 'processing')) AND {where}
            ORDER BY file_seq, line""", args)
    return [dict(zip(("id", "first_name", "last_name", "age", "location"), r, strict=True))
            for r in rows]


def all_pages(environment: Environment, path: str, limit: int,
              **query: Any) -> list[dict[str, Any]]:
    items, cursor, pages = [], None, 0
    while True:
        answer = environment.get(path, params={**query, "limit": limit, "cursor": cursor})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert pages < 1000


def error_of(answer: requests.Response, status: int) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


# --- /read/first-chunk -------------------------------------------------------------

def test_first_chunk_is_the_first_rows_in_arrival_order(api: Environment) -> None:
    everything = api.sql("SELECT id::text, first_name, last_name, age, location FROM people "
                         "ORDER BY file_seq, line")
    expected = [dict(zip(("id", "first_name", "last_name", "age", "location"), r, strict=True))
                for r in everything]

    assert api.get("/read/first-chunk").json() == expected[:10]
    assert api.get("/read/first-chunk", params={"num_records": 1000}).json() == expected


def test_first_chunk_accepts_and_ignores_the_old_clients_settings(api: Environment) -> None:
    old = api.get("/read/first-chunk", params={
        "db_name": "elsewhere", "user": "admin", "password": "hunter2-secret",
        "table_name": "people", "num_records": 3})
    shouted = api.get("/read/first-chunk", params={"table_name": "People", "num_records": 3})

    refused = api.get("/read/first-chunk", params={  # a 404 is logged at INFO
        "db_name": "elsewhere", "password": "hunter2-secret", "table_name": "secrets"})

    assert old.status_code == 200 and shouted.status_code == 200
    assert [r["first_name"] for r in old.json()] == ["Ann2", "Ann3", "Ann4"]
    assert shouted.json() == old.json()
    assert refused.status_code == 404
    logs = "".join(p.read_text() for p in api.logs.iterdir())
    assert '"path": "/read/first-chunk", "status": 404' in logs
    assert "hunter2" not in logs and "elsewhere" not in logs


def test_first_chunk_of_another_table_is_404(api: Environment) -> None:
    assert error_of(api.get("/read/first-chunk?table_name=secrets"), 404)["code"] == "not_found"
    injected = api.get("/read/first-chunk", params={"table_name": "people; DROP TABLE people"})
    assert error_of(injected, 404)["code"] == "not_found"
    assert api.sql("SELECT count(*) FROM people") == [(330,)]


# --- /people -----------------------------------------------------------------------

def test_people_pages_cover_every_settled_row_once_in_order(api: Environment) -> None:
    expected = visible_people(api)

    assert len(expected) == 300  # alpha and beta; delta is still loading, echo is after it
    assert all_pages(api, "/people", 7) == expected
    assert all_pages(api, "/people", 1000) == expected
    first = api.get("/people").json()
    assert first["items"] == expected[:100] and first["next_cursor"] is not None


def test_people_hides_rows_from_a_file_still_loading_and_those_after_it(
        api: Environment) -> None:
    shown = {item["id"] for item in all_pages(api, "/people", 1000)}
    delta_and_echo = {r[0] for r in api.sql(
        "SELECT id::text FROM people WHERE file_seq >= %s", (arrivals(api)[3]["seq"],))}

    assert len(delta_and_echo) == 30
    assert shown.isdisjoint(delta_and_echo)


@pytest.mark.parametrize(("query", "where", "args"), [
    ({"location": "Oslo"}, "location = %s", ("Oslo",)),
    ({"first_name": "Ann3"}, "first_name = %s", ("Ann3",)),
    ({"last_name": "Berg1"}, "last_name = %s", ("Berg1",)),
    ({"min_age": 80}, "age >= %s", (80,)),
    ({"max_age": 4}, "age <= %s", (4,)),
    ({"min_age": 10, "max_age": 12, "location": "Lima"},
     "age BETWEEN %s AND %s AND location = %s", (10, 12, "Lima")),
    ({"first_name": "Ann1", "last_name": "Berg2", "location": "Rome"},
     "first_name = %s AND last_name = %s AND location = %s", ("Ann1", "Berg2", "Rome")),
])
def test_people_filters_match_exactly(api: Environment, query: dict[str, Any], where: str,
                                      args: tuple[Any, ...]) -> None:
    expected = visible_people(api, where, args)

    assert expected  # every case matches something, so an empty answer cannot pass
    assert all_pages(api, "/people", 9, **query) == expected


@pytest.mark.parametrize("query", [
    {"location": "oslo"}, {"location": "Oslo "}, {"location": "Osl"},
    {"location": "x' OR '1'='1"}, {"last_name": "Berg1' --"}, {"min_age": 90},
    {"first_name": "\ufffd\ufffd"},
    {"min_age": 50, "max_age": 40},
])
def test_people_filters_without_a_match_give_an_empty_page(api: Environment,
                                                           query: dict[str, Any]) -> None:
    answer = api.get("/people", params=query)

    assert answer.status_code == 200
    assert answer.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("name", ["limit", "cursor", "location", "first_name", "last_name",
                                  "min_age", "max_age"])
def test_an_empty_value_is_a_400_not_a_default(api: Environment, name: str) -> None:
    error = error_of(api.get(f"/people?{name}="), 400)

    assert error["message"] == f"{name} is empty; leave it out to get the default"


def test_a_cursor_resumes_after_the_last_item(api: Environment) -> None:
    expected = visible_people(api, "location = %s", ("Lima",))
    first = api.get("/people", params={"location": "Lima", "limit": 5}).json()
    second = api.get("/people", params={"location": "Lima", "limit": 5,
                                        "cursor": first["next_cursor"]}).json()

    assert first["items"] + second["items"] == expected[:10]


# --- /files ------------------------------------------------------------------------

def test_files_are_listed_newest_first_with_their_outcome(api: Environment) -> None:
    files = arrivals(api)
    items = all_pages(api, "/files", 2)

    assert [i["file_id"] for i in items] == [f["file_id"] for f in reversed(files)]
    assert [i["state"] for i in items] == [f["state"] for f in reversed(files)]
    alpha = items[-1]
    assert set(alpha) == {"file_id", "name", "dataset", "sha256", "state", "rows_total",
                          "rows_loaded", "rows_rejected", "rows_inserted", "rows_replaced",
                          "rows_ignored", "rows_deleted", "error", "move_error", "received_at",
                          "finished_at", "archive_id", "entries"}
    assert (alpha["rows_inserted"], alpha["rows_replaced"], alpha["rows_ignored"],
            alpha["rows_deleted"]) == (None, None, None, None)  # people has no key
    assert (alpha["archive_id"], alpha["entries"]) == (None, None)  # no zip archive
    assert alpha["dataset"] == "people"
    assert (alpha["rows_total"], alpha["rows_loaded"], alpha["rows_rejected"]) == (253, 250, 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", alpha["received_at"])
    assert alpha["finished_at"] is not None
    delta = items[2]
    assert (delta["state"], delta["rows_total"], delta["rows_loaded"], delta["rows_rejected"],
            delta["finished_at"]) == ("processing", None, 10, 2, None)
    assert items[3]["error"] == "no header"


def test_files_filter_by_name_and_state(api: Environment) -> None:
    by_name = api.get("/files", params={"name": "alpha.csv"}).json()["items"]
    by_both = api.get("/files", params={"name": "alpha.csv", "state": "loaded"}).json()["items"]
    quarantined = api.get("/files", params={"state": "quarantined"}).json()["items"]

    assert [i["state"] for i in by_name] == ["duplicate", "loaded"]
    assert [i["state"] for i in by_both] == ["loaded"]
    assert [i["name"] for i in quarantined] == ["broken.csv"]
    assert api.get("/files", params={"name": "ALPHA.csv"}).json()["items"] == []


def test_one_file_and_its_rejects(api: Environment) -> None:
    alpha = arrivals(api)[0]["file_id"]
    one = api.get(f"/files/{alpha}")
    shouted = api.get(f"/files/{alpha.upper()}")
    rejects = all_pages(api, f"/files/{alpha}/rejects", 2)

    assert one.status_code == 200 and one.json()["name"] == "alpha.csv"
    assert shouted.json() == one.json()
    assert [r["line"] for r in rejects] == [7, 120, 300]
    assert rejects[0] == {"line": 7, "reason": "age: not a whole number", "raw": "Row 7,x,Oslo"}
    beta = arrivals(api)[1]["file_id"]
    assert api.get(f"/files/{beta}/rejects").json() == {"items": [], "next_cursor": None}


def test_unknown_file_is_404_and_a_bad_file_id_400(api: Environment) -> None:
    missing = str(uuid.uuid4())

    assert missing in error_of(api.get(f"/files/{missing}"), 404)["message"]
    assert error_of(api.get(f"/files/{missing}/rejects"), 404)["code"] == "not_found"
    assert "file_id" in error_of(api.get("/files/not-a-uuid"), 400)["message"]
    assert "file_id" in error_of(api.get("/files/1' OR '1'='1/rejects"), 400)["message"]


# --- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize(("path", "named"), [
    ("/read/first-chunk?num_records=abc", "num_records"),
    ("/read/first-chunk?num_records=0", "num_records"),
    ("/read/first-chunk?num_records=1001", "num_records"),
    ("/read/first-chunk?num_records=1.5", "num_records"),
    ("/read/first-chunk?num_records=%205", "num_records"),
    ("/read/first-chunk?num_records=99999999999999999999999", "num_records"),
    ("/read/first-chunk?host=db.example", "host"),
    ("/files?state=", "state"),
    ("/people?limit=0", "limit"),
    ("/people?limit=-1", "limit"),
    ("/people?limit=1e3", "limit"),
    ("/people?limit=1&limit=2", "limit"),
    ("/people?min_age=-1", "min_age"),
    ("/people?max_age=151", "max_age"),
    ("/people?min_age=ten", "min_age"),
    ("/people?age=30", "age"),
    ("/people?location=" + "x" * 201, "location"),
    ("/people?location=a%00b", "location"),
    ("/people?cursor=not-a-cursor", "cursor"),
    ("/people?cursor=%27%3B%20DROP%20TABLE%20people%3B--", "cursor"),
    ("/people?cursor=WyJwZW9wbGUiLDEsLTFd", "cursor"),  # ["people",1,-1]
    ("/people?cursor=WyJmaWxlcyIsMV0", "cursor"),  # a /files cursor
    ("/files?state=done", "state"),
    ("/files?limit=1001", "limit"),
    ("/files?cursor=WyJwZW9wbGUiLDEsMl0", "cursor"),  # a /people cursor
    ("/files/00000000-0000-0000-0000-000000000000/rejects?limit=x", "limit"),
    ("/files/00000000-0000-0000-0000-000000000000?verbose=1", "verbose"),
])
def test_bad_input_is_a_json_400_naming_the_parameter(api: Environment, path: str,
                                                      named: str) -> None:
    error = error_of(api.get(path), 400)

    assert error["code"] == "bad_request"
    assert named in error["message"]


def test_unknown_paths_and_methods_are_json(api: Environment) -> None:
    assert error_of(api.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(api.get("/people/"), 404)["code"] == "not_found"
    wrong = requests.post(api.api + "/people", timeout=10)
    assert error_of(wrong, 405)["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET,HEAD"
    assert error_of(requests.delete(api.api + "/files", timeout=10), 405)


# --- /health, /ready, /metrics, /openapi.json, /docs --------------------------------

def test_health_and_ready(api: Environment) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").json() == {"status": "ready", "database": "ok", "broker": "ok"}


def counter(environment: Environment, **labels: str) -> float:
    text = environment.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "chute_api_requests_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_metrics_count_requests_by_route_template_and_status(api: Environment) -> None:
    labels = {"method": "GET", "route": "/files/{file_id}", "status": "404"}
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    before, before_unmatched = counter(api, **labels), counter(api, **unmatched)

    for _ in range(3):
        api.get(f"/files/{uuid.uuid4()}")
    api.get(f"/no/such/{uuid.uuid4()}")

    assert counter(api, **labels) == before + 3
    assert counter(api, **unmatched) == before_unmatched + 1
    answer = api.get("/metrics")
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'chute_api_request_duration_seconds_bucket{le="0.005",method="GET",' \
           'route="/files/{file_id}"}' in answer.text


def test_openapi_documents_exactly_the_served_routes_and_parameters(api: Environment) -> None:
    document = api.get("/openapi.json").json()
    app = create_app(Config.from_env(api.env))
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD"}

    assert document["openapi"].startswith("3.")
    assert {(m, p) for p, ops in document["paths"].items() for m in ops} == served
    people = document["paths"]["/people"]["get"]
    assert [p["name"] for p in people["parameters"]] == [
        "limit", "cursor", "location", "first_name", "last_name", "min_age", "max_age"]
    assert people["parameters"][0]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}}
    # This server has no token: no operation needs one (test_token_... checks the other case).
    assert all(op["security"] == [] for ops in document["paths"].values()
               for op in ops.values())


def test_docs_page_is_plain_html_from_the_document(api: Environment) -> None:
    page = api.get("/docs")

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for path in api.get("/openapi.json").json()["paths"]:
        assert f"<code>{path}</code>" in page.text
    assert "<script" not in page.text and "http://" not in page.text
    assert "https://" not in page.text


# --- the token ----------------------------------------------------------------------

def test_token_guards_every_route_but_the_probes(tmp_path: Path) -> None:
    environment = Environment(tmp_path, CHUTE_API_TOKEN=TOKEN)
    services = Services(environment)
    try:
        services.start("api")
        wait_until(services._api_up, 30, what="the API to answer /health")
        good = {"Authorization": f"Bearer {TOKEN}"}

        for path in ("/people", "/files", "/read/first-chunk", "/metrics", "/openapi.json",
                     "/docs", f"/files/{uuid.uuid4()}", "/nowhere"):
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
                refused = environment.get(path, headers=headers)
                assert error_of(refused, 401)["code"] == "unauthorized"
                assert refused.headers["WWW-Authenticate"] == 'Bearer realm="chute"'
        assert environment.get("/people", headers=good).status_code == 200
        assert environment.get("/people", headers={"Authorization": f"bearer {TOKEN}"}
                               ).status_code == 200
        assert environment.get("/nowhere", headers=good).status_code == 404
        assert environment.get("/health").status_code == 200
        assert environment.get("/ready").status_code == 200
        document = environment.get("/openapi.json", headers=good).json()
        assert document["paths"]["/people"]["get"]["security"] == [{"bearer": []}]
        assert document["paths"]["/health"]["get"]["security"] == []
        raw = requests.get(environment.api + "/people", timeout=10,
                           headers={"Authorization": b"Bearer \xff\xfe"})
        assert error_of(raw, 401)["code"] == "unauthorized"
    finally:
        services.stop_all()
        environment.cleanup()


# --- the read-only role ------------------------------------------------------------

@pytest.fixture(scope="module")
def quiet_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    """A database with the schema and 100 000 rows (the pipeline is not the point here),
    and no process running."""
    environment = Environment(tmp_path_factory.mktemp("quiet"))
    try:
        db.ensure_database(environment.database_url)
        conn = db.connect(environment.database_url)
        try:
            db.apply_schema(conn, load(None), f"{environment.database}_reader")
            with conn, conn.cursor() as cur:
                cur.execute("""INSERT INTO people SELECT lpad(to_hex(g), 32, '0')::uuid,
                                   'First' || g % 500, 'Last' || g % 2000, g % 100,
                                   'Town ' || g % 100, 1 + g / 10000, g
                               FROM generate_series(1, 100000) g""")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ANALYZE people")
        finally:
            conn.close()
        yield environment
    finally:
        environment.cleanup()


@pytest.mark.parametrize("statement", [
    "INSERT INTO people VALUES (gen_random_uuid(), 'Eve', NULL, 30, 'Oslo', 1, 1)",
    "UPDATE people SET age = 1",
    "DELETE FROM people",
    "TRUNCATE people",
    "UPDATE chute.files SET state = 'failed'",
    "DELETE FROM chute.batches",
    "INSERT INTO chute.rejects VALUES (gen_random_uuid(), 1, 'r', 'raw')",
    "CREATE TABLE public.stolen (x int)",
    "CREATE TABLE chute.stolen (x int)",
    "CREATE SCHEMA stolen",
    "DROP TABLE people",
    "ALTER TABLE people ADD COLUMN x int",
    "CREATE INDEX stolen ON people (age)",
])
def test_the_reader_role_cannot_write(quiet_database: Environment, statement: str) -> None:
    conn = psycopg2.connect(quiet_database.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SET ROLE "{quiet_database.database}_reader"')
            cur.execute("SELECT count(*) FROM people")  # reading is allowed
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
    finally:
        conn.rollback()
        conn.close()


def test_api_connections_read_as_the_reader_in_read_only_transactions(
        quiet_database: Environment) -> None:
    config = Config.from_env(quiet_database.env)

    async def check() -> list[tuple[str, str, str]]:
        pool = await create_reader_pool(config)
        seen = []
        try:
            for _ in range(3):  # a released connection is reset by the pool: still the reader
                async with pool.acquire() as conn:
                    seen.append((await conn.fetchval("SELECT current_user"),
                                 await conn.fetchval("SHOW transaction_read_only"),
                                 await _error_of(conn, "CREATE TEMP TABLE t (x int)")))
        finally:
            await pool.close()
        return seen

    assert asyncio.run(check()) == [
        (f"{quiet_database.database}_reader", "on", "ReadOnlySQLTransactionError")] * 3


async def _error_of(conn: Any, statement: str) -> str:
    try:
        await conn.execute(statement)
    except Exception as e:  # noqa: BLE001 - the name of the error is the result
        return type(e).__name__
    return "no error"


# --- no database -------------------------------------------------------------------

def test_a_database_that_does_not_answer_is_a_json_503(quiet_database: Environment) -> None:
    closed = quiet_database.env | {
        "CHUTE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_here"}

    async def check() -> list[tuple[int, dict[str, Any]]]:
        app = create_app(Config.from_env(closed))
        async with test_utils.TestClient(test_utils.TestServer(app)) as client:
            answers = []
            for path in ("/people", "/read/first-chunk", "/files", "/ready"):
                response = await client.get(path)
                answers.append((response.status, await response.json()))
            return answers

    answers = asyncio.run(check())
    assert [status for status, _ in answers] == [503, 503, 503, 503]
    assert [body["error"]["code"] for _, body in answers] == ["unavailable"] * 3 + ["not_ready"]
    assert answers[3][1]["error"]["message"].startswith("database: ")


# --- EXPLAIN: every filter is served by an index -----------------------------------

KEYSET = "people_file_line"
FILTERS = "people_filters"  # the GIN index over location, first_name, last_name


@pytest.mark.parametrize(("filters", "must_use"), [
    ({}, KEYSET),
    ({"min_age": 30, "max_age": 31}, KEYSET),
    # 50 rows in 100 000: the filter index finds them, the keyset walk would read them all
    ({"last_name": "Last9"}, FILTERS),
    ({"first_name": "First9", "last_name": "Last9"}, FILTERS),
    ({"location": "Town 9", "last_name": "Last9", "min_age": 3}, FILTERS),
    # 1 row in 100: either plan reads a few thousand rows at most
    ({"location": "Town 7"}, None),
    ({"location": "Town 7", "min_age": 3, "max_age": 60}, None),
])
def test_people_queries_use_an_index_at_any_depth(quiet_database: Environment,
                                                  filters: dict[str, Any],
                                                  must_use: str | None) -> None:
    conn = psycopg2.connect(quiet_database.database_url)
    try:
        plans = []
        for after in (None, [1, 50], [9, 99000]):
            sql, args = Queries(load(None)).people_sql(filters, after, 101)
            with conn, conn.cursor() as cur:
                cur.execute("SET plan_cache_mode = force_custom_plan")  # as the API's pool
                cur.execute("PREPARE page AS " + sql)
                cur.execute("EXPLAIN EXECUTE page (" + ", ".join(["%s"] * len(args)) + ")", args)
                plans.append("\n".join(row[0] for row in cur.fetchall()))
                cur.execute("DEALLOCATE page")
    finally:
        conn.close()

    for plan in plans:
        used = {name for name in (KEYSET, FILTERS) if f" on {name}" in plan
                or f" using {name}" in plan}
        assert used, plan
        if must_use is not None:
            assert must_use in used, plan
        assert "Seq Scan" not in plan, plan


# --- paging while files load -------------------------------------------------------

def test_paging_while_files_load_never_skips_nor_repeats_a_row(
        environment: Environment, services: Services) -> None:
    for name in ("api", "watcher", "transformer", "transformer", "loader", "loader"):
        services.start(name, CHUTE_BATCH_SIZE="40")
    wait_until(services._api_up, 30, what="the API to answer /health")
    names = [f"load-{n}.csv" for n in range(6)]
    for n, name in enumerate(names):
        rows = b"".join(b"P%d Q%d,%d,Town %d\n" % (n, i, i % 100, i % 4) for i in range(400))
        environment.drop(name, b"fullname,age,location\n" + rows)

    passes = []
    while environment.sql("SELECT count(*) FROM chute.files WHERE state = 'loaded'") != [(6,)]:
        passes.append([item["id"] for item in all_pages(environment, "/people", 97)])
        assert len(passes) < 2000, services.logs()
    for name in names:
        assert environment.wait_final(name)["state"] == "loaded"
    passes.append([item["id"] for item in all_pages(environment, "/people", 97)])

    final = [r[0] for r in environment.sql("SELECT id::text FROM people "
                                           "ORDER BY file_seq, line")]
    assert len(final) == 2400
    assert passes[-1] == final
    for seen in passes:
        assert seen == final[:len(seen)]
