"""What a running worker says about itself: the API's /ready and status page read it
from chute.worker_problems, the container's health check from /health on the metrics
port.

A problem has a kind, a phrase the API puts after the service's name:
- "cannot work": the worker stopped for good (service.cannot_work);
- "is restarting": its sessions keep failing (service.run_with_reconnect);
- "is waiting": something outside holds it back (the broker's alarm, a full disk).

Reports are best effort and never raise: a worker that cannot reach the database to say
so is shown by /ready's own check of the database. The API counts a report for a few
minutes (api/queries.py PROBLEM_SECONDS), so a problem that lasts is reported again
every REPORT_EVERY seconds.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from chute.postgres import db

log = logging.getLogger(__name__)

CANNOT_WORK = "cannot work"
RESTARTING = "is restarting"
WAITING = "is waiting"

REPORT_EVERY = 60.0


class Health:
    """One per process (HEALTH below): bound to its service at start."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.service: str | None = None
        self.instance = socket.gethostname()
        self._lock = threading.Lock()  # pika's callbacks and the main thread both report
        # kind -> {topic: (text, monotonic time reported)}; a kind's row says every topic
        self._problems: dict[str, dict[str, tuple[str, float]]] = {}

    def bind(self, url: str, service: str) -> None:
        self.url, self.service = url, service

    def report(self, kind: str, text: str, topic: str = "") -> None:
        """Say that `kind` holds now, why; `topic` keeps separate causes of one kind
        apart (a full disk and a blocked broker are both "is waiting")."""
        with self._lock:
            topics = self._problems.setdefault(kind, {})
            old = topics.get(topic)
            if old is not None and old[0] == text and time.monotonic() - old[1] < REPORT_EVERY:
                return
            topics[topic] = (text, time.monotonic())
            self._write(kind)

    def clear(self, kind: str, topic: str = "") -> None:
        with self._lock:
            topics = self._problems.get(kind)
            if not topics or topic not in topics:
                return
            del topics[topic]
            self._write(kind)

    def problem(self, kind: str) -> str | None:
        """What this process reports of `kind` now, or None."""
        with self._lock:
            topics = self._problems.get(kind)
            return "; ".join(text for text, _at in topics.values()) if topics else None

    def _write(self, kind: str) -> None:
        if self.url is None or self.service is None:
            return
        text = "; ".join(text for text, _at in self._problems.get(kind, {}).values())
        try:
            if text:
                db.report_problem(self.url, self.service, self.instance, text, kind)
            else:
                db.clear_problem(self.url, self.service, self.instance, kind)
        except Exception as e:  # noqa: BLE001 - never the reason a worker stops
            log.warning("cannot record this worker's state", extra={
                "kind": kind, "problem": text, "error": repr(e)})


HEALTH = Health()


def health_app(metrics_app: Any) -> Any:
    """The metrics port's WSGI app: /health answers 503 while this worker is restarting
    (the container health check), every other path the Prometheus metrics."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/health":
            return metrics_app(environ, start_response)
        problem = HEALTH.problem(RESTARTING)
        status = "503 Service Unavailable" if problem else "200 OK"
        body = (f"{HEALTH.service} {RESTARTING}: {problem}\n" if problem else "ok\n").encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app
