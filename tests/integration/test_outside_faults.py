"""Faults from outside chute, while the services run: the broker raises its memory
alarm, PostgreSQL refuses connections. Each lasts a while and ends by itself; meanwhile
the workers wait and say why, and /ready answers 503 naming it; afterwards the pipeline
goes on without anyone restarting anything, and nothing is lost or doubled.

Both faults are made on servers of the test's own (tests/cluster_harness.py), never on
the machine's: a one-node RabbitMQ whose watermark the test lowers, and a PostgreSQL
with few connection slots, which the test fills with connections of its own.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from chute.rabbitmq.broker import (
    BATCHES,
    FILES,
    Broker,
    dead_letters,
    delete_namespace,
    queue_name,
)
from chute.runtime import health
from chute.runtime.health import HEALTH
from cluster_harness import PostgresServer, RabbitCluster, RabbitNode
from harness import AMQP, Environment, Services, wait_until

ALARM_SECONDS = 20.0  # several times the heartbeat the test's services use (5 s)
REFUSAL_SECONDS = 20.0
MAX_CONNECTIONS = 20  # the private PostgreSQL's slots; chute needs about half


def people_csv(name: str, rows: int) -> bytes:
    lines = ["fullname,age,location"]
    lines += [f"{name} Person{i},{i % 100},Town {i % 7}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def rabbit() -> Iterator[RabbitNode]:
    """A RabbitMQ node of the module's own: its alarm blocks nobody else. Each test
    that raises the alarm clears it, whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="chute-rabbit-"))
    cluster = RabbitCluster(root, size=1)
    try:
        cluster.start()
        yield cluster.nodes[0]
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, with MAX_CONNECTIONS slots."""
    root = Path(tempfile.mkdtemp(prefix="chute-pg-"))
    server = PostgresServer(root / "data")
    try:
        server.initdb(max_connections=str(MAX_CONNECTIONS))
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running(environment: Environment, request: pytest.FixtureRequest
            ) -> Iterator[Services]:
    """The services of `environment`, stopped afterwards; their logs if the test failed."""
    services = Services(environment)
    failed_before = request.session.testsfailed
    try:
        yield services
    finally:
        services.stop_all()
        if request.session.testsfailed > failed_before:
            print(services.logs())


def logged(environment: Environment, event: str) -> dict[str, list[dict]]:
    """{log file: its lines whose event is `event`}, for every service's log."""
    found: dict[str, list[dict]] = {}
    for path in sorted(environment.logs.iterdir()):
        lines = [json.loads(line) for line in path.read_text(errors="replace").splitlines()
                 if line.startswith("{")]
        found[path.stem] = [line for line in lines if line.get("event") == event]
    return found


def ready(environment: Environment) -> tuple[int, str]:
    answer = environment.get("/ready")
    if answer.status_code == 200:
        return 200, ""
    error = answer.json()["error"]
    assert error["code"] == "not_ready", answer.text
    return answer.status_code, error["message"]


def assert_loaded_once(environment: Environment, files: dict[str, int]) -> None:
    """Every file `loaded` once with all its rows, every row in the table once."""
    assert environment.sql("SELECT name, state, rows_total, rows_loaded, rows_rejected "
                           "FROM chute.files ORDER BY name") \
        == [(name, "loaded", rows, rows, 0) for name, rows in sorted(files.items())]
    total = sum(files.values())
    assert environment.sql("SELECT count(*), count(DISTINCT id), "
                           "count(DISTINCT (file_seq, line)) FROM people") \
        == [(total, total, total)]


# --- the broker's memory alarm ---------------------------------------------------------


