"""One FileArrived event, handled from start to acknowledgement.

The order of effects: claim the file in the database, publish every batch and the
FileDone (each confirmed by the broker), and only then acknowledge the event. A crash
anywhere before the ack redelivers the event; handling it again publishes the batches
the ledger does not have yet (the same batches: their size is fixed per file), and the
loader's ledger drops any it already loaded.
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from chute.datasets.declarations import Dataset
from chute.errors import FileChanged, FileUnusable, Interrupted, MessageDecodeError
from chute.postgres import db
from chute.rabbitmq.broker import BATCHES, Broker, Delivery
from chute.rabbitmq.messages import FileArrived, FileDone, RowBatch
from chute.reading.streams import HashingReader, Limits, scan
from chute.reading.transform import COLUMNAR_FROM_BYTES, transform
from chute.runtime import metrics, placement
from chute.runtime.config import Config
from chute.runtime.folders import Folders, cannot_read
from chute.runtime.service import Stop, give_up_or_retry
from transformer.ranges import plan_file
from transformer.unpack import unpack

log = logging.getLogger(__name__)

class FileHandler:
    def __init__(self, config: Config, conn: db.Connection, broker: Broker, stop: Stop) -> None:
        self.config = config
        self.stop = stop
        self.conn = conn
        self.broker = broker
        self.folders = Folders(config.data_dir)
        self.limits = Limits.of(config)
        # Their files are never duplicates: a state sent again is applied again.
        self.snapshots = [d.name for d in config.datasets if d.mode == "snapshot"]
        self.pending: list[Delivery] = []  # received, not yet started
        # Claimed by _begin_all, not yet handled: (state, batch size, batches loaded).
        self.begun: dict[str, tuple[str, int, set[int]]] = {}
        # The messages that close the files in hand (their last batch or FileDone),
        # published together by `handle_pending` before their events are acked.
        self.closing: list[tuple[str, dict[str, Any], bytes]] = []
        # Held datasets (config.held) whose table fits by now: a rebuild swapped it in.
        self.fitted: set[str] = set()

    def on_file_arrived(self, delivery: Delivery) -> None:
        """Called by pika for each FileArrived: kept for handle_pending, which pika
        calls once it has handed over every delivery that was waiting."""
        self.pending.append(delivery)

    def handle_pending(self) -> None:
        """Handle the FileArrived events received so far (up to the prefetch), then send
        every file's closing message at once, wait for their confirms, and ack them.

        One wait for the broker's confirms per group instead of one per file: a burst
        of small files is mostly that wait. Nothing is acked before its messages are
        confirmed; on a crash, every unacked event is redelivered, and handling a file
        again is idempotent. SIGTERM: the files already handled are sent and acked, the
        rest go back to the queue.
        """
        deliveries, self.pending = self.pending, []
        self.closing = []
        events = {}
        for delivery in deliveries:
            try:
                events[delivery.tag] = FileArrived.decode(delivery.headers, delivery.body)
            except MessageDecodeError as e:
                log.error("undecodable file event", extra={"error": str(e)})
                self.broker.reject(delivery, requeue=False)  # it will never decode
        waiting = self._hold_waiting(events)
        done = [d for d in deliveries if d.tag in waiting]
        self.begun = self._begin_all(list(events.values()))
        for delivery in deliveries:
            if self.stop():
                break  # not started: closing the connection hands it back
            event = events.get(delivery.tag)
            if event is not None and self._settle(delivery, event):
                done.append(delivery)
        self.broker.publish_many(self.closing)
        self.closing = []
        self.broker.ack_all(done)

    def _hold_waiting(self, events: dict[int, FileArrived]) -> set[int]:
        """Take out of `events` the files of held datasets (start-up found their table
        does not fit the declaration) whose table still does not: each stays `received`,
        with why in its error, and its event is acked. `chute rebuild` sends them again
        once the rebuilt table is swapped in; a dataset whose table fits by then (a
        rebuild swapped it in since this worker started) is no longer held."""
        held = {e.dataset for e in events.values()} & (self.config.held - self.fitted)
        if not held:
            return set()
        shapes = db.table_shapes(self.conn)
        for name in held:
            if shapes.get(name) == self.config.datasets[name].shape:
                self.fitted.add(name)
                log.info("dataset no longer held: its table fits", extra={"dataset": name})
        waiting = {tag: e for tag, e in events.items() if e.dataset in held - self.fitted}
        for name in {e.dataset for e in waiting.values()}:
            db.hold_files(self.conn, [e.file_id for e in waiting.values() if e.dataset == name],
                          f"waiting for \"chute rebuild {name}\": the table of dataset "
                          f"{name} does not fit its declaration")
        for tag in waiting:
            del events[tag]
        return set(waiting)

    def _begin_all(self, events: list[FileArrived]) -> dict[str, tuple[str, int, set[int]]]:
        """Claim a group's files for transforming in one transaction (one commit); {}
        when that fails for a reason of its own, so that each file is claimed alone
        and the file at fault meets its own retries."""
        if len(events) < 2:
            return {}
        try:
            return db.begin_processing_many(
                self.conn, [(e.file_id, e.sha256) for e in events], self.config.batch_size,
                self._declarations(events), self.snapshots)
        except ConnectionError:
            raise
        except Exception:  # noqa: BLE001 - each file is tried alone, and fails alone
            log.warning("claiming a group of files failed: one at a time", exc_info=True)
            return {}

    def _declarations(self, events: list[FileArrived]) -> dict[str, str]:
        """The declaration each file is typed under, for its history (chute.files)."""
        found = {e.file_id: self.config.datasets.get(e.dataset) for e in events}
        return {file_id: d.declaration_hash for file_id, d in found.items() if d is not None}

    def _settle(self, delivery: Delivery, event: FileArrived) -> bool:
        """Handle one event; True when it is to be acked once the closing messages are
        confirmed, False when it was already settled (retried later, or failed)."""
        if delivery.redelivered:
            metrics.REDELIVERIES.labels("files").inc()
        try:
            self._handle(event)
        except (ConnectionError, Interrupted):
            raise  # broker or database lost, or stopping: the event is redelivered
        except FileChanged as e:
            # Retrying cannot help: the bytes that were claimed are gone.
            if db.fail_file(self.conn, event.file_id, str(e)):
                metrics.FILES.labels("failed").inc()
            log.error("file failed: changed after it was claimed", extra={
                "file_id": event.file_id, "file_name": event.name})
        except Exception as e:  # a bug or an unexpected file: retry a few times, then fail
            give_up_or_retry(
                self.broker, delivery,
                lambda error: db.fail_file(self.conn, event.file_id, error),
                "transform", e, {"file_id": event.file_id, "file_name": event.name})
            return False
        return True

    def _handle(self, event: FileArrived) -> None:
        context = {"file_id": event.file_id, "file_name": event.name,
                   "dataset": event.dataset}
        begun = self.begun.pop(event.file_id, None) or db.begin_processing_many(
            self.conn, [(event.file_id, event.sha256)], self.config.batch_size,
            self._declarations([event]), self.snapshots)[event.file_id]
        state, batch_size, already_loaded = begun
        if state in ("duplicate", "loaded"):
            # Also repairs a move that a crash interrupted (moving is idempotent).
            placement.archive(self.conn, self.folders, event.file_id, event.name)
            if state == "duplicate":
                metrics.FILES.labels("duplicate").inc()
            log.info("file is a duplicate" if state == "duplicate" else "file already loaded",
                     extra=context)
            return
        if state == "quarantined":
            record = db.get_file(self.conn, event.file_id)
            reason = record.error if record and record.error else "quarantined"
            placement.quarantine(self.conn, self.folders, event.file_id, event.name, reason)
            log.info("file already quarantined", extra=context)
            return
        if state != "process":
            log.info("file already handled", extra=context | {"state": state})
            return
        dataset = self.config.datasets.get(event.dataset)
        if dataset is None and not event.archive:  # declared in the watcher's file, not ours
            raise LookupError(f"dataset {event.dataset!r} is not declared in this "
                              f"transformer's datasets ({self.config.datasets.source})")
        path = self.config.data_dir / event.path
        started = time.monotonic()
        try:
            # O_NOFOLLOW: work/ holds what the watcher claimed and inspected, never a link.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as raw:
                size = os.fstat(raw.fileno()).st_size
                if size != event.size:  # cheap: most changes show in the size
                    raise FileChanged(f"file changed after it was claimed: {size} bytes, "
                                      f"{event.size} when claimed")
                # One fast pass before anything is sent (hashing runs at about 1 GB/s): an
                # edit of the same size made since the claim fails the file with nothing
                # loaded. An edit made during the read itself is caught by the hash taken
                # while reading, before the last batch and the FileDone go out. A
                # compressed file is decompressed in the same pass: damage or a bomb
                # quarantines it before any of its rows is sent.
                claimed, problem = scan(raw, self.limits)
                if claimed != event.sha256:
                    raise FileChanged(f"file changed after it was claimed: sha256 {claimed}, "
                                      f"{event.sha256} when claimed")
                if problem is not None:
                    raise FileUnusable(problem)
                raw.seek(0)
                if event.archive:  # its members go round as arrivals of their own
                    unpack(self.conn, self.config, self.folders, self.limits, event,
                           self.broker.publish_many)
                    return
                assert dataset is not None
                tasks = plan_file(self.conn, self.config, raw, event, dataset, batch_size)
                if tasks is not None:  # its ranges go to every transformer
                    self.closing.extend(tasks)
                    return
                done = self._publish_batches(raw, dataset, event, batch_size,
                                             already_loaded)
        except FileUnusable as e:
            self._quarantine(event, str(e), context)
            return
        except PermissionError:  # its mode changed since the watcher read it
            self._quarantine(event, _cannot_read(path), context)
            return
        except FileNotFoundError:
            if db.fail_file(self.conn, event.file_id, f"file disappeared: {event.path}"):
                metrics.FILES.labels("failed").inc()
            log.error("file disappeared", extra=context)
            return
        metrics.FILE_SECONDS.observe(time.monotonic() - started)
        log.info("file transformed", extra=context | {
            "rows_total": done.rows_total, "batches": done.batches,
            "batches_skipped": len(already_loaded),
            "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    def _quarantine(self, event: FileArrived, reason: str, context: dict[str, Any]) -> None:
        db.finish_file(self.conn, event.file_id, "quarantined", reason)
        placement.quarantine(self.conn, self.folders, event.file_id, event.name, reason)
        metrics.FILES.labels("quarantined").inc()
        log.warning("file quarantined", extra=context | {"reason": reason})

    def _publish_batches(self, raw: BinaryIO, dataset: Dataset, event: FileArrived,
                         batch_size: int, already_loaded: set[int]) -> FileDone:
        """Publish the batches the ledger lacks, the last one closing the file (or a
        FileDone when there is none to send); returns the file's totals.

        The last batch is held back until the whole file has been read and its sha256
        matches the claim, so a changed file never completes, and a file of one batch
        (most files) sends nothing at all when it changed.
        """
        hashing = HashingReader(raw)
        stream = io.BufferedReader(hashing, buffer_size=1 << 16)
        held: RowBatch | None = None
        for message in transform(stream, dataset, event.file_id, event.seq, event.sha256,
                                 batch_size, columnar=event.size >= COLUMNAR_FROM_BYTES,
                                 limits=self.limits):
            if self.stop():
                raise Interrupted(event.file_id)
            if isinstance(message, RowBatch):
                if held is not None:
                    self._publish_batch(held, already_loaded)
                held = message
                continue
            # The FileDone: the whole file has been parsed.
            while stream.read(1 << 20):  # the hash must cover the whole file
                pass
            if hashing.digest.hexdigest() != event.sha256:
                raise FileChanged(f"file changed after it was claimed: sha256 "
                                  f"{hashing.digest.hexdigest()}, {event.sha256} when claimed")
            if held is not None and held.batch_no not in already_loaded:
                # The last batch carries the totals and closes the file: one message,
                # one loader transaction, fewer waits for a file of one batch.
                closing = replace(held, batches_total=message.batches,
                                  rows_total=message.rows_total)
                self.closing.append((BATCHES, *closing.encode()))
                metrics.BATCHES.labels("published").inc()
            else:  # no batch at all, or the last one is loaded already (a retry)
                self.closing.append((BATCHES, *message.encode()))
            return message
        raise AssertionError("transform always ends with FileDone")

    def _publish_batch(self, batch: RowBatch, already_loaded: set[int]) -> None:
        if batch.batch_no in already_loaded:
            self.broker.poll(0)  # no publish to serve the connection: keep heartbeats going
        else:
            self.broker.publish(BATCHES, *batch.encode())
            metrics.BATCHES.labels("published").inc()


def _cannot_read(path: Path) -> str:
    try:
        return cannot_read(path.stat())
    except OSError as e:
        return f"cannot read: {(e.strerror or str(e)).lower()}"
