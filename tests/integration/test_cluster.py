"""chute on a RabbitMQ cluster and a PostgreSQL standby, with nodes taken down.

A 3-node RabbitMQ cluster and a PostgreSQL primary + standby of the test's own (see
tests/cluster_harness.py) serve two runs. In each, 30 files load through 2 transformers
and 2 loaders while the node leading the queues goes away: `rabbitmqctl stop_app` in
the first run, a SIGKILL of the node's Erlang VM in the second (the URL list is
rotated, so that node is another one). Loading must go on while it is away, and end
with every row loaded once, every file `loaded` and every worker still running; the
API, reading from the standby, must answer the primary's rows once it has caught up.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import psycopg2
import pytest

from chute.rabbitmq.broker import (
    BATCHES,
    DEAD,
    DEAD_NOTIFY,
    FILES,
    Broker,
    Delivery,
    dead_letters,
    delete_namespace,
    queue_name,
)
from cluster_harness import PostgresPair, RabbitCluster
from harness import AMQP, Environment, Services, wait_until

pytestmark = pytest.mark.cluster

FILE_COUNT = 30
ROWS_PER_FILE = 15000
BATCH_SIZE = 500
BATCHES_PER_FILE = math.ceil(ROWS_PER_FILE / BATCH_SIZE)
TOTAL_ROWS = FILE_COUNT * ROWS_PER_FILE
OUTAGE_SECONDS = 8.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    root = Path(tempfile.mkdtemp(prefix="chute-rabbit-"))
    cluster = RabbitCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresPair]:
    pair = PostgresPair(Path(tempfile.mkdtemp(prefix="chute-pg-")))
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()


def people_csv(file_no: int) -> bytes:
    lines = ["fullname,age,location"]
    lines += [f"Person{file_no}x{i} Surname{i % 97},{i % 100},City{i % 13}"
              for i in range(ROWS_PER_FILE)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("failure", ["stop_app", "sigkill"])
def test_files_load_once_while_the_leading_broker_node_goes_down(
        failure: str, cluster: RabbitCluster, postgres: PostgresPair, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    # Services connect to the first node that answers, and queues are led by the node
    # that declared them, so the first URL chooses the node that leads.
    order = [0, 1, 2] if failure == "stop_app" else [1, 2, 0]
    environment = Environment(tmp_path, CHUTE_AMQP_URL=cluster.urls(order),
                              CHUTE_BATCH_SIZE=str(BATCH_SIZE))
    environment.database_url = postgres.primary.url(environment.database)
    environment.env["CHUTE_DATABASE_URL"] = environment.database_url
    environment.env["CHUTE_API_DATABASE_URL"] = postgres.standby.url(environment.database)
    services = Services(environment)
    failed_before = request.session.testsfailed
    try:
        api = services.start("api")
        services.start("watcher")
        workers = [services.start(name) for name in ("transformer", "transformer",
                                                     "loader", "loader")]
        services.wait_for_api()
        queues = [queue_name(environment.namespace, q) for q in (FILES, BATCHES)]
        leaders = wait_until(lambda: len(found := cluster.queue_leaders(queues)) == 2
                             and found, 60, 0.5, what="the queues")
        victim = cluster.node(leaders[queues[1]][0])
        assert victim is cluster.nodes[order[0]]  # the first node of the list leads
        assert all(len(online) == 3 for _leader, online in leaders.values())

        started = time.monotonic()
        for n in range(FILE_COUNT):
            environment.drop(f"people-{n:02d}.csv", people_csv(n))
        wait_until(lambda: loaded_files(environment) >= 2, 120, 0.1,
                   what="the first files to load")
        before = loaded_files(environment)
        assert before < FILE_COUNT, "loading ended before the node failed: use more rows"
        if failure == "stop_app":
            victim.ctl("stop_app")
        else:
            victim.kill()
        down_at = time.monotonic()
        # Loading goes on without the node: the workers find another one themselves.
        wait_until(lambda: loaded_files(environment) > before + 1, 60, 0.2,
                   what="loading to go on while a node is down")
        progress = loaded_files(environment) - before
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        if failure == "stop_app":
            victim.ctl("start_app")
            victim.await_startup()
        else:
            victim.start()
        print(f"{failure} of {victim.name}: {progress} files loaded while it was down")

        wait_until(lambda: loaded_files(environment) == FILE_COUNT, 300, 0.5,
                   what="every file to be loaded")
        print(f"{TOTAL_ROWS} rows in {time.monotonic() - started:.1f} s")
        # Every row once, every batch once, every file loaded once.
        assert environment.sql(
            "SELECT count(*), count(DISTINCT (file_seq, line)) FROM people") \
            == [(TOTAL_ROWS, TOTAL_ROWS)]
        assert environment.sql(
            "SELECT state, count(*), sum(rows_loaded), sum(rows_rejected) "
            "FROM chute.files GROUP BY state") == [("loaded", FILE_COUNT, TOTAL_ROWS, 0)]
        assert environment.sql("SELECT count(*) FROM chute.batches") \
            == [(FILE_COUNT * BATCHES_PER_FILE,)]
        assert sorted(p.name for p in (environment.data_dir / "archive").iterdir()) \
            == [f"people-{n:02d}.csv" for n in range(FILE_COUNT)]
        assert dead_letters(cluster.urls(), environment.namespace) == []
        # Nobody restarted a worker: each is the process started above, and each moved
        # to another node by itself (a connection per node it used, in its log).
        assert all(p.poll() is None for _name, p in services.processes)
        for index in range(2, 6):  # the transformers and loaders, in start order
            log = sorted(environment.logs.iterdir())[index].read_text()
            assert log.count('"broker connected"') >= 2, log[-2000:]
        assert len(workers) == 4
        # The node is back in every queue.
        wait_until(lambda: all(len(online) == 3 for _leader, online
                               in cluster.queue_leaders(queues).values()), 60, 0.5,
                   what="the node to rejoin the queues")

        # The API reads from the standby: once it has caught up, the same rows.
        wait_until(postgres.caught_up, 60, 0.2, what="the standby to catch up")
        assert api_people_ids(environment) == environment.sql(
            "SELECT id::text FROM people ORDER BY file_seq, line")[:3000]
        assert [(f["name"], f["state"], f["rows_loaded"]) for f in api_files(environment)] \
            == [(name, state, rows) for name, state, rows in environment.sql(
                "SELECT name, state, rows_loaded FROM chute.files ORDER BY seq DESC")]
        if failure == "stop_app":
            check_reads_come_from_the_standby(environment, postgres)
    finally:
        api_died = api.poll() is not None
        services.stop_all()
        if request.session.testsfailed > failed_before or api_died:
            print(services.logs())


def check_reads_come_from_the_standby(environment: Environment,
                                      postgres: PostgresPair) -> None:
    """With replay paused, a file loaded on the primary is not in the API's answers;
    resumed, it is."""
    standby = psycopg2.connect(postgres.standby.admin_url)
    standby.autocommit = True
    try:
        with standby.cursor() as cur:
            cur.execute("SELECT pg_wal_replay_pause()")
        environment.drop("late.csv", b"fullname,age,location\nLate Comer,40,Oslo\n")
        wait_until(lambda: environment.sql(
            "SELECT 1 FROM chute.files WHERE name = 'late.csv' AND state = 'loaded'"),
            60, 0.2, what="late.csv to load on the primary")
        assert environment.file_state("late.csv") is None
        with standby.cursor() as cur:
            cur.execute("SELECT pg_wal_replay_resume()")
        assert wait_until(lambda: environment.file_state("late.csv"), 30, 0.1,
                          what="the standby to show late.csv")["state"] == "loaded"
    finally:
        with standby.cursor() as cur:
            cur.execute("SELECT pg_is_wal_replay_paused()")
            if cur.fetchone()[0]:
                cur.execute("SELECT pg_wal_replay_resume()")
        standby.close()


def loaded_files(environment: Environment) -> int:
    return environment.sql("SELECT count(*) FROM chute.files WHERE state = 'loaded'")[0][0]


def api_people_ids(environment: Environment, pages: int = 3) -> list[tuple[str]]:
    """The first pages of /people, followed by cursor, as the API serves them."""
    ids, cursor = [], None
    for _ in range(pages):
        params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        answer = environment.get("/people", params=params).json()
        ids += [(item["id"],) for item in answer["items"]]
        cursor = answer["next_cursor"]
    return ids


def api_files(environment: Environment) -> list[dict[str, object]]:
    return environment.get("/files", params={"limit": 1000}).json()["items"]


def test_classic_queues_of_an_earlier_chute_are_used_as_they_are_and_lose_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """An existing deployment may have classic queues of these names (RabbitMQ cannot
    turn one into a quorum queue): they are kept, with a warning, their messages are
    consumed, and a rejected one is dead-lettered though the queue has no DLX."""
    namespace = f"chute-test-{uuid.uuid4().hex[:10]}"
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        channel = conn.channel()
        for queue in (FILES, DEAD):  # classic, no arguments at all
            channel.queue_declare(queue_name(namespace, queue), durable=True)
        channel.basic_publish("", queue_name(namespace, FILES), b"old message",
                              pika.BasicProperties(delivery_mode=2, headers={"kind": "x"}))
        broker = Broker(AMQP, namespace)
        try:
            warned = [(r.queue, r.getMessage()) for r in caplog.records  # type: ignore[attr-defined]
                      if r.name == "chute.rabbitmq.broker" and r.levelname == "WARNING"]
            assert warned == [(queue_name(namespace, queue),
                               "queue exists with other arguments (a classic queue of an "
                               "earlier chute?): using it as it is; see 'Migrating queues' "
                               "in docs/cluster.md") for queue in (FILES, DEAD)]
            seen: list[Delivery] = []
            broker.consume(FILES, 1, seen.append)
            wait_until(lambda: broker.poll(0.1) or seen, 10, what="the old message")
            broker.reject(seen[0], requeue=False)
        finally:
            broker.close()
        dead = wait_until(lambda: dead_letters(AMQP, namespace), 10, 0.2,
                          what="the dead letter")
        assert [(d.body, d.reason, d.queue) for d in dead] \
            == [(b"old message", "rejected", queue_name(namespace, FILES))]
        notify = channel.queue_declare(queue_name(namespace, DEAD_NOTIFY), passive=True)
        assert notify.method.message_count == 1
        files = channel.queue_declare(queue_name(namespace, FILES), passive=True)
        assert files.method.message_count == 0
    finally:
        conn.close()
        delete_namespace(AMQP, namespace)