def test_a_broker_memory_alarm_holds_publishers_back_and_ready_says_why_until_it_lifts(
        rabbit: RabbitNode, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # A short heartbeat: the alarm outlasts several, and no connection may drop for it.
    environment = Environment(tmp_path, CHUTE_AMQP_URL=f"{rabbit.url}?heartbeat=5")
    files = {"before.csv": 300, "during.csv": 200}
    blocked = "is waiting: the broker blocks publishing: low on memory"
    try:
        with running(environment, request) as services:
            services.start("api")
            services.start("watcher")
            services.start("loader")
            services.wait_for_api()
            # A file announced before the alarm, with no transformer yet to take it.
            environment.drop("before.csv", people_csv("Before", files["before.csv"]))
            wait_until(lambda: queued(rabbit, environment, FILES) == 1, 30, 0.2,
                       what="before.csv to be announced")

            rabbit.raise_memory_alarm()
            alarm_at = time.monotonic()
            # The transformer takes before.csv and cannot publish its batch; the
            # watcher takes during.csv and cannot announce it. The loader, which does
            # not publish, is not held back, and not named.
            services.start("transformer")
            environment.drop("during.csv", people_csv("During", files["during.csv"]))
            status, message = wait_until(
                lambda: (found := ready(environment))[1].count(blocked) == 2 and found,
                60, 0.2, what="/ready to name both publishers")
            assert status == 503
            assert sorted(message.split("; ")) \
                == [f"transformer {blocked}", f"watcher {blocked}"]
            waiting = logged(environment, "the broker blocks publishing: waiting")
            assert [(name, [line["reason"] for line in lines])
                    for name, lines in waiting.items()] \
                == [("00-api", []), ("01-watcher", ["low on memory"]), ("02-loader", []),
                    ("03-transformer", ["low on memory"])]

            # A long alarm: the publishers wait, nothing gets through, nobody gives up.
            time.sleep(max(0.0, ALARM_SECONDS - (time.monotonic() - alarm_at)))
            assert environment.sql("SELECT name, state FROM chute.files ORDER BY name") \
                == [("before.csv", "processing"), ("during.csv", "received")]
            assert environment.sql("SELECT count(*) FROM people") == [(0,)]
            assert ready(environment) == (503, message)

            lifted_at = time.monotonic()
            rabbit.clear_memory_alarm()
            for name in files:
                environment.wait_final(name, timeout=60)
            loaded_in = time.monotonic() - lifted_at
            wait_until(lambda: ready(environment) == (200, ""), 30, 0.2,
                       what="/ready to be 200 once the alarm is over")
            ready_in = time.monotonic() - lifted_at
            print(f"alarm held {lifted_at - alarm_at:.1f} s; after it, both files loaded "
                  f"in {loaded_in:.1f} s and /ready was 200 in {ready_in:.1f} s")

            assert_loaded_once(environment, files)
            assert dead_letters(rabbit.url, environment.namespace) == []
            # Nobody restarted or reconnected, so nothing was handed back: every worker is
            # the process started above, on its first connection.
            assert all(process.poll() is None for _name, process in services.processes)
            for event in ("connection lost, retrying", "session failed, restarting"):
                assert not any(logged(environment, event).values()), event
            assert environment.sql("SELECT count(*) FROM chute.batches") == [(2,)]
    finally:
        rabbit.clear_memory_alarm()
        environment.cleanup()  # the database; the namespace goes with the node


@pytest.mark.usefixtures("conn")  # the schema, for the reports
def test_a_long_alarm_is_reported_again_while_it_lasts_and_cleared_when_it_lifts(
        rabbit: RabbitNode, environment: Environment, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """The API forgets a report after a few minutes (api/queries.py PROBLEM_SECONDS), so
    a publisher blocked for longer says so again every REPORT_EVERY seconds: here 1 s
    instead of 60, in this process, for a publish blocked 5 s."""
    monkeypatch.setattr(health, "REPORT_EVERY", 1.0)
    monkeypatch.setattr(HEALTH, "url", environment.database_url)
    monkeypatch.setattr(HEALTH, "service", "publisher")
    reports: set[tuple[object, ...]] = set()
    over = threading.Event()

    def read_reports() -> None:
        while not over.wait(0.2):
            reports.update(environment.sql(
                "SELECT kind, problem, reported_at FROM chute.worker_problems"))

    broker = Broker(rabbit.url, environment.namespace)
    try:
        rabbit.raise_memory_alarm()
        threading.Timer(5.0, rabbit.clear_memory_alarm).start()
        reader = threading.Thread(target=read_reports, daemon=True)
        reader.start()
        started = time.monotonic()
        broker.publish(FILES, {}, b"an event")  # returns once confirmed: after the alarm
        blocked_for = time.monotonic() - started
        over.set()
        reader.join(10)
        assert blocked_for >= 4.5
        assert {(kind, problem) for kind, problem, _at in reports} \
            == {("is waiting", "the broker blocks publishing: low on memory")}
        renewed = sorted(at for _kind, _problem, at in reports)
        assert len(renewed) >= 4, renewed  # about once a second
        # Cleared before the publish returned; and the message was not lost.
        assert environment.sql("SELECT count(*) FROM chute.worker_problems") == [(0,)]
        wait_until(lambda: queued(rabbit, environment, FILES) == 1, 30, 0.2,
                   what="the message in its queue")  # the node's counts lag a little
    finally:
        over.set()
        broker.close()
        rabbit.clear_memory_alarm()


def queued(node: RabbitNode, environment: Environment, queue: str) -> int:
    """Messages ready in one of the environment's queues on `node`."""
    out = node.ctl("list_queues", "-q", "--formatter", "json", "name", "messages_ready")
    name = queue_name(environment.namespace, queue)
    return next((q["messages_ready"] for q in json.loads(out) if q["name"] == name), 0)


# --- PostgreSQL refuses connections ----------------------------------------------------


class ConnectionHog:
    """Another client that takes every connection slot the server has left."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.held: list[psycopg2.extensions.connection] = []

    def fill(self) -> str:
        """Connect until the server refuses; returns its refusal."""
        while True:
            try:
                self.held.append(psycopg2.connect(self.server.admin_url,
                                                  application_name="hog"))
            except psycopg2.OperationalError as e:
                return str(e).strip()

    def release(self) -> None:
        for conn in self.held:
            conn.close()
        self.held = []


@pytest.mark.parametrize("dropped", [
    "chute%",  # every connection of chute's, the API's too: as a restart of the server
    "chute",  # the workers' alone: the API's pool keeps its connection
], ids=["every-connection-dropped", "only-the-workers-connections-dropped"])
def test_files_dropped_while_postgresql_refuses_connections_load_once_when_it_takes_them(
        dropped: str, postgres: PostgresServer, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    environment = Environment(tmp_path)
    environment.database_url = postgres.url(environment.database)
    environment.env["CHUTE_DATABASE_URL"] = environment.database_url
    files = {"before.csv": 300, "queued.csv": 250, "during.csv": 200}
    hog = ConnectionHog(postgres)
    # The test's own connection, taken before the slots run out: it watches meanwhile.
    monitor = psycopg2.connect(postgres.admin_url, application_name="monitor")
    monitor.autocommit = True

    def on_monitor(query: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with monitor.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()

    def refusals(log: str) -> list[dict]:
        return [line for line in logged(environment, "connection lost, retrying")[log]
                if "too many clients" in line["error"]]

    try:
        with running(environment, request) as services:
            services.start_all()
            environment.drop("before.csv", people_csv("Before", files["before.csv"]))
            assert environment.wait_final("before.csv")["state"] == "loaded"
            # A batch waits for a loader: the one there was is stopped.
            loader = next(p for name, p in services.processes if name == "loader")
            assert services.stop(loader) == 0
            environment.drop("queued.csv", people_csv("Queued", files["queued.csv"]))
            wait_until(lambda: ready_messages(environment, BATCHES) == 1, 30, 0.2,
                       what="queued.csv's batch")

            # The fault: another client takes every slot, and chute's connections drop
            # (all of them, as a restart of the server would drop them; or the workers'
            # alone), so every connection chute opens now is refused until the other
            # client lets go.
            hog.fill()
            chute_backends = on_monitor(
                "SELECT pid, application_name FROM pg_stat_activity "
                "WHERE application_name LIKE %s", (dropped,))
            assert {name for _pid, name in chute_backends} \
                == ({"chute", "chute-api"} if dropped == "chute%" else {"chute"})
            for pid, _name in chute_backends:
                # Waits (up to 5 s) until the backend is gone and its slot free.
                on_monitor("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            refusal = hog.fill()
            assert "too many clients" in refusal, refusal
            refused_at = time.monotonic()

            # A loader that starts now, and the watcher with a new file, wait for the
            # server, saying why in their logs; /ready says the database does not answer.
            services.start("loader")
            environment.drop("during.csv", people_csv("During", files["during.csv"]))
            status, message = wait_until(
                lambda: (found := ready(environment))[0] == 503 and found, 30, 0.2,
                what="/ready to say 503")
            assert "database" in message, message
            if dropped == "chute%":  # the API cannot read either
                assert message == "database: TooManyConnectionsError"
                answer = environment.get("/files")
                assert (answer.status_code, answer.json()["error"]["code"]) \
                    == (503, "unavailable"), answer.text
            else:  # the API reads on, but a new connection, as a worker's, is refused
                assert message == "database refuses new connections: TooManyConnectionsError"
            for log in ("01-watcher", "04-loader"):
                wait_until(lambda log=log: refusals(log), 30, 0.2,
                           what=f"{log} to log the refusal")
            time.sleep(max(0.0, REFUSAL_SECONDS - (time.monotonic() - refused_at)))
            assert ready(environment) == (503, message)
            assert on_monitor("SELECT count(*) FROM pg_stat_activity "
                              "WHERE application_name = 'chute'") == [(0,)]
            held = on_monitor("SELECT count(*) FROM pg_stat_activity "
                              "WHERE application_name = 'hog'")[0][0]

            hog.release()
            released_at = time.monotonic()
            for name in ("queued.csv", "during.csv"):
                assert environment.wait_final(name, timeout=90)["state"] == "loaded"
            loaded_in = time.monotonic() - released_at
            wait_until(lambda: ready(environment) == (200, ""), 60, 0.5,
                       what="/ready to be 200 once connections are taken again")
            ready_in = time.monotonic() - released_at
            print(f"{held} connections held by another client for "
                  f"{released_at - refused_at:.1f} s; after, both files loaded in "
                  f"{loaded_in:.1f} s and /ready was 200 in {ready_in:.1f} s; refusals "
                  f"logged: watcher {len(refusals('01-watcher'))}, "
                  f"loader {len(refusals('04-loader'))}")

            assert_loaded_once(environment, files)
            assert dead_letters(AMQP, environment.namespace) == []
            assert [name for name, process in services.processes if process.poll() is None] \
                == ["api", "watcher", "transformer", "loader"]
    finally:
        hog.release()
        monitor.close()
        delete_namespace(AMQP, environment.namespace)  # the database goes with its server


def ready_messages(environment: Environment, queue: str) -> int:
    """Messages ready in one of the environment's queues on the machine's broker."""
    broker = Broker(AMQP, environment.namespace)
    try:
        name = queue_name(environment.namespace, queue)
        return broker.channel.queue_declare(name, passive=True).method.message_count
    finally:
        broker.close()
