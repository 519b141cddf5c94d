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

from chute import db, logs, metrics
from chute.broker import BrokerUnavailable
from chute.config import Config, ConfigError
from chute.db import DatabaseUnavailable

log = logging.getLogger(__name__)

MAX_DELAY = 30.0
HEALTHY_SESSION = 30.0  # a session that ran this long resets the delay


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


def prepare_database(config: Config, stop: Stop) -> None:
    """Create the database and schema if missing; waits for PostgreSQL to come up."""

    def session() -> None:
        db.ensure_database(config.database_url)
        conn = db.connect(config.database_url)
        try:
            db.apply_schema(conn, config.table, config.reader_role)
        finally:
            conn.close()

    run_with_reconnect(session, stop, once=True)


def run_with_reconnect(session: Callable[[], None], stop: Stop, once: bool = False) -> None:
    """Run `session` until `stop`; on a lost broker or database, back off and run it again.

    With once=True, return after the first session that completes.
    """
    delay = 1.0
    while not stop():
        started = time.monotonic()
        try:
            session()
            if once:
                return
        except (BrokerUnavailable, DatabaseUnavailable) as e:
            metrics.CONNECTED.labels(
                "broker" if isinstance(e, BrokerUnavailable) else "database").set(0)
            log.warning("connection lost, retrying", extra={"error": str(e), "retry_in_s": delay})
        except Exception:
            # A bug must not kill the worker: its message goes back to the queue, and the
            # broker's delivery limit dead-letters a message that keeps failing.
            log.exception("session failed, restarting", extra={"retry_in_s": delay})
        if time.monotonic() - started > HEALTHY_SESSION:
            delay = 1.0
        stop.wait(delay)
        delay = min(delay + 1.0, MAX_DELAY)
