"""Feeds as suppliers send them: snapshots that remove what they no longer hold, and
reject limits that stop a broken export from loading half of itself (docs/datasets.md),
against the real database, and through the real services with a loader killed while a
snapshot removes rows and while a file over its limit is taken back out."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_keys import (
    DECLARATION,
    apply,
    arrive,
    csv_file,
    declared,
    prepare,
    reference,
    table_now,
)

from chute.datasets.declarations import Datasets
from chute.errors import DatasetsError
from chute.postgres import db
from chute.rabbitmq.messages import FileDone, RowBatch
from harness import Environment, Services, wait_until

SNAPSHOT = DECLARATION.replace('key     = ["sku", "site"]', 'key     = ["sku", "site"]\n'
                               'mode    = "snapshot"')
LIMITED = DECLARATION.replace('key     = ["sku", "site"]', 'key     = ["sku", "site"]\n'
                              'max_rejected = "10%"')
CHUTE = str(Path(sys.executable).parent / "chute")
PLAIN_LIMITED = DECLARATION.replace('key     = ["sku", "site"]\n', "max_rejected = 3\n")


def database(environment: Environment, datasets: Datasets) -> None:
    db.ensure_database(environment.database_url)
    prepare(environment, datasets)  # start-up's part, as the keys tests do it


def start_over(environment: Environment) -> None:
    """An empty stock dataset again, for the next example of a property."""
    environment.sql("TRUNCATE stock, chute.files, chute.snapshots, chute_stage.stock CASCADE")


def snapshot_rows(rng: random.Random, keys: int) -> list[tuple[int | None, str, int]]:
    """A day's state: some of the keys, a few twice (the later line wins), rarely none."""
    held = [k for k in range(keys) if rng.random() < 0.6]
    rows: list[tuple[int | None, str, int]] = [(k, "A", rng.randrange(1000)) for k in held]
    rows += [(rng.choice(held), "A", rng.randrange(1000)) for _ in range(len(held) // 5)
             if held]
    if rng.random() < 0.3:
        rows.append((None, "A", 1))  # a row without its key: a reject, not a version
    rng.shuffle(rows)
    return rows


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), count=st.integers(1, 4),
       batch_size=st.integers(1, 6))
