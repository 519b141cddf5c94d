"""Runs the real services as processes against the real broker and database.

Each test run gets its own database, CHUTE_NAMESPACE and data folder, and removes
them afterwards; nothing else on the shared broker or server is touched.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import requests

PG_ADMIN = os.environ.get("CHUTE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("CHUTE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free now, below the kernel's range for outgoing connections: a port the
    kernel hands out (bind to 0) can be taken by any client's connection before the
    service binds it, which once failed a run with "address already in use"."""
    low = _ephemeral_ports()[0]
    if low <= 11_000:  # no room below the range: let the kernel choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    while True:
        port = random.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Environment:
    """A private database, namespace and data folder, and the env that points at them."""

    def __init__(self, root: Path, data_dir: Path | None = None, **overrides: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.database = f"chute_test_{tag}"
        self.namespace = f"chute-test-{tag}"
        self.data_dir = data_dir or root / "data"
        for folder in ("inbox", "archive", "quarantine"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.database_url = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        self.env = {
            **os.environ,
            "CHUTE_AMQP_URL": AMQP,
            "CHUTE_DATABASE_URL": self.database_url,
            "CHUTE_DATA_DIR": str(self.data_dir),
            "CHUTE_NAMESPACE": self.namespace,
            "CHUTE_API_HOST": "127.0.0.1",
            "CHUTE_API_PORT": str(self.api_port),
            "CHUTE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)

    @property
    def inbox(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def sql(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.database_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def drop(self, dest: str, content: bytes) -> Path:
        """Write a file beside the inbox, then rename it in: it appears finished."""
        staging = self.data_dir / ".staging"
        tmp = staging / dest
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(content)
        target = self.inbox / dest  # dest may name a subfolder: orders/x.csv
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, target)
        return target

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.api + path, timeout=10, **kwargs)

    def file_state(self, name: str) -> dict[str, Any] | None:
        items = self.get("/files", params={"name": name}).json()["items"]
        return items[0] if items else None

    def wait_final(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        final = ("loaded", "duplicate", "quarantined", "failed")

        def done() -> dict[str, Any] | None:
            rows = self.sql(
                "SELECT file_id::text, state FROM chute.files WHERE name = %s "
                "ORDER BY seq DESC LIMIT 1", (name,))
            if rows and rows[0][1] in final:
                return self.get(f"/files/{rows[0][0]}").json()
            return None

        return wait_until(done, timeout, what=f"{name} to reach a final state")

    def cleanup(self) -> None:
        from chute.rabbitmq.broker import delete_namespace

        try:
            delete_namespace(AMQP, self.namespace)
        finally:
            # Retried: a crash test elsewhere may be restarting the server right now.
            wait_until(self._drop_database, 30, 1.0, what=f"dropping {self.database}")

    def _drop_database(self) -> bool:
        try:
            admin = psycopg2.connect(PG_ADMIN)
        except psycopg2.OperationalError:
            return False
        try:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                cur.execute(f'DROP ROLE IF EXISTS "{self.database}_reader"')
            return True
        except psycopg2.OperationalError:
            return False
        finally:
            admin.close()


class Services:
    """The real services, each `python -m NAME` in its own process."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, as_uid: int | None = None, **env: str
              ) -> subprocess.Popen[bytes]:
        """`as_uid`: run as that user and group, without root's capabilities (util-linux
        setpriv, as docker/entrypoint.sh does), for tests about who owns what."""
        index = len(self.processes)
        log = (self.environment.logs / f"{index:02d}-{name}.log").open("wb")
        user = [] if as_uid is None else [
            "setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", "--"]
        process = subprocess.Popen(
            [*user, sys.executable, "-m", name], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, env={**self.environment.env, **env},
        )
        self.processes.append((name, process))
        return process

    def start_all(self, transformers: int = 1, loaders: int = 1,
                  as_uid: int | None = None) -> None:
        self.start("api")
        self.start("watcher", as_uid)
        for _ in range(transformers):
            self.start("transformer", as_uid)
        for _ in range(loaders):
            self.start("loader", as_uid)
        self.wait_for_api()

    def wait_for_api(self) -> None:
        """The API answers once the database and schema exist (it prepares them first)."""
        wait_until(self._api_up, 30, what="the API to answer /health")

    def _api_up(self) -> bool:
        try:
            return self.environment.get("/health").status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for _name, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _name, process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.environment.logs.iterdir())
        )


@contextmanager
def running_stack(root: Path, request: Any, **overrides: str
                  ) -> Iterator[tuple[Environment, Services]]:
    """All four services on a private environment, for a module's tests to share;
    prints the services' logs if any test failed meanwhile, and cleans up."""
    environment = Environment(root, **overrides)
    services = Services(environment)
    failed_before = request.session.testsfailed
    try:
        services.start_all()
        yield environment, services
    finally:
        services.stop_all()
        if request.session.testsfailed > failed_before:
            print(services.logs())
        environment.cleanup()
