"""One large file read in ranges by several transformers, through the real services.

Small ranges (CHUTE_RANGE_BYTES=64 KiB) cut a generated people file of about 1.4 MB into
about twenty. Every test checks the load against what one transformer cuts from the same
bytes, computed here by transform(): the same batches (numbers and counts) in the ledger,
the same rejects (line and reason), and every row with the id its file and line give.
"""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.generate import generate
from chute.datasets.declarations import load
from chute.rabbitmq.broker import FILES, RANGES, Broker
from chute.rabbitmq.messages import FileArrived, RowBatch
from chute.reading.transform import transform
from harness import AMQP, REPO, Environment, Services, wait_until

PEOPLE = load(None)["people"]
BATCH_SIZE = 500
RANGE_BYTES = 64 << 10
ROWS = 40_000


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    env = Environment(tmp_path, CHUTE_RANGE_BYTES=str(RANGE_BYTES),
                      CHUTE_BATCH_SIZE=str(BATCH_SIZE))
    yield env
    env.cleanup()


@pytest.fixture
def people(tmp_path: Path) -> bytes:
    path = tmp_path / "people.csv"
    generate(path, ROWS)
    return path.read_bytes()


def expected(environment: Environment, name: str, data: bytes) -> dict:
    """What one transformer cuts from the file: its batches' counts and its rejects."""
    file_id, seq = environment.sql("SELECT file_id::text, seq FROM chute.files WHERE name = %s",
                                   (name,))[0]
    sha = hashlib.sha256(data).hexdigest()
    batches = [m for m in transform(io.BytesIO(data), PEOPLE, file_id, seq, sha, BATCH_SIZE)
               if isinstance(m, RowBatch)]
    rejects = sorted((int(line), reason) for b in batches for line, reason in
                     (text.split("\t")[1:3] for text in b.rejects.decode().splitlines()))
    return {"file_id": file_id, "seq": seq,
            "batches": [(b.batch_no, b.row_count, b.reject_count) for b in batches],
            "rows": sum(b.row_count for b in batches), "rejects": rejects}


def check_load(environment: Environment, name: str, data: bytes) -> dict:
    want = expected(environment, name, data)
    file_id = want["file_id"]
    assert environment.sql(
        "SELECT batch_no, rows_loaded, rows_rejected FROM chute.batches WHERE file_id = %s "
        "ORDER BY batch_no", (file_id,)) == want["batches"]
    assert sorted(environment.sql("SELECT line, reason FROM chute.rejects WHERE file_id = %s",
                                  (file_id,))) == want["rejects"]
    rows = environment.sql("SELECT count(*), count(DISTINCT line), min(line), max(line) "
                           "FROM people WHERE file_seq = %s", (want["seq"],))[0]
    assert rows[0] == rows[1] == want["rows"]
    # Every row's id is the one its file and line give (chute.reading.rowids).
    assert environment.sql(
        "SELECT count(*) FROM people WHERE file_seq = %s AND substr(id::text, 1, 18) <> "
        "substr((SELECT id::text FROM people WHERE file_seq = %s LIMIT 1), 1, 18)",
        (want["seq"], want["seq"])) == [(0,)]
    total = environment.sql("SELECT rows_total, rows_loaded, rows_rejected, state FROM "
                            "chute.files WHERE file_id = %s", (file_id,))[0]
    assert total == (want["rows"] + len(want["rejects"]), want["rows"], len(want["rejects"]),
                     "loaded")
    return want


def ranges_of(environment: Environment, file_id: str) -> list[tuple]:
    return environment.sql("SELECT range_no, byte_start, byte_end, records FROM "
                           "chute.file_ranges WHERE file_id = %s ORDER BY range_no", (file_id,))


def test_a_large_file_is_read_in_ranges_by_every_transformer(
        environment: Environment, services: Services, people: bytes) -> None:
    services.start_all(transformers=2)
    environment.drop("people.csv", people)
    assert environment.wait_final("people.csv", timeout=120)["state"] == "loaded"
    want = check_load(environment, "people.csv", people)
    plan = ranges_of(environment, want["file_id"])
    assert len(plan) >= 10
    assert plan[-1][2] == len(people) and sum(r[3] for r in plan) == ROWS
    logs = [p.read_text() for p in sorted(environment.logs.iterdir()) if "transformer" in p.name]
    assert all('"range transformed"' in log for log in logs), "both transformers read ranges"


