"""A database made by an earlier version keeps working when this version starts on it.

The earlier version is the first one (before datasets): its schema, as it left a
database, is tests/upgrade/schema-d123d5b.sql, with a file it had loaded. Every service
of this version then starts on it at once (the schema's advisory lock serialises what
each applies), and the old rows, the old file's record and a new file are all served.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg2
from psycopg2 import sql

from chute.postgres import db
from conftest import SAMPLE
from harness import Environment, Services, wait_until

OLD_SCHEMA = Path(__file__).resolve().parent.parent / "upgrade" / "schema-d123d5b.sql"


def _as_the_first_version_left_it(environment: Environment) -> str:
    """The database with the first version's schema and one file it loaded; the file's id."""
    db.ensure_database(environment.database_url)
    reader = f"{environment.database}_reader"
    statement = sql.SQL(OLD_SCHEMA.read_text()).format(
        reader=sql.Identifier(reader), reader_name=sql.Literal(reader))
    file_id = str(uuid.uuid4())
    conn = psycopg2.connect(environment.database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
            cur.execute(
                """INSERT INTO chute.files (file_id, name, path, sha256, size_bytes, state,
                          rows_total, rows_loaded, rows_rejected, batches_total,
                          batch_size, attempts, started_at, finished_at)
                   VALUES (%s, 'old.csv', 'archive/old.csv', %s, 80, 'loaded',
                           3, 2, 1, 1, 10000, 1, now(), now())
                   RETURNING seq""", (file_id, "0" * 64))
            [seq] = cur.fetchone()
            cur.execute("INSERT INTO chute.batches VALUES (%s, 0, 2, 1, now())", (file_id,))
            cur.execute("INSERT INTO chute.rejects VALUES (%s, 4, 'age: is empty', 'Bo,,X')",
                        (file_id,))
            cur.execute(
                """INSERT INTO public.people VALUES
                   (%s, 'Ada', 'Lovelace', 36, 'London', %s, 2),
                   (%s, 'Alan', 'Turing', 41, 'Wilmslow', %s, 3)""",
                (str(uuid.uuid4()), seq, str(uuid.uuid4()), seq))
    finally:
        conn.close()
    return file_id


def test_a_database_of_the_first_version_keeps_working(
        environment: Environment, services: Services) -> None:
    old_file = _as_the_first_version_left_it(environment)

    # Every service at once, as `make up` and docker compose start them.
    for name in ("api", "watcher", "transformer", "transformer", "loader", "loader"):
        services.start(name)
    services.wait_for_api()
    environment.drop("sample.csv", SAMPLE)
    assert environment.wait_final("sample.csv")["state"] == "loaded"

    assert environment.sql("SELECT count(*) FROM people") == [(2 + 15,)]
    # The old rows come first (arrival order) and the filters find them.
    first = environment.get("/people", params={"limit": 3}).json()["items"]
    assert [p["first_name"] for p in first] == ["Ada", "Alan", "John"]
    london = environment.get("/people", params={"location": "London"}).json()["items"]
    assert [p["last_name"] for p in london] == ["Lovelace"]
    # The old file's record is a file of the people dataset, with its counts and reject.
    [old] = environment.get("/files", params={"name": "old.csv"}).json()["items"]
    assert (old["file_id"], old["state"], old["rows_loaded"], old["rows_rejected"]) == (
        old_file, "loaded", 2, 1)
    assert environment.sql("SELECT dataset FROM chute.files WHERE file_id = %s",
                           (old_file,)) == [("people",)]
    # The even older btree filter indexes are gone; the GIN filter index serves instead.
    indexes = {name for (name,) in environment.sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'people'")}
    assert indexes == {"people_pkey", "people_file_line", "people_filters"}
    # No service refused the database or stopped.
    wait_until(lambda: environment.get("/ready").status_code == 200, 30,
               what="/ready once every worker runs")
    assert all(process.poll() is None for _name, process in services.processes)
