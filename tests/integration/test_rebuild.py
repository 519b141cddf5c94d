"""`chute rebuild` and `chute replay` on the real services, broker and database: a
declaration changes and the data follows, with the same ids, while the pipeline and the
API keep running."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_keys import DECLARATION as KEYED_STOCK
from test_keys import ROW, apply, assert_counts_explain_the_table, csv_file, reference, table_now

from chute.commands.rebuild import rebuild as run_rebuild
from chute.datasets.declarations import load as load_datasets
from chute.postgres import db
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading.transform import transform
from chute.runtime.config import Config
from harness import REPO, Environment, Services, wait_until

CHUTE = str(Path(sys.executable).parent / "chute")

THINGS = """
[datasets.things]
match = "things/*.csv"
filters = ["name"]
[datasets.things.columns]
name = { type = "text", required = true }
size = { type = "integer" }
colour = { type = "text", values = ["red", "green"] }
"""
# A type changed: start-up cannot take it; the table must be rebuilt.
RETYPED = THINGS.replace('size = { type = "integer" }', 'size = { type = "numeric(8,2)" }')
# A rule relaxed: the table takes it as it is; rejected rows deserve a second chance.
RELAXED = THINGS.replace('["red", "green"]', '["red", "green", "blue"]')


def things(first: int, count: int, colours: tuple[str, ...] = ("red", "green", "blue")
           ) -> bytes:
    lines = ["name,size,colour"]
    lines += [f"thing{n},{n},{colours[n % len(colours)]}" for n in range(first, first + count)]
    return ("\n".join(lines) + "\n").encode()


def declare(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def rows(environment: Environment, dataset: str = "things") -> list[dict[str, Any]]:
    found, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = environment.get(f"/datasets/{dataset}/rows", params=params)
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def chute(environment: Environment, datasets: Path, *args: str, timeout: float = 120
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHUTE, *args], env={**environment.env,
                                               "CHUTE_DATASETS": str(datasets)},
                          text=True, capture_output=True, timeout=timeout)


def start_all(services: Services, datasets: Path) -> None:
    for name in ("api", "watcher", "transformer", "loader"):
        services.start(name, CHUTE_DATASETS=str(datasets))
    services.wait_for_api()


@pytest.fixture
def environment(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    environment = Environment(tmp_path)
    environment.services = Services(environment)
    try:
        yield environment
    finally:
        environment.services.stop_all()
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(environment.services.logs())
        environment.cleanup()


def test_a_type_change_is_held_then_rebuilt_with_the_same_ids_and_files_that_waited_load(
        environment: Environment, tmp_path: Path) -> None:
    services = environment.services
    first = declare(tmp_path, "first", THINGS)
    start_all(services, first)
    environment.drop("things/a.csv", things(0, 30))
    environment.drop("things/b.csv", things(30, 30))
    a = environment.wait_final("things/a.csv", 60)
    assert (a["rows_loaded"], a["rows_rejected"]) == (20, 10)  # blue is not allowed yet
    environment.wait_final("things/b.csv", 60)
    before = {row["id"]: row for row in rows(environment)}
    assert len(before) == 40 and all(isinstance(r["size"], int) for r in before.values())
    services.stop_all()

    # The new declaration: held at start, with the one line naming the command, while
    # the other datasets run; the API keeps serving the old table by its own declaration.
    retyped = declare(tmp_path, "retyped", RETYPED.replace('"red", "green"',
                                                           '"red", "green", "blue"'))
    services = environment.services = Services(environment)
    start_all(services, retyped)
    wait_until(lambda: "dataset held" in services.logs(), 30, what="the held line")
    assert ('chute loader: dataset held: dataset things: table things: column size: the '
            'table has integer, the file says numeric(8,2) (run "chute rebuild things")'
            ) in services.logs()
    environment.drop("people.csv", b"fullname,age,location\nAda Lovelace,36,London\n")
    assert environment.wait_final("people.csv", 60)["state"] == "loaded"
    environment.drop("things/c.csv", things(60, 9))
    wait_until(lambda: (environment.file_state("things/c.csv") or {}).get("error"), 30,
               what="the held file to say why it waits")
    held = environment.file_state("things/c.csv")
    assert held["state"] == "received"
    assert 'waiting for "chute rebuild things"' in held["error"]
    assert {row["id"]: row for row in rows(environment)} == before
    listed = {d["name"]: d for d in environment.get("/datasets").json()["items"]}
    assert listed["things"]["declaration"]["matches"] is False
    waiting = "<strong>things</strong>: its table holds an earlier declaration; new files " \
        "wait for <code>chute rebuild things</code>"
    assert waiting in environment.get("/").text

    result = chute(environment, retyped, "rebuild", "things")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rebuilt from 2 archived files" in result.stdout
    assert "the old table is things_previous" in result.stdout

    # The held file went through the pipeline into the new table, once.
    assert environment.wait_final("things/c.csv", 60)["rows_loaded"] == 9
    after = {row["id"]: row for row in rows(environment)}
    # Every row that was there keeps its id; the rows rejected under the old rule load.
    assert set(before) < set(after)
    assert len(after) == 60 + 9
    assert all(isinstance(r["size"], str) for r in after.values())  # numeric: a string
    assert after[next(iter(before))]["size"] == f"{before[next(iter(before))]['size']}.00"
    a = environment.get(f"/files/{a['file_id']}").json()
    assert (a["rows_loaded"], a["rows_rejected"]) == (30, 0)
    assert environment.get(f"/files/{a['file_id']}/rejects").json()["items"] == []
    # The old table is kept for the user to go back to, or to drop.
    assert environment.sql("SELECT count(*) FROM things_previous") == [(40,)]
    assert environment.sql("SELECT data_type FROM information_schema.columns WHERE "
                           "table_name = 'things' AND column_name = 'size'") == [("numeric",)]
    # Each file's history names the declaration that loaded it, and /datasets agrees.
    listed = {d["name"]: d for d in environment.get("/datasets").json()["items"]}
    assert listed["things"]["declaration"]["matches"] is True
    assert "<strong>things</strong>" not in environment.get("/").text
    declared = listed["things"]["declaration"]["declared"]
    assert environment.sql("SELECT DISTINCT declaration FROM chute.files WHERE dataset = "
                           "'things'") == [(declared,)]
    assert len(environment.sql("SELECT hash FROM chute.declarations WHERE dataset = "
                               "'things'")) == 2


def test_a_missing_or_altered_archive_file_stops_the_rebuild_before_the_swap(
        environment: Environment, tmp_path: Path) -> None:
    services = environment.services
    first = declare(tmp_path, "first", THINGS)
    start_all(services, first)
    for name, start in (("a", 0), ("b", 10), ("c", 20)):
        environment.drop(f"things/{name}.csv", things(start, 10, ("red",)))
    for name in "abc":
        environment.wait_final(f"things/{name}.csv", 60)
    before = rows(environment)
    archive = environment.data_dir / "archive" / "things"
    (archive / "a.csv").unlink()
    altered = (archive / "b.csv").read_bytes().replace(b"thing1", b"thang1")
    (archive / "b.csv").write_bytes(altered)

    refused = chute(environment, first, "rebuild", "things")
    assert refused.returncode == 1
    assert "missing from archive/things/a.csv" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line
    assert rows(environment) == before  # nothing swapped
    # Same size, other bytes: found while reading, still before the swap.
    (archive / "a.csv").write_bytes(things(0, 10, ("red",)))
    refused = chute(environment, first, "rebuild", "things")
    assert refused.returncode == 1
    assert "b.csv" in refused.stderr and "is not the file that was loaded" in refused.stderr
    assert rows(environment) == before
    assert environment.sql("SELECT to_regclass('things_previous')") == [(None,)]

    # --skip-missing goes on without it, and says so on the file.
    (archive / "b.csv").unlink()
    done = chute(environment, first, "rebuild", "things", "--skip-missing")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("left out: ") == 1, done.stdout
    assert "left out: things/b.csv" in done.stdout, done.stdout
    b = environment.file_state("things/b.csv")
    assert b["state"] == "failed" and "missing from archive/things/b.csv" in b["error"]
    assert len(rows(environment)) == 20


def test_two_rebuilds_of_one_dataset_at_once_the_second_refuses(
        environment: Environment, tmp_path: Path) -> None:
    first = declare(tmp_path, "first", THINGS)
    start_all(environment.services, first)
    environment.drop("things/a.csv", things(0, 10))
    environment.wait_final("things/a.csv", 60)
    from chute.postgres.rebuilds import REBUILD_LOCK
    holder = psycopg2.connect(environment.database_url)
    try:
        with holder.cursor() as cur:  # as a running rebuild holds it
            cur.execute("SELECT pg_advisory_lock(%s, hashtext('things'))", (REBUILD_LOCK,))
        refused = chute(environment, first, "rebuild", "things")
    finally:
        holder.close()
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("chute: dataset things: another rebuild or replay of "
                                      "it is running; wait for it to end")


def test_replay_after_relaxing_a_rule_loads_exactly_the_rows_that_now_pass(
        environment: Environment, tmp_path: Path) -> None:
    first = declare(tmp_path, "first", THINGS)
    start_all(environment.services, first)
    content = things(0, 12) + b"broken,notanumber,red\n"
    environment.drop("things/a.csv", content)
    a = environment.wait_final("things/a.csv", 60)
    assert (a["rows_loaded"], a["rows_rejected"]) == (8, 5)
    before = {row["id"]: row for row in rows(environment)}
    environment.services.stop_all()

    relaxed = declare(tmp_path, "relaxed", RELAXED)
    environment.services = Services(environment)
    start_all(environment.services, relaxed)
    result = chute(environment, relaxed, "replay", "--dataset", "things", "--rejected")
    assert result.returncode == 0, result.stderr
    assert "4 rows now load, 1 still rejected" in result.stdout

    after = {row["id"]: row for row in rows(environment)}
    assert set(before) < set(after) and len(after) == 12
    assert {r["colour"] for k, r in after.items() if k not in before} == {"blue"}
    a = environment.get(f"/files/{a['file_id']}").json()
    assert (a["rows_loaded"], a["rows_rejected"]) == (12, 1)
    assert [(r["line"], r["reason"]) for r in environment.get(
        f"/files/{a['file_id']}/rejects").json()["items"]] == [
        (14, 'size: "notanumber" is not a whole number')]
    # The same ids a rebuild gives: replayed rows take their file's and line's.
    rebuilt = chute(environment, relaxed, "rebuild", "things")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {row["id"]: row for row in rows(environment)} == after
    # Nothing left to replay.
    again = chute(environment, relaxed, "replay", a["file_id"])
    assert again.returncode == 0
    assert "0 rows now load, 1 still rejected" in again.stdout


def test_replay_refuses_where_the_table_cannot_take_the_declaration(
        environment: Environment, tmp_path: Path) -> None:
    first = declare(tmp_path, "first", THINGS)
    start_all(environment.services, first)
    environment.drop("things/a.csv", things(0, 6))
    environment.wait_final("things/a.csv", 60)
    result = chute(environment, declare(tmp_path, "retyped", RETYPED),
                   "replay", "--dataset", "things", "--rejected")
    assert result.returncode == 1
    assert 'run "chute rebuild things"' in result.stderr


def test_files_dropped_during_a_rebuild_and_a_killed_loader_end_in_the_new_table_once(
        environment: Environment, tmp_path: Path) -> None:
    """The same declaration (a rebuild for its own sake): the pipeline keeps loading into
    the live table while the rebuild runs, and a reader polling the API through the
    swap sees whole answers of the old table or of the new one."""
    first = declare(tmp_path, "first", THINGS)
    start_all(environment.services, first)
    for n in range(20):  # enough for the rebuild to take a few seconds
        environment.drop(f"things/early{n}.csv", things(n * 20_000, 20_000, ("red", "green")))
    for n in range(20):
        environment.wait_final(f"things/early{n}.csv", 120)
    total = len(rows(environment))

    answers: list[int] = []
    problems: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            page = environment.get("/datasets/things/rows", params={"limit": 1000,
                                                                    "name": "thing5"})
            if page.status_code != 200:
                problems.append(page.text)
            else:
                answers.append(len(page.json()["items"]))

    reader = threading.Thread(target=poll)
    reader.start()
    rebuild = subprocess.Popen([CHUTE, "rebuild", "things"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**environment.env, "CHUTE_DATASETS": str(first)})
    wait_until(lambda: environment.sql("SELECT count(*) FROM chute.rebuild_files")[0][0], 60,
               what="the rebuild to be under way")
    late = []
    for n in range(8):
        environment.drop(f"things/late{n}.csv", things(100_000 + n * 10, 10, ("red",)))
        late.append(f"things/late{n}.csv")
        time.sleep(0.2)
        if n == 3:  # a loader killed mid-rebuild, and another started
            [loader] = [p for name, p in environment.services.processes if name == "loader"]
            loader.kill()
            loader.wait()
            environment.services.processes.remove(("loader", loader))
            environment.services.start("loader", CHUTE_DATASETS=str(first))
    assert environment.sql("SELECT state FROM chute.rebuilds") == [("running",)]
    out, err = rebuild.communicate(timeout=300)
    stop.set()
    reader.join()
    assert rebuild.returncode == 0, out + err
    for name in late:
        assert environment.wait_final(name, 60)["state"] == "loaded"
    found = rows(environment)
    ids = [row["id"] for row in found]
    assert len(ids) == len(set(ids)) == total + 8 * 10
    assert not problems
    assert set(answers) == {1}, answers  # thing5: always there, never twice, never gone


def test_a_rebuild_killed_at_any_point_leaves_the_live_table_and_runs_again_to_the_same_end(
        environment: Environment, tmp_path: Path) -> None:
    first = declare(tmp_path, "first", THINGS)
    start_all(environment.services, first)
    for n in range(20):
        environment.drop(f"things/f{n}.csv", things(n * 10_000, 10_000))
    for n in range(20):
        environment.wait_final(f"things/f{n}.csv", 120)
    before = rows(environment)
    relaxed = declare(tmp_path, "relaxed", RELAXED)

    rebuild = subprocess.Popen([CHUTE, "rebuild", "things"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO,
                               env={**environment.env, "CHUTE_DATASETS": str(relaxed)})
    wait_until(lambda: environment.sql(
        "SELECT count(*) FROM chute.rebuild_files")[0][0] >= 2, 120,
        what="the rebuild to load a few files")
    os.kill(rebuild.pid, signal.SIGKILL)
    rebuild.wait()
    assert rows(environment) == before  # the live table, untouched
    assert environment.sql("SELECT state FROM chute.rebuilds") == [("running",)]
    # The status page shows the rebuild that is due to resume, and how far it got.
    done = environment.sql("SELECT count(*) FROM chute.rebuild_files")[0][0]
    assert '<strong>things</strong>: rebuilding since ' in environment.get("/").text
    assert (f'<progress value="{done}" max="20"></progress> {done:,} of 20 files'
            ) in environment.get("/").text

    done = chute(environment, relaxed, "rebuild", "things", timeout=300)
    assert done.returncode == 0, done.stderr
    after = rows(environment)
    assert {r["id"] for r in before} < {r["id"] for r in after}
    assert len(after) == 20 * 10_000
    assert environment.sql("SELECT state FROM chute.rebuilds ORDER BY rebuild_id") == [
        ("swapped",)]


# --- a key added, by rebuild: the in-order table ------------------------------------------

UNKEYED = KEYED_STOCK.replace('key     = ["sku", "site"]\n', "")


@pytest.fixture
def stock_database(environment: Environment) -> Any:
    """The test's database with chute's schema (the examples make the stock table)."""
    db.prepare(environment.database_url, load_datasets(None), f"{environment.database}_reader")
    return environment


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_key_added_by_rebuild_gives_the_table_an_in_order_keyed_load_would(
        stock_database: Environment, tmp_path: Path, data: st.DataObject) -> None:
    """Files loaded without a key, in any batch order, then rebuilt under a key: each
    key's row is its latest version in arrival order, with that line's id, and the
    files' counts explain the table (test_keys.reference is the in-order load)."""
    environment = stock_database
    unkeyed, keyed = declare(tmp_path, "unkeyed", UNKEYED), declare(tmp_path, "keyed",
                                                                    KEYED_STOCK)
    conn = db.connect(environment.database_url)
    try:
        with db.transaction(conn) as cur:  # a fresh start for each example
            cur.execute("DROP TABLE IF EXISTS stock, stock_previous; TRUNCATE chute.files, "
                        "chute.rebuilds CASCADE; DELETE FROM chute.datasets WHERE name = "
                        "'stock'")
        db.apply_schema(conn, load_datasets(unkeyed), f"{environment.database}_reader")
        files = data.draw(st.lists(st.lists(ROW, max_size=12), min_size=1, max_size=4),
                          label="files")
        arrivals, messages = [], []
        for index, file_rows in enumerate(files):
            content = csv_file(file_rows, f"f{index}")
            path = environment.data_dir / "archive" / "stock" / f"f{index}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            seq, cut = arrive_at(conn, load_datasets(unkeyed), content, f"archive/stock/"
                                 f"f{index}.csv", data.draw(st.integers(1, 5), label="batch"))
            arrivals.append((seq, content))
            messages += cut
        for message in data.draw(st.permutations(messages), label="load order"):
            apply(conn, load_datasets(unkeyed), message)
    finally:
        conn.close()

    config = Config.from_env({**environment.env, "CHUTE_DATASETS": str(keyed)})
    outcome = run_rebuild(config, "stock")
    assert outcome.files == len(files)
    assert table_now(environment) == reference(arrivals)
    assert_counts_explain_the_table(environment)
    assert environment.sql("SELECT count(*) FROM chute.rejects") == [
        (sum(row[0] is None for rows in files for row in rows),)]


def arrive_at(conn: db.Connection, datasets: Any, content: bytes, path: str, batch_size: int
              ) -> tuple[int, list[RowBatch | FileDone]]:
    """test_keys.arrive, with the file at `path` (in archive/, where a rebuild reads)."""
    file_id = str(uuid.uuid4())
    sha256 = hashlib.sha256(content).hexdigest()
    record = db.register_file(conn, file_id, path, path, sha256, len(content), "stock")
    state, size = db.begin_processing(conn, file_id, batch_size)
    assert state == "process"
    return record.seq, list(transform(io.BytesIO(content), datasets["stock"], file_id,
                                      record.seq, sha256, size))
