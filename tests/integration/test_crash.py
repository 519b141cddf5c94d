"""Nothing lost, nothing doubled, whatever crashes: real processes, killed for real.

The outage test stops the shared RabbitMQ application and PostgreSQL for a few seconds
each and always brings them back (`Outages.restore`, in a `finally`): other tests on
this machine share both servers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from chute.datasets.declarations import load
from chute.postgres import db
from chute.rabbitmq.broker import BATCHES, Broker, dead_letters
from chute.reading.rowids import row_uuid
from harness import AMQP, Environment, Services, wait_until

HEADER = b"fullname,age,location\n"
PG_VERSION = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else ""
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main"]


@dataclass
class CsvFile:
    """A generated file and what loading it must produce."""

    name: str
    content: bytes
    loaded_lines: list[int] = field(default_factory=list)
    rejected_lines: list[int] = field(default_factory=list)


def generate(name: str, rows: int, reject_every: int = 0) -> CsvFile:
    """`rows` data rows; every `reject_every`-th has an age that is not a number."""
    lines, loaded, rejected = [HEADER], [], []
    for i in range(rows):
        line = i + 2  # the header is line 1
        if reject_every and i % reject_every == reject_every - 1:
            lines.append(b"%s Bad%d,old,Nowhere\n" % (name.encode(), i))
            rejected.append(line)
        else:
            lines.append(b"%s Person%d,%d,Town %d\n" % (name.encode(), i, i % 100, i % 7))
            loaded.append(line)
    return CsvFile(name, b"".join(lines), loaded, rejected)


def ready_queue_length(environment: Environment, queue: str) -> int:
    broker = Broker(AMQP, environment.namespace)
    try:
        name = f"{environment.namespace}.{queue}"
        return broker.channel.queue_declare(name, passive=True).method.message_count
    finally:
        broker.close()


def ledger_size(environment: Environment) -> int:
    return environment.sql("SELECT count(*) FROM chute.batches")[0][0]


def logged(environment: Environment, event: str) -> list[dict]:
    found = []
    for path in sorted(environment.logs.iterdir()):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                found.append(json.loads(line))
    return found


def assert_loaded_exactly(environment: Environment, files: list[CsvFile]) -> None:
    """Every file `loaded` once, every row in the table exactly once, nothing else."""
    arrivals = environment.sql(
        "SELECT name, state, rows_total, rows_loaded, rows_rejected FROM chute.files "
        "ORDER BY name")
    assert arrivals == sorted(
        (f.name, "loaded", len(f.loaded_lines) + len(f.rejected_lines), len(f.loaded_lines),
         len(f.rejected_lines)) for f in files)
    expected = sum(len(f.loaded_lines) for f in files)
    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [
        (expected, expected)]
    rows = environment.sql(
        "SELECT f.name, p.line, p.id::text, f.sha256 FROM people p "
        "JOIN chute.files f ON f.seq = p.file_seq")
    assert sorted((name, line) for name, line, _id, _sha in rows) == sorted(
        (f.name, line) for f in files for line in f.loaded_lines)
    # Ids come from the content and the line, so any retry writes the same id.
    assert all(row_id == str(row_uuid(sha, line)) for _name, line, row_id, sha in rows)
    rejects = environment.sql(
        "SELECT f.name, r.line FROM chute.rejects r JOIN chute.files f USING (file_id)")
    assert sorted(rejects) == sorted((f.name, line) for f in files for line in f.rejected_lines)
    archive = environment.data_dir / "archive"
    assert sorted(p.name for p in archive.iterdir()) == sorted(f.name for f in files)
    assert [p for p in (environment.data_dir / "work").rglob("*") if p.is_file()] == []
    assert dead_letters(AMQP, environment.namespace) == []


def wait_all_final(environment: Environment, count: int, timeout: float) -> None:
    final = ("loaded", "duplicate", "quarantined", "failed")

    def done() -> bool:
        states = environment.sql("SELECT state FROM chute.files")
        return len(states) == count and all(state in final for (state,) in states)

    wait_until(done, timeout, 0.5, what=f"{count} files to reach a final state")


# --- SIGTERM drains -------------------------------------------------------------------


def test_sigterm_stops_a_transformer_mid_file_and_another_finishes_it(
        environment: Environment, services: Services) -> None:
    big = generate("big.csv", 60_000)
    services.start("watcher", CHUTE_BATCH_SIZE="100")
    transformer = services.start("transformer", CHUTE_BATCH_SIZE="100")
    environment.drop(big.name, big.content)
    wait_until(lambda: ready_queue_length(environment, BATCHES) >= 10, 60, 0.05,
               what="the transformer to be mid-file")

    assert services.stop(transformer) == 0
    published = ready_queue_length(environment, BATCHES)
    assert 10 <= published < 601  # 600 batches and a FileDone: it stopped mid-file
    assert environment.sql("SELECT state FROM chute.files") == [("processing",)]

    services.start("loader")
    wait_until(lambda: ledger_size(environment) == published, 60, 0.2,
               what="the published batches to load")
    services.start("transformer", CHUTE_BATCH_SIZE="100")
    wait_all_final(environment, 1, 120)

    assert_loaded_exactly(environment, [big])
    # The second transformer sent only what the ledger lacked.
    assert [e["batches_skipped"] for e in logged(environment, "file transformed")] == [
        published]


def test_sigterm_stops_a_loader_mid_stream_and_another_finishes_it(
        environment: Environment, services: Services) -> None:
    big = generate("stream.csv", 60_000, reject_every=1000)
    services.start("watcher", CHUTE_BATCH_SIZE="100")
    services.start("transformer", CHUTE_BATCH_SIZE="100")
    environment.drop(big.name, big.content)
    # 600 batches: the last one closes the file (no FileDone, see docs/small-files.md).
    wait_until(lambda: ready_queue_length(environment, BATCHES) == 600, 120, 0.2,
               what="every batch to be published")

    loader = services.start("loader")
    wait_until(lambda: ledger_size(environment) >= 10, 60, 0.05,
               what="the loader to be mid-stream")
    assert services.stop(loader) == 0
    assert 10 <= ledger_size(environment) < 600
    assert environment.sql("SELECT state FROM chute.files") == [("processing",)]

    services.start("loader")
    wait_all_final(environment, 1, 120)

    assert_loaded_exactly(environment, [big])


# --- the watcher's recovery -------------------------------------------------------------


def test_files_a_dead_watcher_left_in_work_are_finished_at_start(
        environment: Environment, services: Services) -> None:
    db.ensure_database(environment.database_url)
    conn = db.connect(environment.database_url)
    try:
        db.apply_schema(conn, load(None), f"{environment.database}_reader")
        # Claimed (renamed into work/) but never registered: died right after the rename.
        claimed = generate("claimed.csv", 40)
        place_in_work(environment, claimed)
        # Registered but its FileArrived never published: died before the publish.
        registered = generate("registered.csv", 30, reject_every=7)
        file_id = place_in_work(environment, registered)
        db.register_file(conn, file_id, registered.name, f"work/{file_id}/{registered.name}",
                         hashlib.sha256(registered.content).hexdigest(),
                         len(registered.content), "people")
    finally:
        conn.close()

    services.start_all()
    wait_all_final(environment, 2, 60)

    assert_loaded_exactly(environment, [claimed, registered])


def test_a_file_changed_in_work_after_its_claim_fails_and_loads_nothing(
        environment: Environment, services: Services) -> None:
    grown, edited = generate("grown.csv", 30), generate("edited.csv", 30)
    db.ensure_database(environment.database_url)
    conn = db.connect(environment.database_url)
    try:
        db.apply_schema(conn, load(None), f"{environment.database}_reader")
        for csv in (grown, edited):
            file_id = place_in_work(environment, csv)
            db.register_file(conn, file_id, csv.name, f"work/{file_id}/{csv.name}",
                             hashlib.sha256(csv.content).hexdigest(), len(csv.content),
                             "people")
            path = environment.data_dir / "work" / file_id / csv.name
            if csv is grown:  # someone appends a row after the claim
                path.write_bytes(csv.content + b"Late Comer,30,Town\n")
            else:  # someone edits an age in place: the same size, other bytes
                path.write_bytes(csv.content.replace(b",0,Town", b",9,Town"))
    finally:
        conn.close()

    environment.env["CHUTE_BATCH_SIZE"] = "10"  # several batches: none may be sent
    services.start_all()
    wait_all_final(environment, 2, 60)

    states = environment.sql("SELECT name, state, error FROM chute.files ORDER BY name")
    assert [(name, state) for name, state, _error in states] == [
        ("edited.csv", "failed"), ("grown.csv", "failed")]
    assert states[0][2].startswith("file changed after it was claimed: sha256 ")
    assert states[1][2] == (f"file changed after it was claimed: {len(grown.content) + 19} "
                            f"bytes, {len(grown.content)} when claimed")
    assert environment.sql("SELECT count(*) FROM people") == [(0,)]
    assert dead_letters(AMQP, environment.namespace) == []


def place_in_work(environment: Environment, csv: CsvFile) -> str:
    file_id = str(uuid.uuid4())
    folder = environment.data_dir / "work" / file_id
    folder.mkdir(parents=True)
    (folder / csv.name).write_bytes(csv.content)
    return file_id


# --- killed workers and server outages ---------------------------------------------------


class Outages:
    """Stops and starts the shared RabbitMQ application and PostgreSQL cluster."""

    def broker_down(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)

    def broker_up(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)

    def database_down(self) -> None:
        subprocess.run([*PG_CLUSTER, "stop", "-m", "fast"], check=True, timeout=120)

    def database_up(self) -> None:
        subprocess.run([*PG_CLUSTER, "start"], check=True, timeout=120)

    def restore(self) -> None:
        """Whatever happened, leave both servers running (start_app is idempotent)."""
        try:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], timeout=120)
        finally:
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
                subprocess.run([*PG_CLUSTER, "start"], timeout=120)


@pytest.fixture
def outages() -> Iterator[Outages]:
    outages = Outages()
    yield outages
    outages.restore()


def start_worker(services: Services, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a service; returns it with its log file (named as Services.start names it)."""
    process = services.start(name)
    index = len(services.processes) - 1
    return process, services.environment.logs / f"{index:02d}-{name}.log"


