"""Natural keys: the table ends as a single in-order load would leave it, whatever the
order batches load in, however often they are redelivered, on however many loaders,
whatever crashes (docs/keys.md).

Every test compares the table with the same reference: a plain dict filled in arrival
order (file seq, then line), the later version of a key replacing the earlier.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chute.datasets.declarations import Datasets, load
from chute.postgres import db
from chute.rabbitmq.broker import dead_letters
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading.rowids import row_uuid
from chute.reading.transform import transform
from harness import AMQP, REPO, Environment, Services, wait_until

DECLARATION = """
[datasets.stock]
match   = ["stock/*.csv"]
key     = ["sku", "site"]
filters = ["site"]

[datasets.stock.columns]
sku  = { type = "integer" }
site = { type = "text" }
qty  = { type = "integer" }
"""
HEADER = b"sku,site,qty,tag\n"

Key = tuple[int, str]


@dataclass(frozen=True)
class Version:
    qty: int | None
    file_seq: int
    line: int
    id: str


def declared(tmp_path: Path, text: str = DECLARATION) -> tuple[Path, Datasets]:
    path = tmp_path / "chute.toml"
    path.write_text(text)
    return path, load(path)


def csv_file(rows: list[tuple[int | None, str, int | None]], tag: str) -> bytes:
    """A stock file; `tag` (a column the dataset ignores, named in the header too) makes
    each file's bytes its own."""
    return HEADER.replace(b"tag", tag.encode()) + b"".join(
        b"%s,%s,%s,%s\n" % (b"" if sku is None else str(sku).encode(), site.encode(),
                            b"" if qty is None else str(qty).encode(), tag.encode())
        for sku, site, qty in rows)


def reference(arrivals: list[tuple[int, bytes]]) -> dict[Key, Version]:
    """The table a single in-order load makes: (seq, content) in any order in, each key's
    latest version out. Rows without a key are rejects, not versions."""
    table: dict[Key, Version] = {}
    for seq, content in sorted(arrivals):
        sha256 = hashlib.sha256(content).hexdigest()
        records = csv.reader(io.StringIO(content.decode()))
        next(records)
        for line, (sku, site, qty, _tag) in enumerate(records, start=2):
            if sku.strip() and site.strip():
                table[int(sku), site.strip()] = Version(
                    int(qty) if qty.strip() else None, seq, line, str(row_uuid(sha256, line)))
    return table


def table_now(environment: Environment) -> dict[Key, Version]:
    rows = environment.sql("SELECT sku, site, qty, file_seq, line, id::text FROM stock")
    table = {(sku, site): Version(qty, seq, line, row_id)
             for sku, site, qty, seq, line, row_id in rows}
    assert len(table) == len(rows)  # one row per key
    return table


def assert_counts_explain_the_table(environment: Environment) -> None:
    """Per file, inserted + replaced + ignored = loaded; over all files, inserted = the
    table's rows (each key is inserted once, then only replaced)."""
    files = environment.sql(
        "SELECT name, state, rows_loaded, rows_inserted, rows_replaced, rows_ignored "
        "FROM chute.files WHERE state = 'loaded'")
    for name, _state, loaded, inserted, replaced, ignored in files:
        assert inserted + replaced + ignored == loaded, name
    rows = environment.sql("SELECT count(*) FROM stock")[0][0]
    assert sum(f[3] for f in files) == rows


@pytest.fixture
def keyed(environment: Environment, tmp_path: Path) -> Iterator[Datasets]:
    """The test's database with the stock dataset's table made."""
    _path, datasets = declared(tmp_path)
    db.ensure_database(environment.database_url)
    conn = db.connect(environment.database_url)
    try:
        db.apply_schema(conn, datasets, f"{environment.database}_reader")
    finally:
        conn.close()
    yield datasets


def arrive(conn: db.Connection, datasets: Datasets, content: bytes, batch_size: int
           ) -> tuple[int, list[RowBatch | FileDone]]:
    """The watcher's and the transformer's part: registered, claimed, cut into messages."""
    file_id = str(uuid.uuid4())
    sha256 = hashlib.sha256(content).hexdigest()
    record = db.register_file(conn, file_id, f"{file_id}.csv", f"work/{file_id}", sha256,
                              len(content), "stock")
    state, size = db.begin_processing(conn, file_id, batch_size,  # as the transformer
                                      [d.name for d in datasets if d.mode == "snapshot"])
    assert state == "process"
    return record.seq, list(transform(io.BytesIO(content), datasets["stock"], file_id,
                                      record.seq, sha256, size))


def apply(conn: db.Connection, datasets: Datasets, message: RowBatch | FileDone) -> None:
    """The loader's part, minus the broker and the move to archive/."""
    if isinstance(message, RowBatch):
        db.load_batch(conn, datasets["stock"], message)
    else:
        db.record_done(conn, message, [datasets["stock"]])


