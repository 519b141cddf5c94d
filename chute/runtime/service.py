"""What every service shares: start-up, signals, and reconnecting with backoff.

The retry policy lives here and nowhere else: a worker's session raises
BrokerUnavailable or DatabaseUnavailable, and `run_with_reconnect` waits (1 s more
each time, at most 30 s, reset once a session has run for a while) and starts again.
Unacknowledged messages go back to their queue when a connection drops, and every
handler is idempotent, so starting over is always safe.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import NoReturn

from chute.errors import (
    BrokerUnavailable,
    ConfigError,
    DatabaseUnavailable,
    DataFolderUnusable,
    DeclarationStale,
    Interrupted,
)
from chute.postgres import db
from chute.rabbitmq.broker import Broker, Delivery
from chute.runtime import logs, metrics
from chute.runtime.config import Config
from chute.runtime.folders import Folders
from chute.runtime.health import CANNOT_WORK, HEALTH, RESTARTING, WAITING

log = logging.getLogger(__name__)

MAX_DELAY = 30.0
HEALTHY_SESSION = 30.0  # a session that ran this long resets the delay, and is healthy
# Failed sessions in a row before the worker reports itself (chute.runtime.health): one failure
# is an incident that the next session usually repairs; two are a loop worth a look.
REPORT_AFTER = 2


# Failures of our own (a row PostgreSQL refuses, an unreadable file, a bug) before a
# file is failed. Crashes and outages are not counted here: see Broker.retry_later.
MAX_ATTEMPTS = 3


class Stop:
    """Set by SIGTERM or SIGINT: the message in hand finishes, nothing new starts."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        self.event.set()

    def __call__(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def load_config(service: str) -> Config:
    """Read the configuration or exit with one clear line (never a traceback)."""
    try:
        config = Config.from_env()
    except ConfigError as e:
        print(f"chute {service}: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.setup(service, config.log_level)
    return config


def prepare_database(config: Config, stop: Stop, service: str) -> frozenset[str]:
    """Create the database, schema and tables if missing; waits for PostgreSQL to come up.
    A declaration the database cannot take holds that dataset, with its one line on
    stderr (naming `chute rebuild`): the names of those held."""
    refused: dict[str, str] = {}

    def prepare() -> None:
        refused.update(db.prepare(config.database_url, config.datasets, config.reader_role))

    run_with_reconnect(prepare, stop, once=True)
    for line in refused.values():
        print(f"chute {service}: dataset held: {line}", file=sys.stderr, flush=True)
        log.error("dataset held", extra={"reason": line})
    return frozenset(refused)


def run_with_reconnect(session: Callable[[], None], stop: Stop, once: bool = False) -> None:
    """Run `session` until `stop`; on a lost broker or database, back off and run it again.

    With once=True, return after the first session that completes. Sessions that keep
    failing are never silent: from the REPORT_AFTER-th in a row, the worker reports that
    it is restarting (an error of its own) or waiting (for the broker or the database),
    with the last error in one line, until a session has run HEALTHY_SESSION seconds.
    """
    delay = 1.0
    failures = 0
    while not stop():
        started = time.monotonic()
        healthy = threading.Timer(HEALTHY_SESSION, _healthy)
        healthy.daemon = True
        healthy.start()
        try:
            session()
            if once:
                return
        except (DataFolderUnusable, DeclarationStale):
            raise  # no retry helps: the worker stops (cannot_work)
        except (BrokerUnavailable, DatabaseUnavailable) as e:
            peer = "broker" if isinstance(e, BrokerUnavailable) else "database"
            metrics.CONNECTED.labels(peer).set(0)
            log.warning("connection lost, retrying", extra={"error": str(e), "retry_in_s": delay})
            failures += 1
            if failures >= REPORT_AFTER:
                HEALTH.report(WAITING, f"cannot reach the {peer}: {_one_line(e)}", "connection")
        except Exception as e:
            # A bug must not kill the worker: its message goes back to the queue, and the
            # broker's delivery limit dead-letters a message that keeps failing.
            log.exception("session failed, restarting", extra={"retry_in_s": delay})
            metrics.RESTARTS.inc()
            failures += 1
            if failures >= REPORT_AFTER:
                HEALTH.report(RESTARTING, f"{failures} sessions failed in a row, the last "
                              f"with {type(e).__name__}: {_one_line(e)}")
        finally:
            healthy.cancel()
        if time.monotonic() - started > HEALTHY_SESSION:
            delay, failures = 1.0, 0
        stop.wait(delay)
        delay = min(delay + 1.0, MAX_DELAY)


def _healthy() -> None:
    """A session has run HEALTHY_SESSION seconds: whatever loop it was in is over."""
    HEALTH.clear(RESTARTING)
    HEALTH.clear(WAITING, "connection")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or repr(error)
    return text if len(text) <= 300 else text[:297] + "..."


def start(service: str) -> tuple[Config, Stop]:
    """What every worker does first: signals, configuration, the data folder, metrics,
    the schema.

    A worker that cannot write the data folder never serves its metrics (so its health
    check fails) and stops at once with one line: see cannot_work.
    """
    stop = Stop()
    stop.install()  # first: a SIGTERM during start-up must also stop us cleanly
    config = load_config(service)
    problem = Folders(config.data_dir).problem()
    if problem:
        cannot_work(config, stop, service, problem)
    HEALTH.bind(config.database_url, service)
    metrics.serve(config.metrics_port)
    held = prepare_database(config, stop, service)
    run_with_reconnect(lambda: db.clear_problems(config.database_url, service), stop,
                       once=True)
    return replace(config, held=held), stop


def cannot_work(config: Config, stop: Stop, service: str, problem: str) -> NoReturn:
    """Say why this worker cannot work, in one line on stderr and in the database (where
    the API's /ready and status page read it), and exit 1; a supervisor that restarts
    the worker gets the same line, and a fresh report, each time."""
    print(f"chute {service}: cannot work: {problem}", file=sys.stderr, flush=True)
    prepare_database(config, stop, service)
    run_with_reconnect(
        lambda: db.report_problem(config.database_url, service, HEALTH.instance, problem,
                                  CANNOT_WORK), stop, once=True)
    raise SystemExit(1)


def run_consumer(config: Config, stop: Stop,
                 subscribe: Callable[[db.Connection, Broker], Callable[[], None] | None]
                 ) -> None:
    """Connect, let `subscribe` register its consumers, and serve them until `stop`,
    reconnecting after any outage. What `subscribe` returns, if anything, runs after
    each round of deliveries (Broker.run_until)."""

    def session() -> None:
        # The database first: while it is down, no message is taken from the broker
        # (taking and returning one would count as a delivery).
        conn = db.connect(config.database_url)
        try:
            broker = Broker(config.amqp_url, config.namespace)
            try:
                after_poll = subscribe(conn, broker)
                broker.run_until(stop, after_poll)
            except Interrupted:
                pass  # closing the connection below hands the message back to its queue
            finally:
                broker.close()  # unacknowledged messages go back to their queue
        finally:
            conn.close()

    try:
        run_with_reconnect(session, stop)
    except DeclarationStale as e:  # the message in hand went back with the connection
        cannot_work(config, stop, HEALTH.service or "worker", str(e))


def give_up_or_retry(broker: Broker, delivery: Delivery, fail: Callable[[str], bool],
                     what: str, error: Exception, context: dict[str, object]) -> None:
    """The one place a handler's failure becomes a retry or a verdict; call it from the
    `except` that caught `error`. After MAX_ATTEMPTS failures `fail(message)` marks the
    file failed and the message goes to the dead-letter queue; before that, the message
    goes back (counted) after a pause that grows with each failure."""
    failures = delivery.failures + 1
    context = context | {"failures": failures}
    if failures >= MAX_ATTEMPTS:
        if fail(f"{what} failed {failures} times, last: {error!r}"):
            metrics.FILES.labels("failed").inc()
        log.exception("file failed", extra=context)
        broker.reject(delivery, requeue=False)  # kept in {ns}.dead for people
    else:
        log.exception(f"{what} failed, will retry", extra=context)
        broker.pause(failures)  # a failure that needs a moment to clear
        broker.retry_later(delivery)