def test_kills_and_events_sent_twice_leave_the_same_table(
        environment: Environment, services: Services, people: bytes) -> None:
    """A transformer SIGKILLed in the middle of its ranges, every range delivered twice,
    and the FileArrived delivered twice (so the plan is written twice)."""
    services.start("api")
    services.start("watcher")
    services.start("loader")
    services.wait_for_api()
    victim = services.start("transformer")
    environment.drop("people.csv", people)
    log = environment.logs / "03-transformer.log"
    wait_until(lambda: log.read_text().count('"range transformed"') >= 2, timeout=60,
               what="the transformer reading its ranges")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    file_id, seq, sha, size, path = environment.sql(
        "SELECT file_id::text, seq, sha256, size_bytes, path FROM chute.files "
        "WHERE name = 'people.csv'")[0]
    broker = Broker(AMQP, environment.namespace)
    try:
        # Every task again, as a broker would redeliver them, and the event again.
        tasks = []
        for _ in range(200):
            message = broker.channel.basic_get(f"{environment.namespace}.{RANGES}")
            if message[0] is None:
                break
            tasks.append(message)
        for method, properties, body in tasks:
            for _copy in range(2):
                broker.publish(RANGES, dict(properties.headers), body)
            broker.channel.basic_ack(method.delivery_tag)
        event = FileArrived(file_id=file_id, seq=seq, name="people.csv", path=path,
                            sha256=sha, size=size, dataset="people")
        broker.publish(FILES, *event.encode())
    finally:
        broker.close()
    services.start("transformer")
    services.start("transformer")
    assert environment.wait_final("people.csv", timeout=180)["state"] == "loaded"
    check_load(environment, "people.csv", people)
    assert len(ranges_of(environment, file_id)) >= 10  # one plan, not two


def test_a_range_that_does_not_read_as_planned_fails_its_file_then_retry_reads_it_whole(
        environment: Environment, services: Services, people: bytes) -> None:
    services.start("api")
    services.start("watcher")
    services.start("loader")
    services.wait_for_api()
    environment.drop("people.csv", people)
    wait_until(lambda: environment.sql("SELECT file_id FROM chute.files"), what="arrival")
    file_id = environment.sql("SELECT file_id::text FROM chute.files")[0][0]
    # A wrong plan in the ledger before any transformer plans the file: range 1 said to
    # hold one record more than it does. The planner keeps the plan it finds.
    start = people.index(b"\n") + 1
    cut = people.index(b"\n", start + RANGE_BYTES) + 1
    environment.sql(
        "INSERT INTO chute.file_ranges VALUES (%s, 0, %s, %s, 2, %s, 0, %s), "
        "(%s, 1, %s, %s, %s, %s, %s, %s)",
        (file_id, start, cut, BATCH_SIZE * 2, hashlib.sha256(people[start:cut]).hexdigest(),
         file_id, cut, len(people), 3, ROWS, 2, hashlib.sha256(people[cut:]).hexdigest()))
    services.start("transformer")
    final = environment.wait_final("people.csv", timeout=120)
    assert final["state"] == "failed"
    assert "records" in final["error"] and "planned" in final["error"], final["error"]
    assert "chute retry" in final["error"]
    retried = subprocess.run([sys.executable, "-m", "chute.commands.cli", "retry", file_id],
                             cwd=REPO, env=environment.env, capture_output=True, text=True,
                             timeout=60)
    assert retried.returncode == 0, retried.stderr
    deadline = time.monotonic() + 120
    while environment.wait_final("people.csv", timeout=120)["state"] != "loaded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    check_load(environment, "people.csv", people)
    assert ranges_of(environment, file_id) == []  # read whole


KEYED = """
[datasets.stock]
match   = ["stock/*.csv"]
key     = ["sku"]

[datasets.stock.columns]
sku  = { type = "integer" }
qty  = { type = "integer" }
"""


def test_a_keyed_file_in_ranges_keeps_each_keys_last_row(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    """Ranges load in any order on two loaders; each key still ends with its row of the
    last line, as the keyed rule says for one transformer."""
    declarations = tmp_path / "datasets.toml"
    declarations.write_text(KEYED)
    environment.env.update(CHUTE_DATASETS=str(declarations))
    services.start_all(transformers=2, loaders=2)
    keys = 3000
    rows = [b"sku,qty"] + [b"%d,%d" % (n % keys, n) for n in range(60_000)]
    rows[1234] = b"oops,1"  # one reject
    content = b"\n".join(rows) + b"\n"
    environment.drop("stock/day1.csv", content)
    assert environment.wait_final("stock/day1.csv", timeout=120)["state"] == "loaded"
    file_id = environment.sql("SELECT file_id::text FROM chute.files")[0][0]
    assert len(ranges_of(environment, file_id)) >= 4
    last = {}
    for line, row in enumerate(rows[1:], start=2):
        sku, qty = row.split(b",")
        if sku.isdigit():
            last[int(sku)] = (int(qty), line)
    table = environment.sql("SELECT sku, qty, line FROM stock")
    assert {sku: (qty, line) for sku, qty, line in table} == last
    assert len(table) == keys
