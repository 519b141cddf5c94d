"""One S3 object, from its event to a final state: the transformer's and the loader's work
in one process, on their core (chute.reading.transform, chute.postgres.db), so the
rules, row ids, ledger, rejects and file states are theirs. No broker: each batch goes
straight to load_batch.

    register_file                     # idempotent: the file id comes from the object version
    begin_processing                  # a duplicate? already final? batch size fixed per file
    for batch in transform(...):      # the same batches on every attempt
        deadline.check()              # too little time for another: raise, Lambda retries
        load_batch                    # rows + rejects + ledger row in one transaction
    record_done                       # every batch in: the file is `loaded`

A retried invocation runs the same steps. Its file is registered already, so it is not
hashed again; load_batch finds the batches already in the ledger and skips them without
a COPY, so loading resumes where the last attempt stopped (reading resumes at the start:
batches are cut by record count, and only parsing tells where a record ends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aws.objects import ObjectGone, ObjectRef, Objects, is_quarantined, refs_from_event
from chute.datasets.declarations import Dataset
from chute.errors import DatabaseUnavailable, FileUnusable
from chute.postgres import db
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading.streams import Limits, problem_of
from chute.reading.transform import transform
from chute.runtime.config import Config
from watcher.readiness import is_candidate

log = logging.getLogger(__name__)

RESERVE_MS = 10_000  # never start a batch with less left than this


class OutOfTime(Exception):
    """Too little time left for another batch. Raised out of the handler so that Lambda
    invokes it again; the batches loaded so far are in the ledger and stay there."""


class Deadline:
    """Says, between batches, whether another batch fits in the invocation's time.

    Asks the Lambda context exactly once per batch. A batch needs the reserve or twice
    the slowest batch so far (reading, cleaning and loading it), whichever is more.
    """

    def __init__(self, remaining_ms: Callable[[], int], reserve_ms: int = RESERVE_MS) -> None:
        self.remaining_ms = remaining_ms
        self.reserve_ms = reserve_ms
        self.slowest_ms = 0.0
        self._last: float | None = None

    def check(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.slowest_ms = max(self.slowest_ms, (now - self._last) * 1000)
        self._last = now
        needed = max(self.reserve_ms, 2 * self.slowest_ms)
        left = self.remaining_ms()
        if left < needed:
            raise OutOfTime(f"{left} ms left, another batch needs {needed:.0f} ms")


def ingest_object(conn: db.Connection, objects: Objects, config: Config, ref: ObjectRef,
                  deadline: Deadline) -> str:
    """Take one object to its final state, or as far as time allows; returns its state."""
    file_id = ref.file_id
    context = {"file_id": file_id, "file_name": ref.name, "key": ref.key}
    record = db.get_file(conn, file_id)
    if record is None:
        started = time.monotonic()
        try:
            sha256, size = objects.digest(ref)
        except ObjectGone as e:  # gone before it was read: there is no arrival to record
            log.warning("object gone before it was read", extra=context | {"reason": str(e)})
            return "gone"
        matched = config.datasets.for_path(ref.inbox_path)
        # Named by its path below inbox/, as a file of the local inbox is.
        record = db.register_file(conn, file_id, ref.inbox_path, ref.uri, sha256, size,
                                  matched.name if matched else None)
        log.info("file received", extra=context | {
            "bytes": size, "sha256": sha256, "dataset": record.dataset,
            "duration_ms": round((time.monotonic() - started) * 1000, 1)})
    state, batch_size = db.begin_processing(
        conn, file_id, config.batch_size,
        [d.name for d in config.datasets if d.mode == "snapshot"])
    if state != "process":
        log.info("file already handled" if state != "duplicate" else "file is a duplicate",
                 extra=context | {"state": state})
        return state
    dataset = config.datasets.get(record.dataset) if record.dataset else None
    if dataset is None:
        return _quarantine(conn, objects, ref, config.datasets.no_match(ref.inbox_path), context)
    started = time.monotonic()
    limits = Limits.of(config)
    try:
        with objects.open(ref) as stream:  # a compressed object is checked whole first
            problem = problem_of(stream, limits)
        if problem is not None:
            raise FileUnusable(problem)
        with objects.open(ref) as stream:
            messages = transform(stream, dataset, file_id, record.seq, record.sha256,
                                 batch_size, limits=limits)
            done = _load_batches(conn, dataset, messages, deadline)
    except FileUnusable as e:
        return _quarantine(conn, objects, ref, str(e), context)
    except ObjectGone as e:
        return _disappeared(conn, file_id, str(e), context)
    except OutOfTime as e:
        log.warning("out of time: stopping between batches, a retry resumes",
                    extra=context | {"reason": str(e)})
        raise
    final = db.get_file(conn, file_id)
    log.info("file transformed and loaded", extra=context | {
        "rows_total": done.rows_total, "batches": done.batches,
        "state": final.state if final else None,
        "duration_ms": round((time.monotonic() - started) * 1000, 1)})
    return final.state if final else "unknown"


def _quarantine(conn: db.Connection, objects: Objects, ref: ObjectRef, reason: str,
                context: dict[str, Any]) -> str:
    # Copy first, record last: a retry after a crash in between does it all again.
    try:
        where = objects.quarantine(ref, ref.file_id, reason)
    except ObjectGone as e:
        return _disappeared(conn, ref.file_id, str(e), context)
    db.set_path(conn, ref.file_id, where)
    db.finish_file(conn, ref.file_id, "quarantined", reason)
    log.warning("file quarantined", extra=context | {"reason": reason, "copy": where})
    return "quarantined"


def _disappeared(conn: db.Connection, file_id: str, reason: str,
                 context: dict[str, Any]) -> str:
    """Registered, then gone or replaced: `failed`, as a file that vanishes from work/."""
    db.fail_file(conn, file_id, reason)
    log.error("file disappeared", extra=context | {"reason": reason})
    return "failed"


def _load_batches(conn: db.Connection, dataset: Dataset,
                  messages: Iterable[RowBatch | FileDone], deadline: Deadline) -> FileDone:
    for message in messages:
        if isinstance(message, FileDone):
            db.record_done(conn, message, [dataset])
            return message
        deadline.check()
        db.load_batch(conn, dataset, message)  # a batch already in the ledger is skipped
    raise AssertionError("transform always ends with FileDone")


class S3Ingest:
    """The ingest function for one container's life: configuration, S3 and one database
    connection, reused by every invocation (Lambda runs one at a time per container)."""

    def __init__(self, config: Config, s3_client: Any) -> None:
        self.config = config
        self.objects = Objects(s3_client)
        self.conn: db.Connection | None = None

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Every object the event names, in order. Raises (so Lambda retries the event)
        when one cannot be finished now; those already final are a no-op next time."""
        deadline = Deadline(context.get_remaining_time_in_millis)
        files = []
        for ref in refs_from_event(event):
            # The same rule as the inbox: *.csv in any case or a key a dataset's `match`
            # fits, hidden names left alone. Our own quarantine copies never trigger a
            # load, whatever the trigger's filter.
            wanted = (is_candidate(Path(ref.name))
                      or self.config.datasets.for_path(ref.inbox_path) is not None)
            if is_quarantined(ref.key) or not wanted or ref.name.startswith("."):
                log.info("object ignored", extra={"key": ref.key})
                continue
            state = self._ingest(ref, deadline)
            files.append({"file_id": ref.file_id, "key": ref.key, "state": state})
        return {"files": files}

    def _ingest(self, ref: ObjectRef, deadline: Deadline) -> str:
        reused = self.conn is not None
        try:
            return self._ingest_once(ref, deadline)
        except DatabaseUnavailable:
            self.close()
            if not reused:
                raise
            # A connection kept while the container was frozen may have been closed by the
            # server: try once more on a new one (ingesting is idempotent) before failing.
            log.warning("database connection lost, reconnecting", extra={"key": ref.key})
            return self._ingest_once(ref, deadline)

    def _ingest_once(self, ref: ObjectRef, deadline: Deadline) -> str:
        if self.conn is None or self.conn.closed:
            self.conn = db.connect(self.config.database_url)
        return ingest_object(self.conn, self.objects, self.config, ref, deadline)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
