"""Small batches load in groups: one transaction for several files, and a group that
fails leaves nothing behind, its batches then loaded one at a time.

The database side is called directly; the loader side runs as a real process, with the
test playing the transformer's part (claim and transform, then publish).
"""

from __future__ import annotations

import uuid

from test_redelivery import (
    PEOPLE,
    TYPES,
    claim,
    file_row,
    people,
    publish,
    wait_for_state,
)

from chute.postgres import db
from chute.rabbitmq.broker import Broker
from chute.rabbitmq.messages import RowBatch
from chute.reading import copyrows
from harness import Environment, Services, wait_until


def closing_batches(environment: Environment, conn: db.Connection, count: int
                    ) -> list[RowBatch]:
    """`count` claimed files of one batch each: the batch that closes its file."""
    batches = []
    for i in range(count):
        _file_id, messages = claim(environment, conn, f"small-{i}.csv",
                                   people(3 + i, f"Small{i}"), 100)
        (batch, done) = messages
        batches.append(RowBatch(batch.file_id, batch.dataset, batch.batch_no,
                                batch.row_count, batch.reject_count, batch.rows,
                                batch.rejects, done.batches, done.rows_total))
    return batches


def refused(batch: RowBatch) -> RowBatch:
    """The same batch with no location in its rows: the table's NOT NULL refuses it."""
    rows = b"".join(copyrows.row(uuid.UUID(str(row_id)).bytes, (first, last, age, None),
                                 TYPES, seq, line)  # type: ignore[arg-type]
                    for row_id, first, last, age, _place, seq, line
                    in copyrows.read(batch.rows, TYPES))
    return RowBatch(batch.file_id, batch.dataset, batch.batch_no, batch.row_count,
                    batch.reject_count, rows, batch.rejects, batch.batches_total,
                    batch.rows_total)


def test_a_group_loads_every_file_in_one_transaction(
        environment: Environment, conn: db.Connection) -> None:
    batches = closing_batches(environment, conn, 4)

    names = db.load_batches(conn, [(PEOPLE, b) for b in batches])

    assert names == [f"small-{i}.csv" for i in range(4)]
    for i, batch in enumerate(batches):
        assert file_row(environment, batch.file_id) == ("loaded", 3 + i, 3 + i, 0, None)
    # now() is the transaction's start: one finished_at for the group.
    assert environment.sql("SELECT count(*), count(DISTINCT finished_at) FROM chute.files") == [
        (4, 1)]
    assert environment.sql("SELECT count(*) FROM people") == [(3 + 4 + 5 + 6,)]
    # A redelivered group finds its batches in the ledger: nothing twice.
    assert db.load_batches(conn, [(PEOPLE, b) for b in batches]) == names
    assert environment.sql("SELECT count(*) FROM people") == [(18,)]


def test_a_group_with_a_refused_batch_leaves_nothing(
        environment: Environment, conn: db.Connection) -> None:
    good_1, bad, good_2 = closing_batches(environment, conn, 3)

    try:
        db.load_batches(conn, [(PEOPLE, good_1), (PEOPLE, refused(bad)), (PEOPLE, good_2)])
    except Exception as e:  # noqa: BLE001 - the kind is checked below
        error = e
    else:
        raise AssertionError("a refused batch must fail its group")

    assert type(error).__name__ == "NotNullViolation"
    assert environment.sql("SELECT count(*) FROM people") == [(0,)]
    assert environment.sql("SELECT count(*) FROM chute.batches") == [(0,)]
    assert {file_row(environment, b.file_id)[0] for b in (good_1, bad, good_2)} == {
        "processing"}


def test_the_loader_groups_a_burst_and_fails_only_the_refused_file(
        environment: Environment, services: Services, conn: db.Connection,
        broker: Broker) -> None:
    batches = closing_batches(environment, conn, 6)
    bad = batches[2]
    publish(broker, [*batches[:2], refused(bad), *batches[3:]])
    services.start("loader")  # finds all six waiting: they come as one round

    for i, batch in enumerate(batches):
        if batch is not bad:
            assert wait_for_state(environment, batch.file_id, "loaded")[:4] == (
                "loaded", 3 + i, 3 + i, 0)
            archived = environment.data_dir / "archive" / f"small-{i}.csv"
            wait_until(archived.exists, 10, 0.1, what=f"{archived} (moved after the commit)")
    error = wait_for_state(environment, bad.file_id, "failed")[4]
    assert error.startswith("load failed 3 times, last: NotNullViolation(")
    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [
        (3 + 4 + 6 + 7 + 8,) * 2]
    # Each good file's path is the one its move made.
    assert sorted(environment.sql("SELECT path FROM chute.files WHERE state = 'loaded'")) == [
        (f"archive/small-{i}.csv",) for i in (0, 1, 3, 4, 5)]


def test_the_loader_loads_a_burst_in_fewer_transactions_than_files(
        environment: Environment, services: Services, conn: db.Connection,
        broker: Broker) -> None:
    batches = closing_batches(environment, conn, 6)
    publish(broker, batches)
    services.start("loader")

    for batch in batches:
        wait_for_state(environment, batch.file_id, "loaded")
    [(files, transactions)] = environment.sql(
        "SELECT count(*), count(DISTINCT finished_at) FROM chute.files")  # see above
    assert files == 6
    assert transactions < 6


def test_a_batch_twice_in_one_group_loads_once(
        environment: Environment, conn: db.Connection) -> None:
    # A transformer that crashed before its ack sends its batches again: both copies are
    # new messages, and one loader may take both in one round.
    _file_id, messages = claim(environment, conn, "twice.csv",
                               people(3, "Twice") + b"Bad Person,old,Town\n", 100)
    batch, done = messages
    closing = RowBatch(batch.file_id, batch.dataset, batch.batch_no, batch.row_count,
                       batch.reject_count, batch.rows, batch.rejects, done.batches,
                       done.rows_total)
    assert closing.reject_count == 1

    assert db.load_batches(conn, [(PEOPLE, closing), (PEOPLE, closing)]) == ["twice.csv"] * 2

    assert file_row(environment, closing.file_id) == ("loaded", 4, 3, 1, None)
    assert environment.sql("SELECT count(*) FROM people") == [(3,)]
    assert environment.sql("SELECT count(*) FROM chute.rejects") == [(1,)]


def test_a_group_matches_file_ids_however_they_are_spelled(
        environment: Environment, conn: db.Connection) -> None:
    [batch] = closing_batches(environment, conn, 1)
    shouted = RowBatch(batch.file_id.upper(), batch.dataset, batch.batch_no,
                       batch.row_count, batch.reject_count, batch.rows, batch.rejects,
                       batch.batches_total, batch.rows_total)

    assert db.load_batches(conn, [(PEOPLE, shouted)]) == ["small-0.csv"]

    assert file_row(environment, batch.file_id) == ("loaded", 3, 3, 0, None)
    assert environment.sql("SELECT count(*) FROM people") == [(3,)]
