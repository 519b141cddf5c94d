"""Prometheus metrics of the workers, served on CHUTE_METRICS_PORT when it is set.

Each process counts what it did itself; Prometheus sums over the processes. The API
keeps its own registry (api/metrics.py), served on its /metrics route.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

FILES = Counter("chute_files_total", "Files that reached a final state here, by state",
                ["state"])
FILES_RECEIVED = Counter("chute_files_received_total",
                         "Files claimed from the inbox, by dataset (none: no dataset matched)",
                         ["dataset"])
ROWS = Counter("chute_rows_total", "Rows handled here, by dataset and outcome (loaded or "
               "rejected)", ["dataset", "outcome"])
KEYED_ROWS = Counter("chute_keyed_rows_total", "Loaded rows of keyed datasets, by dataset "
                     "and outcome (inserted, replaced, ignored as older than the version "
                     "loaded; deleted: removed by a snapshot)", ["dataset", "outcome"])
BATCHES = Counter("chute_batches_total", "Batch messages handled, by outcome "
                  "(published, loaded, skipped as already loaded, failed)", ["outcome"])
REDELIVERIES = Counter("chute_redeliveries_total",
                       "Messages that arrived again after an earlier delivery", ["queue"])
BATCH_SECONDS = Histogram("chute_batch_seconds", "Time to load one batch (COPY + commit; "
                          "batches loaded together each count their share)",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FILE_SECONDS = Histogram("chute_file_seconds",
                         "Time to handle one file in this service (transform: read, clean "
                         "and publish; watcher: hash and announce)",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
CONNECTED = Gauge("chute_connected", "1 while connected to the peer, else 0", ["peer"])
MOVE_FAILURES = Counter("chute_file_move_failures_total",
                        "Moves of a finished file out of work/ that failed (each is tried "
                        "again later, with a growing pause), by destination", ["to"])
RESTARTS = Counter("chute_session_restarts_total",
                   "Sessions of this worker that ended in an unexpected error")


def serve(port: int | None) -> None:
    """Start the metrics endpoint in a background thread (no-op without a port): the
    metrics on every path, and the worker's own /health (chute.runtime.health)."""
    from chute.runtime.health import health_app

    if port is not None:
        # As prometheus_client's start_http_server, with /health beside the metrics.
        server = make_server("0.0.0.0", port, health_app(make_wsgi_app()),  # noqa: S104
                             ThreadingWSGIServer, handler_class=_SilentHandler)
        threading.Thread(target=server.serve_forever, daemon=True,
                         name="metrics").start()
    for peer in ("broker", "database"):
        CONNECTED.labels(peer).set(0)
