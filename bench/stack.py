"""The real services for one measurement, on their own database, namespace and folder.

Built on the integration harness (tests/harness.py), so the benchmark runs exactly what
the tests run: `python -m NAME` processes against the shared PostgreSQL and RabbitMQ,
removed afterwards. A header-only warm-up file goes through the whole pipeline before
anything is timed: then every service is connected and consuming, and the loaded table
is still empty for the first-row measurement. Every stack also declares the wide dataset
(bench/wide.toml, beside the built-in people), so either can be dropped into it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psycopg2
import requests

from bench import proc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import Environment, Services, wait_until  # noqa: E402

WORKERS = ("watcher", "transformer", "loader", "api")
DATASETS = Path(__file__).resolve().parent / "wide.toml"
FINAL = ("loaded", "duplicate", "quarantined", "failed")


@dataclass
class Arrival:
    """What one dropped file went through, in seconds after its drop."""

    name: str
    dropped_at: float  # time.time() just before the rename into the inbox
    loaded_s: float | None = None  # polled: the file's state became final
    first_row_s: float | None = None  # polled: /read/first-chunk returned a row
    state: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _bench_environment(root: Path, batch_size: int) -> Environment:
    """The harness's environment, renamed chute_bench_*: anything a killed benchmark
    leaves on the shared servers is recognisably the benchmark's."""
    environment = Environment(root, CHUTE_BATCH_SIZE=str(batch_size),
                              CHUTE_DATASETS=str(DATASETS))
    tag = environment.database.rsplit("_", 1)[-1]
    environment.database = f"chute_bench_{tag}"
    environment.namespace = f"chute-bench-{tag}"
    environment.database_url = environment.database_url.rsplit("/", 1)[0] + "/" + \
        environment.database
    environment.env["CHUTE_DATABASE_URL"] = environment.database_url
    environment.env["CHUTE_NAMESPACE"] = environment.namespace
    return environment


def _cleanup(environment: Environment) -> None:
    """Drop the database and namespace, waiting out a restart of either server."""
    for attempt in range(12):
        try:
            environment.cleanup()
            return
        except Exception:  # noqa: BLE001 - a server restarting: try again shortly
            if attempt == 11:
                raise
            time.sleep(5)