# --- the merge, by hand ----------------------------------------------------------------


def test_a_later_file_replaces_and_an_earlier_one_loaded_after_it_is_ignored(
        environment: Environment, keyed: Datasets) -> None:
    conn = db.connect(environment.database_url)
    try:
        first = csv_file([(1, "A", 10), (2, "A", 20), (1, "A", 11), (None, "A", 5),
                          (3, "B", 30)], "first")
        second = csv_file([(2, "A", 21), (4, "B", 40), (1, "A", 12)], "second")
        seq1, messages1 = arrive(conn, keyed, first, 2)
        seq2, messages2 = arrive(conn, keyed, second, 2)
        # The later file loads first, then the earlier one, each of its batches twice.
        for message in messages2 + messages1 + messages1:
            apply(conn, keyed, message)
    finally:
        conn.close()

    assert table_now(environment) == reference([(seq1, first), (seq2, second)])
    assert {key: v.qty for key, v in table_now(environment).items()} == {
        (1, "A"): 12, (2, "A"): 21, (3, "B"): 30, (4, "B"): 40}
    # first: its (1, A) at lines 2 and 4 and its (2, A) are older than second's;
    # only (3, B) is new. second: all three keys were new when it loaded.
    assert environment.sql(
        "SELECT rows_total, rows_loaded, rows_rejected, rows_inserted, rows_replaced, "
        "rows_ignored, state FROM chute.files ORDER BY seq") == [
        (5, 4, 1, 1, 0, 3, "loaded"), (3, 3, 0, 3, 0, 0, "loaded")]
    assert environment.sql("SELECT line, reason FROM chute.rejects") == [
        (5, "sku: is empty (a key column)")]
    assert_counts_explain_the_table(environment)


def test_in_order_load_counts_inserted_and_replaced(environment: Environment,
                                                    keyed: Datasets) -> None:
    conn = db.connect(environment.database_url)
    try:
        first = csv_file([(n, "A", n) for n in range(100)], "first")
        # 20 changed, 70 restated as they were, 10 new keys, one key twice in the file.
        second = csv_file([(n, "A", n + (1000 if n < 20 else 0)) for n in range(90)]
                          + [(n, "A", n) for n in range(100, 110)] + [(5, "A", 5555)],
                          "second")
        arrivals = []
        for content in (first, second):
            # One batch per file: key 5's two lines in `second` meet in one batch, where
            # the earlier is ignored (in two batches, the later would replace it).
            seq, messages = arrive(conn, keyed, content, 500)
            arrivals.append((seq, content))
            for message in messages:
                apply(conn, keyed, message)
    finally:
        conn.close()

    assert table_now(environment) == reference(arrivals)
    assert table_now(environment)[5, "A"].qty == 5555  # the later line of one file wins
    assert environment.sql(
        "SELECT rows_loaded, rows_inserted, rows_replaced, rows_ignored FROM chute.files "
        "ORDER BY seq") == [(100, 100, 0, 0), (101, 10, 90, 1)]
    assert environment.sql(
        "SELECT sum(rows_inserted), sum(rows_replaced), sum(rows_ignored) "
        "FROM chute.batches") == [(110, 90, 1)]


# --- the property: any order, redeliveries, two loaders ---------------------------------

