"""Batches into PostgreSQL: the one place that decides ack or reject for the loader.

    batch = RowBatch.decode(...)          # undecodable: dead-lettered, never retried
    with one transaction:                 # rows + rejects + ledger row, or nothing
        load_batch(...)
    move the file if it is now loaded     # idempotent
    ack                                   # only after the commit and the move

Small batches received together (a burst of small files: up to CHUTE_PREFETCH) load
in one transaction, their files move, their paths are recorded in one more, and then
they are acked: two commits for the group instead of two per file. A group that fails
is loaded again one batch at a time, so that a batch at fault fails alone.

A crash between the commit and the ack redelivers the batch; its ledger row makes the
second delivery a no-op, and a file it finds loaded is moved again (a no-op if it was).
When the last piece of a file (its final batch or its FileDone, in either order)
commits, the file becomes `loaded` and moves to archive/.
"""

from __future__ import annotations

import logging
import time
import uuid

from chute.datasets.declarations import Dataset
from chute.errors import MessageDecodeError, WorkerStops
from chute.postgres import db
from chute.rabbitmq.broker import Broker, Delivery
from chute.rabbitmq.messages import FileDone, RowBatch, kind_of
from chute.runtime import metrics, placement
from chute.runtime.config import Config
from chute.runtime.folders import Folders
from chute.runtime.service import give_up_or_retry

log = logging.getLogger(__name__)

# x-death reasons, in words for the file's error.
# Batches this small (rows and rejects, bytes) load in a group (see handle_pending):
# for them the commit, not the rows, is most of the cost. Larger ones load alone, so a
# group's transaction stays short and a failure redoes little.
GROUP_BYTES = 256 << 10

_DEATH_REASONS = {
    "rejected": "given up after repeated failures",
    "delivery_limit": "redelivered too many times (its worker kept crashing)",
}


