"""Redelivery has no second effect; a message that can never succeed is dead-lettered.

The loader runs as a real process against the real broker and database; the test plays
the transformer's part by publishing messages itself, so it can publish them twice,
publish garbage, or publish a batch PostgreSQL refuses.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid

from chute.datasets.declarations import load
from chute.postgres import db
from chute.rabbitmq.broker import (
    BATCHES,
    DEAD_NOTIFY,
    DELIVERY_LIMIT,
    FILES,
    Broker,
    Delivery,
    dead_letters,
)
from chute.rabbitmq.messages import SCHEMA_VERSION, FileArrived, FileDone, RowBatch
from chute.reading import copyrows
from chute.reading.transform import transform
from harness import AMQP, Environment, Services, wait_until

PEOPLE = load(None)["people"]
TYPES = tuple(column.type for column in PEOPLE.columns)
HEADER = b"fullname,age,location\n"


def people(count: int, tag: str) -> bytes:
    return HEADER + b"".join(b"%s Person%d,%d,Town\n" % (tag.encode(), i, i % 90)
                             for i in range(count))


def claim(environment: Environment, conn: db.Connection, name: str,
          content: bytes, batch_size: int) -> tuple[str, list[RowBatch | FileDone]]:
    """Do the watcher's and the transformer's part: a file in work/, registered and
    `processing`, and the messages the transformer would publish for it."""
    file_id = str(uuid.uuid4())
    path = environment.data_dir / "work" / file_id / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    record = db.register_file(conn, file_id, name, f"work/{file_id}/{name}", sha256,
                              len(content), "people")
    state, size = db.begin_processing(conn, file_id, batch_size)
    assert state == "process"
    return file_id, list(transform(io.BytesIO(content), PEOPLE, file_id, record.seq, sha256,
                                   size))


def publish(broker: Broker, messages: list[RowBatch | FileDone]) -> None:
    for message in messages:
        broker.publish(BATCHES, *message.encode())


def file_row(environment: Environment, file_id: str) -> tuple:
    return environment.sql(
        "SELECT state, rows_total, rows_loaded, rows_rejected, error FROM chute.files "
        "WHERE file_id = %s", (file_id,))[0]


def wait_for_state(environment: Environment, file_id: str, state: str) -> tuple:
    return wait_until(lambda: (row := file_row(environment, file_id))[0] == state and row,
                      60, 0.2, what=f"file {file_id} to be {state}")


def logged(environment: Environment, event: str) -> list[dict]:
    """The JSON log lines of every service with this event."""
    found = []
    for path in environment.logs.iterdir():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                found.append(json.loads(line))
    return found


def test_redelivered_batches_are_loaded_once(environment: Environment, services: Services,
                                             conn: db.Connection, broker: Broker) -> None:
    file_id, messages = claim(environment, conn, "twice.csv", people(25, "Twice"), 10)
    batches = [m for m in messages if isinstance(m, RowBatch)]
    assert [b.batch_no for b in batches] == [0, 1, 2]

    # Every batch twice, the FileDone twice, and batch 1 once more after the FileDone:
    # what a transformer crash plus a loader crash between commit and ack can produce.
    publish(broker, batches + messages[-1:] + batches + [batches[1]] + messages[-1:])
    services.start("loader")

    assert wait_for_state(environment, file_id, "loaded")[:4] == ("loaded", 25, 25, 0)
    wait_until(lambda: queue_is_drained(broker, BATCHES), 60, 0.2, what="batches drained")
    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [(25, 25)]
    assert environment.sql("SELECT line FROM people ORDER BY line") == [
        (line,) for line in range(2, 27)]
    assert environment.sql("SELECT batch_no FROM chute.batches ORDER BY batch_no") == [
        (0,), (1,), (2,)]
    assert (environment.data_dir / "archive" / "twice.csv").read_bytes() == people(25, "Twice")
    assert dead_letters(AMQP, environment.namespace) == []


def test_loading_the_same_batch_twice_in_the_database_is_a_no_op(
        environment: Environment, conn: db.Connection) -> None:
    file_id, messages = claim(environment, conn, "direct.csv", people(5, "Direct"), 10)
    batch, done = messages

    assert db.load_batch(conn, PEOPLE, batch) is None  # not complete: no FileDone yet
    assert db.load_batch(conn, PEOPLE, batch) is None
    assert db.record_done(conn, done) == "direct.csv"
    # A redelivery after completion reports the file loaded, so the loader moves it again.
    assert db.load_batch(conn, PEOPLE, batch) == "direct.csv"
    assert db.record_done(conn, done) == "direct.csv"

    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [(5, 5)]
    assert file_row(environment, file_id)[:4] == ("loaded", 5, 5, 0)


def test_poison_messages_are_dead_lettered_and_do_not_block_the_queue(
        environment: Environment, services: Services, conn: db.Connection,
        broker: Broker) -> None:
    garbage = b"\xff\xfe this is not a batch"
    broker.publish(FILES, {"kind": "file.arrived", "v": SCHEMA_VERSION}, b"{not json")
    broker.publish(BATCHES, {}, garbage)  # no headers at all
    broker.publish(BATCHES, {"kind": "row.batch", "v": SCHEMA_VERSION, "file_id": "not-a-uuid",
                             "batch_no": 0, "row_count": 0, "reject_count": 0,
                             "rows_bytes": 0}, b"")
    file_id, messages = claim(environment, conn, "after.csv", people(12, "After"), 5)
    publish(broker, messages)
    services.start("loader")
    services.start("transformer")

    assert wait_for_state(environment, file_id, "loaded")[:4] == ("loaded", 12, 12, 0)
    dead = wait_until(lambda: len(found := dead_letters(AMQP, environment.namespace)) == 3
                      and found, 30, 0.2, what="three dead letters")
    assert sorted((d.body, d.reason, d.queue) for d in dead) == [
        (b"", "rejected", f"{environment.namespace}.batches"),
        (b"{not json", "rejected", f"{environment.namespace}.files"),
        (garbage, "rejected", f"{environment.namespace}.batches")]
    assert environment.sql("SELECT count(*) FROM people") == [(12,)]


def test_a_batch_that_keeps_failing_fails_its_file_until_it_is_retried(
        environment: Environment, services: Services, conn: db.Connection,
        broker: Broker) -> None:
    file_id, messages = claim(environment, conn, "refused.csv", people(6, "Refused"), 3)
    good, bad, done = messages
    # No location breaks the table's NOT NULL: PostgreSQL refuses this batch every time.
    broken = b"".join(copyrows.row(uuid.UUID(str(row_id)).bytes, (first, last, age, None),
                                   TYPES, seq, line)  # type: ignore[arg-type]
                      for row_id, first, last, age, _place, seq, line
                      in copyrows.read(bad.rows, TYPES))
    refused = RowBatch(bad.file_id, bad.dataset, bad.batch_no, bad.row_count,
                       bad.reject_count, broken, bad.rejects)
    assert refused.rows != bad.rows
    publish(broker, [good, refused, done])
    services.start("loader")

    state, _total, _loaded, _rejected, error = wait_for_state(environment, file_id, "failed")
    assert error.startswith("load failed 3 times, last: NotNullViolation(")
    dead = wait_until(lambda: dead_letters(AMQP, environment.namespace), 30, 0.2,
                      what="the refused batch in the dead queue")
    assert [(d.kind, d.file_id, d.reason, d.failures, d.body) for d in dead] == [
        ("row.batch", file_id, "rejected", 2, refused.rows + refused.rejects)]
    # The loader also reads the notice from dead.notify; the first reason stays.
    wait_until(lambda: logged(environment, "message dead-lettered"), 30, 0.2,
               what="the dead-letter notice to be handled")
    assert file_row(environment, file_id)[4] == error
    assert queue_is_drained(broker, BATCHES) and queue_is_drained(broker, DEAD_NOTIFY)
    # The good batch loaded; the file stays failed even though its FileDone came.
    assert environment.sql("SELECT count(*) FROM people") == [(3,)]

    # Retrying (what `chute retry FILE_ID` does): the same arrival goes round again, and
    # the batch already loaded is neither sent nor loaded a second time.
    services.start("transformer")
    record = db.reset_for_retry(conn, file_id, f"work/{file_id}/refused.csv")
    broker.publish(FILES, *FileArrived(file_id, record.seq, record.name, record.path,
                                       record.sha256, record.size_bytes, "people").encode())
    assert wait_for_state(environment, file_id, "loaded")[:5] == ("loaded", 6, 6, 0, None)
    assert environment.sql("SELECT count(*), count(DISTINCT id), count(DISTINCT file_seq) "
                           "FROM people") == [(6, 6, 1)]
    assert environment.sql("SELECT line FROM people ORDER BY line") == [
        (line,) for line in range(2, 8)]
    assert [e["batches_skipped"] for e in logged(environment, "file transformed")] == [1]
    assert (environment.data_dir / "archive" / "refused.csv").read_bytes() == people(
        6, "Refused")


def test_a_message_whose_worker_keeps_dying_is_dead_lettered_and_fails_its_file(
        environment: Environment, services: Services, conn: db.Connection,
        broker: Broker) -> None:
    file_id, _messages = claim(environment, conn, "doomed.csv", people(3, "Doomed"), 10)
    record = db.get_file(conn, file_id)
    assert record is not None
    event = FileArrived(file_id, record.seq, record.name, record.path, record.sha256, 1,
                        "people")
    broker.publish(FILES, *event.encode())

    # A consumer that dies holding the message: its connection closes without an ack.
    # RabbitMQ 3.x counts each such return as a delivery.
    seen: list[Delivery] = []
    for crash in range(DELIVERY_LIMIT + 1):
        worker = Broker(AMQP, environment.namespace)
        worker.consume(FILES, 1, seen.append)
        wait_until(lambda w=worker, n=crash: w.poll(0.1) or len(seen) > n, 30, 0,
                   what=f"delivery {crash + 1}")
        worker.close()
    assert [d.delivery_count for d in seen] == list(range(DELIVERY_LIMIT + 1))
    services.start("loader")

    error = wait_for_state(environment, file_id, "failed")[4]
    assert error == (f"a file.arrived message was dead-lettered from "
                     f"{environment.namespace}.files: redelivered too many times "
                     f"(its worker kept crashing)")
    dead = dead_letters(AMQP, environment.namespace)
    assert [(d.kind, d.file_id, d.reason, d.body) for d in dead] == [
        ("file.arrived", file_id, "delivery_limit", event.encode()[1])]


def test_long_work_inside_a_callback_keeps_the_connection(environment: Environment) -> None:
    # A 2 s heartbeat: the broker drops a connection silent for about twice that, so
    # 10 s of blocking in a callback would lose it and redeliver the message.
    broker = Broker(AMQP + "?heartbeat=2", environment.namespace)
    try:
        broker.publish(BATCHES, {"kind": "slow"}, b"slow work")
        results: list[str] = []

        def on_message(delivery: Delivery) -> None:
            results.append(broker.keep_alive_during(lambda: time.sleep(10) or "done"))
            broker.ack(delivery)

        broker.consume(BATCHES, 1, on_message)
        broker.run_until(lambda: bool(results))
        broker.poll(0.5)  # still connected: this would raise BrokerUnavailable
    finally:
        broker.close()

    assert results == ["done"]
    with_new = Broker(AMQP, environment.namespace)
    try:
        assert queue_is_drained(with_new, BATCHES)  # acked once, not redelivered
    finally:
        with_new.close()


def queue_is_drained(broker: Broker, queue: str) -> bool:
    """No message ready in the queue (a passive declare counts the ready ones)."""
    name = f"{broker.namespace}.{queue}"
    return broker.channel.queue_declare(name, passive=True).method.message_count == 0