class Stack:
    """`with Stack(root, ...) as stack:` runs the services until the block ends."""

    def __init__(self, root: Path, batch_size: int, transformers: int = 1,
                 loaders: int = 1) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Always a new folder: files left in a data dir by an interrupted run would be
        # recovered by the watcher and measured again.
        self.root = Path(tempfile.mkdtemp(prefix="stack-", dir=root))
        self.environment = _bench_environment(self.root, batch_size)
        self.services = Services(self.environment)
        self.transformers = transformers
        self.loaders = loaders
        self.db: psycopg2.extensions.connection | None = None
        self.http = requests.Session()

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        start = self.services.start
        start("api")
        start("watcher")
        for _ in range(self.transformers):
            start("transformer")
        for _ in range(self.loaders):
            # DEBUG only on the loader: one "batch loaded" line per batch, with its time.
            start("loader", CHUTE_LOG_LEVEL="DEBUG")
        wait_until(self._api_up, 60, what="the API")
        self.environment.drop("warm-up.csv", b"fullname,age,location\n")
        self._connect()
        # Generous: a service that found the broker or database restarting backs off.
        wait_until(lambda: self.states(["warm-up.csv"]).get("warm-up.csv") == "loaded", 180,
                   what="the warm-up file to load")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        failed = kind is not None or any(p.poll() not in (None, 0)
                                         for _n, p in self.services.processes)
        if self.db is not None:
            self.db.close()
        self.services.stop_all()
        if failed:  # keep the logs: a figure from a broken run is worth nothing
            kept = Path(__file__).resolve().parent / "results" / "failed-logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(self.environment.logs, kept)
            print(f"services' logs kept in {kept}", file=sys.stderr)
        _cleanup(self.environment)

    def _api_up(self) -> bool:
        try:
            return self.http.get(self.environment.api + "/health", timeout=2).ok
        except requests.ConnectionError:
            return False

    # --- dropping and watching --------------------------------------------------------

    def drop(self, source: Path, name: str) -> Arrival:
        """Copy a prepared file beside the inbox, then rename it in (it is finished);
        `name` may hold a subfolder of the inbox ("wide/orders.csv")."""
        staged = self.environment.data_dir / ".staging" / name
        target = self.environment.inbox / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A copy, not a hard link: the watcher quarantines a file with two names unread
        # (one of them may be outside the inbox), so a linked drop would not be loaded.
        shutil.copyfile(source, staged)
        dropped = time.time()
        os.rename(staged, target)
        return Arrival(name, dropped)

    def _connect(self) -> None:
        self.db = psycopg2.connect(self.environment.database_url)
        self.db.autocommit = True

    def states(self, names: list[str]) -> dict[str, str]:
        """Each file's state; {} while the database is unreachable (a restart by another
        user of the shared server must not end the measurement: the services recover)."""
        try:
            if self.db is None or self.db.closed:
                self._connect()
            assert self.db is not None
            with self.db.cursor() as cur:
                cur.execute("SELECT name, state FROM chute.files WHERE name = ANY(%s)",
                            (names,))
                return dict(cur.fetchall())
        except psycopg2.OperationalError:
            if self.db is not None:
                self.db.close()
            time.sleep(0.5)
            return {}

    def first_row_visible(self, dataset: str) -> bool:
        try:
            reply = self.http.get(f"{self.environment.api}/datasets/{dataset}/rows",
                                  params={"limit": 1}, timeout=10)
        except requests.RequestException:
            return False
        return reply.ok and len(reply.json()["items"]) >= 1

    def watch(self, arrivals: list[Arrival], timeout: float, interval: float = 0.005,
              first_row: str | None = None) -> None:
        """Poll until every arrival is final, noting when each got there (and, with
        first_row naming a dataset, when the API first served one of its rows)."""
        deadline = time.monotonic() + timeout
        waiting = {a.name: a for a in arrivals}
        start = min(a.dropped_at for a in arrivals)
        while waiting:
            now = time.time()
            if first_row and arrivals[0].first_row_s is None \
                    and self.first_row_visible(first_row):
                arrivals[0].first_row_s = time.time() - start
            for name, state in self.states(list(waiting)).items():
                if state in FINAL:
                    arrival = waiting.pop(name)
                    arrival.loaded_s = now - arrival.dropped_at
                    arrival.state = state
            if time.monotonic() > deadline:
                raise AssertionError(f"not loaded within {timeout}s: {sorted(waiting)}")
            time.sleep(interval)
        for arrival in arrivals:
            arrival.counts = self.counts(arrival.name)

    def counts(self, name: str) -> dict[str, int]:
        if self.db is None or self.db.closed:
            self._connect()
        assert self.db is not None
        with self.db.cursor() as cur:
            cur.execute(
                """SELECT rows_total, rows_loaded, rows_rejected,
                          extract(epoch FROM received_at), extract(epoch FROM started_at),
                          extract(epoch FROM finished_at)
                   FROM chute.files WHERE name = %s""", (name,))
            total, loaded, rejected, received, started, finished = cur.fetchone()
        return {"rows_total": total, "rows_loaded": loaded, "rows_rejected": rejected,
                "received_at": float(received), "started_at": float(started),
                "finished_at": float(finished)}

    # --- what the processes used ------------------------------------------------------

    def servers(self) -> tuple[str, int | None]:
        """When PostgreSQL last started, and the broker's process id: if either changes
        during a measurement, a server restarted under it and its timings are inflated."""
        if self.db is None or self.db.closed:
            self._connect()
        assert self.db is not None
        with self.db.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()::text")
            started = cur.fetchone()[0]
        return started, proc.oldest_named("beam.smp")

    def workers(self) -> list[tuple[str, int]]:
        """(label, pid) of each service, e.g. ("transformer-2", 1234)."""
        seen: dict[str, int] = {}
        labelled = []
        for name, process in self.services.processes:
            seen[name] = seen.get(name, 0) + 1
            label = name if name in ("api", "watcher") else f"{name}-{seen[name]}"
            labelled.append((label, process.pid))
        return labelled

    def peak_rss_mb(self) -> dict[str, float | None]:
        """Each service's high-water mark of resident memory since it started."""
        return {label: proc.peak_rss_mb(pid) for label, pid in self.workers()}

    def cpu_seconds(self) -> dict[str, float | None]:
        """CPU used so far by each service, by the database's backends serving this
        stack, and by the broker (shared with anything else on the machine)."""
        used = {label: proc.cpu_seconds(pid) for label, pid in self.workers()}
        if self.db is None or self.db.closed:
            self._connect()
        assert self.db is not None
        with self.db.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            backends = [row[0] for row in cur.fetchall()]
        used["postgres backends"] = sum(proc.cpu_seconds(pid) or 0.0 for pid in backends)
        broker = proc.oldest_named("beam.smp")
        used["rabbitmq (whole broker)"] = (proc.cpu_seconds(broker) or 0.0) if broker else 0.0
        return used

    def log_events(self, service: str, event: str) -> list[dict[str, object]]:
        """The JSON log lines of every process of `service` whose event is `event`."""
        found = []
        for path in sorted(self.environment.logs.glob(f"*-{service}.log")):
            for line in path.read_text(errors="replace").splitlines():
                if f'"{event}"' in line:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if entry.get("event") == event:
                        found.append(entry)
        return found