def test_the_table_is_the_newest_snapshot_whatever_order_snapshots_complete_in(
        environment: Environment, tmp_path: Path, rng: random.Random, count: int,
        batch_size: int) -> None:
    """Batches of every snapshot in any order, some twice: the table ends holding the
    newest snapshot's rows alone, with the ids its lines give. An older snapshot that
    completes after a newer one changes nothing."""
    _path, datasets = declared(tmp_path, SNAPSHOT)
    database(environment, datasets)
    start_over(environment)
    conn = db.connect(environment.database_url)
    try:
        files = [csv_file(snapshot_rows(rng, 12), f"day{n}") for n in range(count)]
        arrivals, messages = [], []
        for content in files:
            seq, sent = arrive(conn, datasets, content, batch_size)
            arrivals.append((seq, content))
            messages += sent
        messages += rng.sample(messages, len(messages) // 3)  # redelivered
        rng.shuffle(messages)
        for message in messages:
            apply(conn, datasets, message)
    finally:
        conn.close()

    newest = max(arrivals)
    assert table_now(environment) == reference([newest])
    assert environment.sql("SELECT DISTINCT state FROM chute.files") == [("loaded",)]
    assert environment.sql("SELECT count(*) FROM chute_stage.stock") == [(0,)]
    counts = environment.sql("SELECT rows_loaded, rows_inserted, rows_replaced, "
                             "rows_ignored, rows_deleted FROM chute.files")
    for loaded, inserted, replaced, ignored, deleted in counts:
        assert inserted + replaced + ignored == loaded and deleted >= 0


def test_a_snapshot_removes_the_keys_it_does_not_hold_and_counts_them(
        environment: Environment, tmp_path: Path) -> None:
    _path, datasets = declared(tmp_path, SNAPSHOT)
    database(environment, datasets)
    conn = db.connect(environment.database_url)
    try:
        monday = csv_file([(1, "A", 10), (2, "A", 20), (3, "B", 30)], "monday")
        tuesday = csv_file([(1, "A", 11), (3, "B", 30), (4, "B", 40)], "tuesday")
        for content in (monday, tuesday):
            for message in arrive(conn, datasets, content, 2)[1]:
                apply(conn, datasets, message)
    finally:
        conn.close()

    assert {key: v.qty for key, v in table_now(environment).items()} == {
        (1, "A"): 11, (3, "B"): 30, (4, "B"): 40}
    assert environment.sql(
        "SELECT rows_loaded, rows_inserted, rows_replaced, rows_ignored, rows_deleted "
        "FROM chute.files ORDER BY seq") == [(3, 3, 0, 0, 0), (3, 1, 2, 0, 1)]


def test_a_snapshot_over_its_reject_limit_removes_and_replaces_nothing(
        environment: Environment, tmp_path: Path) -> None:
    _path, datasets = declared(tmp_path, SNAPSHOT.replace('mode    = "snapshot"',
                                                          'mode    = "snapshot"\n'
                                                          "max_rejected = 1"))
    database(environment, datasets)
    conn = db.connect(environment.database_url)
    try:
        good = csv_file([(1, "A", 10), (2, "A", 20)], "good")
        broken = csv_file([(1, "A", 99), (None, "A", 1), (None, "B", 2)], "broken")
        for content in (good, broken):
            for message in arrive(conn, datasets, content, 1)[1]:
                apply(conn, datasets, message)
    finally:
        conn.close()

    assert {key: v.qty for key, v in table_now(environment).items()} == {
        (1, "A"): 10, (2, "A"): 20}
    state, error = environment.sql("SELECT state, error FROM chute.files ORDER BY seq")[1]
    assert state == "failed"
    assert error == ("2 of 3 rows rejected, over max_rejected = 1; most frequent: "
                     "sku: is empty (a key column) (2)")
    assert environment.sql("SELECT count(*) FROM chute.rejects") == [(2,)]  # still readable


def test_a_keyed_file_over_its_limit_loses_no_earlier_version(
        environment: Environment, tmp_path: Path) -> None:
    _path, datasets = declared(tmp_path, LIMITED)
    database(environment, datasets)
    conn = db.connect(environment.database_url)
    try:
        first = csv_file([(n, "A", n) for n in range(20)], "first")
        # 18 new versions and 3 rows without a key: 3 of 21 is over 10%.
        second = csv_file([(n, "A", n + 100) for n in range(18)] + [(None, "A", 1)] * 3,
                          "second")
        for content in (first, second):
            messages = arrive(conn, datasets, content, 4)[1]
            # The closing piece first: every batch must be in before the file decides.
            for message in [m for m in messages if isinstance(m, FileDone)] + [
                    m for m in messages if isinstance(m, RowBatch)]:
                apply(conn, datasets, message)
    finally:
        conn.close()

    assert {key: v.qty for key, v in table_now(environment).items()} == {
        (n, "A"): n for n in range(20)}
    assert environment.sql("SELECT state, rows_loaded, rows_rejected FROM chute.files "
                           "ORDER BY seq") == [("loaded", 20, 0), ("failed", 18, 3)]


@pytest.mark.parametrize(("value", "message"), [
    ('mode = "full"', 'datasets.stock.mode: \'full\': the one mode is "snapshot"'),
    ("max_rejected = -1", "datasets.stock.max_rejected: -1: a count of rows (100) or a "
                          'share ("2%")'),
    ('max_rejected = "lots"', "datasets.stock.max_rejected: 'lots': a count of rows"),
    ('max_rejected = "101%"', "datasets.stock.max_rejected: '101%': a count of rows"),
])
def test_a_bad_mode_or_limit_is_refused_naming_it(tmp_path: Path, value: str,
                                                  message: str) -> None:
    with pytest.raises(DatasetsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        declared(tmp_path, DECLARATION.replace("filters", f"{value}\nfilters"))


def test_a_snapshot_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(DatasetsError, match='a "snapshot" needs a key'):
        declared(tmp_path, SNAPSHOT.replace('key     = ["sku", "site"]\n', ""))


# --- through the services, with a loader killed -----------------------------------------


def start(services: Services, datasets: Path) -> Any:
    """Every service; returns the loader's process."""
    loader = None
    for name in ("api", "watcher", "transformer", "loader"):
        loader = services.start(name, CHUTE_DATASETS=str(datasets), CHUTE_BATCH_SIZE="5000")
    services.wait_for_api()
    return loader


def kill_during(environment: Environment, process: Any, statement: str) -> None:
    """SIGKILL a loader while PostgreSQL runs `statement` (its start) for it."""
    def running() -> bool:
        return bool(environment.sql(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE %s", (statement + "%",)))

    wait_until(running, 120, interval=0.002, what=f"a loader to run {statement}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_a_loader_killed_while_a_snapshot_removes_rows_leaves_the_newest_snapshot(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path, SNAPSHOT)
    loader = start(services, path)
    rng = random.Random(7)
    monday = csv_file([(n, "A", rng.randrange(1000)) for n in range(200_000)], "monday")
    environment.drop("stock/monday.csv", monday)
    assert environment.wait_final("stock/monday.csv", 180)["state"] == "loaded"
    tuesday = csv_file([(n, "A", 1) for n in range(0, 200_000, 1000)], "tuesday")
    environment.drop("stock/tuesday.csv", tuesday)
    # Its removal of 199,800 rows takes a while: the loader dies in the middle of it.
    kill_during(environment, loader, 'DELETE FROM "public"."stock" WHERE file_seq <')
    services.start("loader", CHUTE_DATASETS=str(path), CHUTE_BATCH_SIZE="5000")
    done = environment.wait_final("stock/tuesday.csv", 180)

    assert (done["state"], done["rows_deleted"], done["rows_inserted"]) == ("loaded", 199_800, 0)
    seq = environment.sql("SELECT seq FROM chute.files WHERE name = 'stock/tuesday.csv'")[0][0]
    assert table_now(environment) == reference([(seq, tuesday)])


def test_a_loader_killed_while_a_file_over_its_limit_is_taken_out_loads_none_of_it(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path, PLAIN_LIMITED)
    loader = start(services, path)
    environment.drop("stock/good.csv", csv_file([(n, "A", n) for n in range(10)], "good"))
    assert environment.wait_final("stock/good.csv", 60)["state"] == "loaded"
    # 150,000 rows, 4 of them with a quantity that is no number: over max_rejected = 3.
    rows = b"".join(b"%d,A,%s,x\n" % (n, b"many" if n % 40_000 == 1 else b"%d" % n)
                    for n in range(150_000))
    environment.drop("stock/broken.csv", b"sku,site,qty,x\n" + rows)
    kill_during(environment, loader, 'DELETE FROM "public"."stock" WHERE file_seq =')
    services.start("loader", CHUTE_DATASETS=str(path), CHUTE_BATCH_SIZE="5000")
    broken = environment.wait_final("stock/broken.csv", 180)

    assert broken["state"] == "failed"
    assert broken["error"] == ('4 of 150,000 rows rejected, over max_rejected = 3; most '
                               'frequent: qty: "…" is not a whole number (4)')
    assert environment.sql("SELECT count(*) FROM stock") == [(10,)]
    rejects = environment.get(f"/files/{broken['file_id']}/rejects").json()["items"]
    assert [r["line"] for r in rejects] == [3, 40_003, 80_003, 120_003]  # still readable


def test_small_files_loaded_together_fail_alone_over_their_limit(
        environment: Environment, tmp_path: Path) -> None:
    """The loader's group path (a burst of small files in one transaction)."""
    _path, datasets = declared(tmp_path, PLAIN_LIMITED)
    database(environment, datasets)
    conn = db.connect(environment.database_url)
    try:
        good = csv_file([(1, "A", 1), (2, "A", 2)], "good")
        bad = b"sku,site,qty,x\n" + b"".join(b"%d,A,bad,x\n" % n for n in range(4))
        work = []
        for content in (good, bad):
            for message in arrive(conn, datasets, content, 100)[1]:
                if isinstance(message, RowBatch):
                    work.append((datasets["stock"], message))
                else:  # as the transformer sends it: the totals ride on the last batch
                    work[-1] = (work[-1][0], replace(work[-1][1], batches_total=message.batches,
                                                     rows_total=message.rows_total))
        loaded = db.load_batches(conn, work)
    finally:
        conn.close()

    assert [name is not None for name in loaded] == [True, False]
    assert environment.sql("SELECT state, rows_loaded, rows_rejected FROM chute.files "
                           "ORDER BY seq") == [("loaded", 2, 0), ("failed", 0, 4)]
    assert environment.sql("SELECT sku FROM stock ORDER BY sku") == [(1,), (2,)]


def test_a_file_over_its_limit_retried_under_a_higher_limit_loads_whole(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path, PLAIN_LIMITED)
    start(services, path)
    rows = b"".join(b"%d,A,%s,x\n" % (n, b"many" if n % 10 == 0 else b"%d" % n)
                    for n in range(50))
    environment.drop("stock/broken.csv", b"sku,site,qty,x\n" + rows)
    broken = environment.wait_final("stock/broken.csv", 60)
    assert (broken["state"], broken["rows_rejected"]) == ("failed", 5)
    services.stop_all()

    raised = tmp_path / "raised.toml"
    raised.write_text(PLAIN_LIMITED.replace("max_rejected = 3", "max_rejected = 5"))
    start(services, raised)
    retried = subprocess.run([CHUTE, "retry", broken["file_id"]], capture_output=True,
                             text=True, timeout=60,
                             env={**environment.env, "CHUTE_DATASETS": str(raised)})
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: environment.file_state("stock/broken.csv")["state"] == "loaded", 60,
               what="the retried file to load")
    again = environment.file_state("stock/broken.csv")
    assert (again["rows_loaded"], again["rows_rejected"], again["error"]) == (45, 5, None)
    assert environment.sql("SELECT count(*) FROM stock") == [(45,)]
    assert len(environment.get(f"/files/{broken['file_id']}/rejects").json()["items"]) == 5


def test_a_snapshot_dataset_rebuilt_is_its_newest_snapshot(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path, SNAPSHOT)
    start(services, path)
    monday = csv_file([(n, "A", n) for n in range(10)], "monday")
    tuesday = csv_file([(n, "A", n + 100) for n in range(0, 10, 2)], "tuesday")
    for name, content in (("monday", monday), ("tuesday", tuesday)):
        environment.drop(f"stock/{name}.csv", content)
        assert environment.wait_final(f"stock/{name}.csv", 60)["state"] == "loaded"
    services.stop_all()

    retyped = tmp_path / "retyped.toml"
    retyped.write_text(SNAPSHOT.replace('qty  = { type = "integer" }',
                                        'qty  = { type = "bigint" }'))
    done = subprocess.run([CHUTE, "rebuild", "stock"], capture_output=True, text=True,
                          timeout=120, env={**environment.env, "CHUTE_DATASETS": str(retyped)})
    assert done.returncode == 0, done.stdout + done.stderr
    seq = environment.sql("SELECT seq FROM chute.files WHERE name = 'stock/tuesday.csv'")[0][0]
    assert table_now(environment) == reference([(seq, tuesday)])
    assert environment.sql("SELECT seq FROM chute.snapshots") == [(seq,)]


def test_the_same_snapshot_sent_again_is_applied_again_not_a_duplicate(
        environment: Environment, tmp_path: Path) -> None:
    """An empty feed, then rows, then the empty feed again (the very same bytes): the
    table ends empty. Were the third file a duplicate of the first, the rows would stay."""
    _path, datasets = declared(tmp_path, SNAPSHOT)
    database(environment, datasets)
    conn = db.connect(environment.database_url)
    try:
        empty = csv_file([], "feed")
        rows = csv_file([(1, "A", 1), (2, "A", 2)], "feed")
        for content in (empty, rows, empty):
            for message in arrive(conn, datasets, content, 10)[1]:
                apply(conn, datasets, message)
    finally:
        conn.close()

    assert table_now(environment) == {}
    assert environment.sql("SELECT state, rows_deleted FROM chute.files ORDER BY seq") == [
        ("loaded", 0), ("loaded", 0), ("loaded", 2)]