class BatchHandler:
    def __init__(self, config: Config, conn: db.Connection, broker: Broker) -> None:
        self.config = config
        self.conn = conn
        self.broker = broker
        self.folders = Folders(config.data_dir)
        self.pending: list[Delivery] = []  # received, not yet handled

    def on_batch(self, delivery: Delivery) -> None:
        """Called by pika for each message of the batches queue: kept for
        handle_pending, which runs once pika has handed over what was waiting."""
        self.pending.append(delivery)

    def handle_pending(self) -> None:
        """Handle the batches received so far: small ones of unkeyed datasets in one
        transaction, the others one at a time, in the order received."""
        deliveries, self.pending = self.pending, []
        group: list[tuple[Delivery, Dataset, RowBatch]] = []
        alone: list[tuple[Delivery, RowBatch | FileDone]] = []
        for delivery in deliveries:
            message = self._decoded(delivery)
            if message is None:
                continue
            dataset = (self.config.datasets.get(message.dataset)
                       if isinstance(message, RowBatch) else None)
            if (dataset is not None and not dataset.key and not delivery.redelivered
                    and len(message.rows) + len(message.rejects) <= GROUP_BYTES):
                group.append((delivery, dataset, message))
            else:
                alone.append((delivery, message))
        if len(group) > 1:
            # In file order: two loaders' groups then lock the files' rows (completing
            # them) in the same order. A deadlock is still possible with redelivered
            # batches or a transformer's claim (sha256 order); PostgreSQL breaks it, and
            # the group rolled back is loaded one batch at a time.
            group.sort(key=lambda item: (item[2].file_id, item[2].batch_no))
            self._load_group(group)
        else:
            alone = [(d, m) for d, _dataset, m in group] + alone
        for delivery, message in alone:
            self._load(delivery, message)

    def _load_group(self, group: list[tuple[Delivery, Dataset, RowBatch]]) -> None:
        started = time.monotonic()
        try:
            completed = self.broker.keep_alive_during(lambda: db.load_batches(
                self.conn, [(dataset, batch) for _d, dataset, batch in group]))
        except (ConnectionError, WorkerStops):
            raise
        except Exception:  # noqa: BLE001 - each batch is loaded alone, and fails alone
            log.warning("loading a group of batches failed: one at a time", exc_info=True)
            for delivery, _dataset, batch in group:
                self._load(delivery, batch)
            return
        share = (time.monotonic() - started) / len(group)  # as the watcher's files
        for _ in group:
            metrics.BATCH_SECONDS.observe(share)
        moved = {batch.file_id: name for (_d, _ds, batch), name
                 in zip(group, completed, strict=True) if name is not None}
        if moved:
            self._archive_all(list(moved.items()))
        self.broker.ack_all([delivery for delivery, _dataset, _batch in group])

    def _decoded(self, delivery: Delivery) -> RowBatch | FileDone | None:
        try:
            message = self._decode(delivery)
        except MessageDecodeError as e:
            log.error("undecodable batch message", extra={"error": str(e)})
            self.broker.reject(delivery, requeue=False)  # it will never decode
            return None
        if delivery.redelivered:
            metrics.REDELIVERIES.labels("batches").inc()
        return message

    def _load(self, delivery: Delivery, message: RowBatch | FileDone) -> None:
        started = time.monotonic()
        try:
            # In a helper thread, so that a slow COPY does not starve the heartbeats.
            if isinstance(message, RowBatch):
                dataset = self.config.datasets.get(message.dataset)
                if dataset is None:  # another service's datasets file declares it
                    raise LookupError(f"dataset {message.dataset!r} is not declared in this "
                                      f"loader's datasets ({self.config.datasets.source})")
                loaded = self.broker.keep_alive_during(
                    lambda: db.load_batch(self.conn, dataset, message))
            else:
                loaded = self.broker.keep_alive_during(
                    lambda: db.record_done(self.conn, message, list(self.config.datasets)))
        except (ConnectionError, WorkerStops):
            raise  # database or broker lost (the session restarts), or a stale worker
            # (it stops): the batch is redelivered
        except Exception as e:  # a bug or a row PostgreSQL refuses: retry, then fail the file
            give_up_or_retry(
                self.broker, delivery,
                lambda error: self.broker.keep_alive_during(
                    lambda: db.fail_file(self.conn, message.file_id, error)),
                "load", e, {"file_id": message.file_id})
            return
        if isinstance(message, RowBatch):
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
            log.debug("batch loaded", extra={
                "file_id": message.file_id, "batch_no": message.batch_no,
                "rows": message.row_count, "rejects": message.reject_count,
                "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        if loaded is not None:
            self._archive_all([(message.file_id, loaded)])
        self.broker.ack(delivery)

    def on_dead_letter(self, delivery: Delivery) -> None:
        """A message the broker gave up on: its file is failed, with the reason.

        The first reason stays: a handler that gave up has already failed the file with
        its own error. Always acked: {ns}.dead keeps the message for people to read.
        """
        file_id = _file_id(delivery.headers.get("file_id"))
        if file_id is not None:
            death = (delivery.headers.get("x-death") or [{}])[0]
            reason = str(death.get("reason", "rejected"))
            error = (f"a {kind_of(delivery.headers)} message was dead-lettered from "
                     f"{death.get('queue', 'its queue')}: {_DEATH_REASONS.get(reason, reason)}")
            try:
                failed = self.broker.keep_alive_during(
                    lambda: db.fail_file(self.conn, file_id, error))
            except ConnectionError:
                raise
            except Exception:  # a notice that cannot be recorded must not loop forever
                log.exception("cannot record a dead-lettered message", extra={
                    "file_id": file_id})
            else:
                if failed:
                    metrics.FILES.labels("failed").inc()
                log.error("message dead-lettered", extra={
                    "file_id": file_id, "reason": reason, "file_failed_now": failed})
        self.broker.ack(delivery)

    def _archive_all(self, files: list[tuple[str, str]]) -> None:
        """Move loaded files (file_id, name) to archive/; a move that fails leaves its
        file in work/ for the watcher's repair, and never undoes the load."""
        # ConnectionError (recording the paths): the batches are redelivered, and the
        # moves done again from what was recorded (see placement).
        # A move that fails is recorded on its file by placement, which logs it; the
        # watcher's repair tries it again later.
        moved, _failed = self.broker.keep_alive_during(
            lambda: placement.archive_all(self.conn, self.folders, files))
        for file_id, name, _dest in moved:
            metrics.FILES.labels("loaded").inc()
            log.info("file loaded", extra={"file_id": file_id, "file_name": name})

    @staticmethod
    def _decode(delivery: Delivery) -> RowBatch | FileDone:
        message: RowBatch | FileDone
        if kind_of(delivery.headers) == FileDone.KIND:
            message = FileDone.decode(delivery.headers, delivery.body)
        else:
            message = RowBatch.decode(delivery.headers, delivery.body)
        if _file_id(message.file_id) is None:
            raise MessageDecodeError(f"file_id is not a uuid: {message.file_id!r}")
        return message


def _file_id(value: object) -> str | None:
    """The file id as text, or None when it is not a uuid (it could match no file)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None