def api_answers(environment: Environment) -> bool:
    try:
        return environment.get("/health").status_code == 200
    except requests.ConnectionError:
        return False


def ready_status(environment: Environment) -> tuple[int, str, float]:
    """(status, error code or "", seconds taken) of GET /ready."""
    started = time.monotonic()
    response = environment.get("/ready")
    code = response.json().get("error", {}).get("code", "") if response.status_code != 200 else ""
    return response.status_code, code, round(time.monotonic() - started, 2)


# Worker kills in the test. RabbitMQ 3.x counts a message handed back by a dead consumer
# as a delivery, and dead-letters it after DELIVERY_LIMIT (20); one message can be in
# flight at every kill and at each of the two outages, so this must stay below 18.
KILLS = 12
FILES = 36


def test_killed_workers_and_server_outages_lose_and_double_nothing(
        environment: Environment, services: Services, outages: Outages) -> None:
    seed = int(os.environ.get("CHUTE_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"chaos seed {seed} (CHUTE_CHAOS_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    files = [generate(f"chaos-{n:02d}.csv", rng.randrange(4000, 12000), reject_every=97)
             for n in range(FILES)]
    pending = list(files)
    environment.env["CHUTE_BATCH_SIZE"] = "250"
    services.start("api")
    watcher = services.start("watcher")
    workers = [start_worker(services, name) for name in ("transformer", "transformer",
                                                         "loader", "loader")]
    wait_until(lambda: api_answers(environment), 30, what="the API")
    drained_codes: list[int] = []
    ready_during_outages: list[tuple[int, str, float]] = []

    def drop(count: int) -> None:
        for csv in pending[:count]:
            environment.drop(csv.name, csv.content)
        del pending[:count]

    def kill_a_worker() -> None:
        index = rng.randrange(len(workers))
        process, log = workers[index]
        name = process.args[-1]
        # A polite stop must drain and exit 0. Only once the worker is up: a SIGTERM that
        # lands while Python is still importing ends it the default way, with -15.
        if rng.random() < 0.25 and '"event": "consuming"' in log.read_text():
            drained_codes.append(services.stop(process))
        else:
            process.send_signal(signal.SIGKILL)
            process.wait()
        workers[index] = start_worker(services, name)

    drop(16)  # a backlog, so that the kills land on work in hand
    backlog = []  # (batches ready, files unfinished) at each kill
    for round_no in range(KILLS):
        drop(1)
        time.sleep(rng.uniform(0.2, 1.0))
        backlog.append((ready_queue_length(environment, BATCHES), environment.sql(
            "SELECT count(*) FROM chute.files WHERE state IN ('received', 'processing')")[0][0]))
        kill_a_worker()
        if round_no == 3:
            outages.broker_down()
            ready_during_outages.append(ready_status(environment))
            drop(2)
            time.sleep(2)
            outages.broker_up()
        if round_no == 6:
            watcher.send_signal(signal.SIGKILL)
            watcher.wait()
            watcher = services.start("watcher")
        if round_no == 8:
            outages.database_down()
            ready_during_outages.append(ready_status(environment))
            drop(2)
            time.sleep(2)
            outages.database_up()
    drop(len(pending))
    print(f"at each kill (batches ready, files unfinished): {backlog}")
    print(f"/ready during the outages (status, code, seconds): {ready_during_outages}")

    wait_all_final(environment, FILES, 240)
    print(f"redelivered batches skipped by the ledger: "
          f"{len(logged(environment, 'batch already loaded'))}; files transformed "
          f"{len(logged(environment, 'file transformed'))} times for {FILES} files")

    assert [(status, code) for status, code, _s in ready_during_outages] == [
        (503, "not_ready"), (503, "not_ready")]
    assert drained_codes == [0] * len(drained_codes)
    assert_loaded_exactly(environment, files)
    wait_until(lambda: ready_status(environment)[0] == 200, 60, 0.5, what="ready again")