ROW = st.tuples(st.one_of(st.none(), st.integers(0, 6)), st.sampled_from(["A", "B"]),
                st.one_of(st.none(), st.integers(-5, 99)))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_load_order_redeliveries_and_two_loaders_give_the_in_order_table(
        environment: Environment, keyed: Datasets, data: st.DataObject) -> None:
    environment.sql("TRUNCATE stock, chute.files, chute.batches, chute.rejects, chute.file_ranges")
    files = data.draw(st.lists(st.lists(ROW, max_size=12), min_size=1, max_size=4),
                      label="files")
    loaders = [db.connect(environment.database_url) for _ in range(2)]
    try:
        arrivals, messages = [], []
        for index, rows in enumerate(files):
            content = csv_file(rows, f"f{index}")
            seq, cut = arrive(loaders[0], keyed, content,
                              data.draw(st.integers(1, 5), label="batch size"))
            arrivals.append((seq, content))
            messages += cut
        again = data.draw(st.lists(st.sampled_from(messages), max_size=6),
                          label="redelivered")
        order = data.draw(st.permutations(messages + again), label="load order")
        sides = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)),
                          label="loader of each")
        queues = [[m for m, side in zip(order, sides, strict=True) if side == s]
                  for s in (False, True)]
        failures: list[BaseException] = []

        def run(conn: db.Connection, queue: list[RowBatch | FileDone]) -> None:
            try:
                for message in queue:
                    apply(conn, keyed, message)
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                failures.append(e)

        threads = [threading.Thread(target=run, args=(conn, queue))
                   for conn, queue in zip(loaders, queues, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []
    finally:
        for conn in loaders:
            conn.close()

    assert table_now(environment) == reference(arrivals)
    assert environment.sql("SELECT DISTINCT state FROM chute.files") == [("loaded",)]
    assert environment.sql("SELECT count(*) FROM chute.rejects") == [
        (sum(row[0] is None for rows in files for row in rows),)]
    assert_counts_explain_the_table(environment)


# --- declarations ----------------------------------------------------------------------


def prepare(environment: Environment, datasets: Datasets) -> dict[str, str]:
    """Start-up's part: the datasets held, with why."""
    conn = db.connect(environment.database_url)
    try:
        return db.apply_schema(conn, datasets, f"{environment.database}_reader")
    finally:
        conn.close()


def key_index(environment: Environment) -> list[tuple[str]]:
    return environment.sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'stock_key'")


def test_a_key_gets_its_unique_index(environment: Environment, keyed: Datasets) -> None:
    assert key_index(environment) == [
        ("CREATE UNIQUE INDEX stock_key ON public.stock USING btree (sku, site)",)]


def test_a_key_on_an_empty_table_is_added_or_changed(environment: Environment,
                                                    tmp_path: Path) -> None:
    db.ensure_database(environment.database_url)
    prepare(environment, declared(tmp_path, DECLARATION.replace(
        'key     = ["sku", "site"]\n', ""))[1])
    assert key_index(environment) == []
    prepare(environment, declared(tmp_path, DECLARATION.replace('"sku", "site"', '"sku"'))[1])
    assert key_index(environment) == [
        ("CREATE UNIQUE INDEX stock_key ON public.stock USING btree (sku)",)]
    prepare(environment, declared(tmp_path)[1])
    assert key_index(environment) == [
        ("CREATE UNIQUE INDEX stock_key ON public.stock USING btree (sku, site)",)]


@pytest.mark.parametrize(("before", "after", "refusal"), [
    ("", '["sku"]', "key: the table has no key and holds rows, the file says key (sku)"),
    ('["sku", "site"]', '["sku"]', "key: the table has key (sku, site) and holds rows, the "
                                   "file says key (sku)"),
    ('["sku"]', "", "key: the table has key (sku), the file says no key"),
])
def test_a_key_added_changed_or_removed_on_a_table_with_rows_holds_the_dataset(
        environment: Environment, tmp_path: Path, before: str, after: str,
        refusal: str) -> None:
    def declaration(key: str) -> Datasets:
        text = DECLARATION.replace('["sku", "site"]', key) if key else DECLARATION.replace(
            'key     = ["sku", "site"]\n', "")
        return declared(tmp_path, text)[1]

    db.ensure_database(environment.database_url)
    prepare(environment, declaration(before))
    environment.sql("INSERT INTO stock VALUES (gen_random_uuid(), 1, 'A', 1, 1, 2)")
    index_before = key_index(environment)

    held = prepare(environment, declaration(after))

    assert held == {"stock": f'dataset stock: table stock: {refusal} (run "chute rebuild '
                             'stock")'}
    assert key_index(environment) == index_before  # nothing applied


# --- real processes --------------------------------------------------------------------


def random_files(rng: random.Random, count: int, rows: int, keys: int) -> list[bytes]:
    return [csv_file([(rng.randrange(keys) if rng.random() > 0.01 else None,
                       rng.choice("ABC"), rng.randrange(1000)) for _ in range(rows)],
                     f"file{index}") for index in range(count)]


def arrivals_by_name(environment: Environment, contents: dict[str, bytes]
                     ) -> list[tuple[int, bytes]]:
    """(seq, content) of every loaded arrival: the order the watcher gave them."""
    return [(seq, contents[name.removeprefix("stock/").rsplit("-", 1)[0]])
            for seq, name in environment.sql(
        "SELECT seq, name FROM chute.files WHERE state = 'loaded'")]


def wait_all_loaded(environment: Environment, count: int, timeout: float) -> None:
    def done() -> bool:
        states = environment.sql("SELECT state FROM chute.files")
        return len(states) == count and all(
            s in ("loaded", "duplicate", "quarantined", "failed") for (s,) in states)

    wait_until(done, timeout, 0.25, what=f"{count} files to reach a final state")


def test_keyed_files_through_the_pipeline_with_two_loaders(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path)
    environment.env.update(CHUTE_DATASETS=str(path), CHUTE_BATCH_SIZE="40")
    services.start_all(loaders=2)
    rng = random.Random(15)
    contents = {f"day{n}": content for n, content in enumerate(random_files(rng, 5, 400, 150))}
    for name, content in contents.items():
        environment.drop(f"stock/{name}-1.csv", content)
    wait_all_loaded(environment, 5, 120)
    environment.drop("stock/day0-2.csv", contents["day0"])  # the same bytes: a duplicate
    wait_all_loaded(environment, 6, 60)

    assert sorted(environment.sql("SELECT name, state FROM chute.files")) == sorted(
        [(f"stock/{name}-1.csv", "loaded") for name in contents]
        + [("stock/day0-2.csv", "duplicate")])
    assert table_now(environment) == reference(arrivals_by_name(environment, contents))
    assert_counts_explain_the_table(environment)

    api_files = environment.get("/files", params={"dataset": "stock"}).json()["items"]
    for item in api_files:
        if item["state"] == "loaded":
            assert item["rows_inserted"] + item["rows_replaced"] + item["rows_ignored"] == \
                item["rows_loaded"]
    stock = next(d for d in environment.get("/datasets").json()["items"]
                 if d["name"] == "stock")
    assert (stock["key"], stock["rows"]) == (["sku", "site"], len(table_now(environment)))
    status = subprocess.run([sys.executable, "-m", "chute.commands.cli", "status",
                             "--dataset", "stock"],
                            cwd=REPO, env=environment.env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "ignored as older" in status.stdout


def test_killed_loaders_leave_the_in_order_table(environment: Environment, services: Services,
                                                 tmp_path: Path) -> None:
    path, _datasets = declared(tmp_path)
    environment.env.update(CHUTE_DATASETS=str(path), CHUTE_BATCH_SIZE="200")
    services.start("api")
    services.start("watcher")
    services.start("transformer")
    loaders = [services.start("loader"), services.start("loader")]
    services.wait_for_api()
    rng = random.Random(1515)
    contents = {f"feed{n}": content
                for n, content in enumerate(random_files(rng, 8, 6000, 3000))}
    names = list(contents)
    for name in names[:4]:
        environment.drop(f"stock/{name}-1.csv", contents[name])
    unfinished = []  # files not yet loaded at each kill

    def in_hand() -> int:
        return environment.sql("SELECT count(*) FROM chute.files "
                               "WHERE state IN ('received', 'processing')")[0][0]

    for name in names[4:]:
        # Each kill while a file is in hand: the one just dropped, at the latest.
        environment.drop(f"stock/{name}-1.csv", contents[name])
        wait_until(in_hand, 30, 0.01, what="a file in hand")
        time.sleep(rng.uniform(0, 0.1))
        unfinished.append(in_hand())
        victim = rng.randrange(2)
        loaders[victim].send_signal(signal.SIGKILL)  # mid-batch, mid-COPY, mid-commit
        loaders[victim].wait()
        loaders[victim] = services.start("loader")
    wait_all_loaded(environment, len(contents), 240)

    print(f"files unfinished at each kill: {unfinished}")
    assert len(unfinished) == 4 and min(unfinished) > 0  # every kill hit work in hand
    assert environment.sql("SELECT DISTINCT state FROM chute.files") == [("loaded",)]
    assert table_now(environment) == reference(arrivals_by_name(environment, contents))
    assert_counts_explain_the_table(environment)
    assert dead_letters(AMQP, environment.namespace) == []
    assert environment.sql("SELECT count(*) FROM chute.rejects") == [
        (sum(content.count(b"\n,") for content in contents.values()),)]


def test_a_line_already_loaded_under_another_key_is_ignored_not_doubled(
        environment: Environment, keyed: Datasets, tmp_path: Path) -> None:
    """The same bytes arrive again after a first arrival failed half-way, and meanwhile
    the declaration reads the key from another column: the lines the first arrival
    loaded keep their ids (and rows); the second arrival's versions of them are ignored."""
    content = csv_file([(1, "A", 10), (2, "A", 20), (3, "A", 30)], "T")
    conn = db.connect(environment.database_url)
    try:
        first_seq, messages = arrive(conn, keyed, content, 2)
        apply(conn, keyed, messages[0])  # lines 2 and 3, then the file fails
        first_id = messages[0].file_id
        db.fail_file(conn, first_id, "given up")
        moved = declared(tmp_path, DECLARATION.replace(
            'site = { type = "text" }', 'site = { type = "text", header = "T" }'))[1]
        second_seq, messages = arrive(conn, moved, content, 2)
        for message in messages:
            apply(conn, moved, message)
    finally:
        conn.close()

    assert {key: (v.qty, v.file_seq, v.line) for key, v in table_now(environment).items()} == {
        (1, "A"): (10, first_seq, 2), (2, "A"): (20, first_seq, 3), (3, "T"): (30, second_seq, 4)}
    assert environment.sql(
        "SELECT rows_loaded, rows_inserted, rows_replaced, rows_ignored FROM chute.files "
        "WHERE seq = %s", (second_seq,)) == [(3, 1, 0, 2)]
