"""Batches into PostgreSQL: the one place that decides ack or reject for the loader.

    batch = RowBatch.decode(...)          # undecodable: dead-lettered, never retried
    with one transaction:                 # rows + rejects + ledger row, or nothing
        load_batch(...)
    ack                                   # only after the commit

A crash between the commit and the ack redelivers the batch; its ledger row makes the
second delivery a no-op. When the last piece of a file (its final batch or its
FileDone, in either order) commits, the file becomes `loaded` and moves to archive/.
"""

from __future__ import annotations

import logging
import time

from chute import db
from chute.broker import Broker, Delivery
from chute.config import Config
from chute.folders import Folders
from chute.messages import FileDone, MessageDecodeError, RowBatch, kind_of

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class BatchHandler:
    def __init__(self, config: Config, conn: db.Connection, broker: Broker) -> None:
        self.config = config
        self.conn = conn
        self.broker = broker
        self.folders = Folders(config.data_dir)

    def on_batch(self, delivery: Delivery) -> None:
        """Called by pika for each message of the batches queue."""
        try:
            message = self._decode(delivery)
        except MessageDecodeError as e:
            log.error("undecodable batch message", extra={"error": str(e)})
            self.broker.reject(delivery, requeue=False)  # it will never decode
            return
        started = time.monotonic()
        try:
            if isinstance(message, RowBatch):
                completed = db.load_batch(self.conn, self.config.table, message)
            else:
                completed = db.record_done(self.conn, message)
        except ConnectionError:
            raise  # database or broker lost: the session restarts, the batch is redelivered
        except Exception as e:  # a bug or a row PostgreSQL refuses: retry, then fail the file
            self._on_error(delivery, message.file_id, e)
            return
        self.broker.ack(delivery)
        if isinstance(message, RowBatch):
            log.debug("batch loaded", extra={
                "file_id": message.file_id, "batch_no": message.batch_no,
                "rows": message.row_count, "rejects": message.reject_count,
                "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        if completed is not None:
            self.folders.to_archive(message.file_id, completed)
            log.info("file loaded", extra={"file_id": message.file_id, "file_name": completed})

    def on_dead_letter(self, delivery: Delivery) -> None:
        """A message the broker gave up on: its file is failed, with the reason."""
        file_id = delivery.headers.get("file_id")
        if file_id:
            deaths = delivery.headers.get("x-death") or [{}]
            reason = deaths[0].get("reason", "rejected")
            db.finish_file(self.conn, str(file_id), "failed",
                           f"a {kind_of(delivery.headers)} message was dead-lettered ({reason})")
            log.error("file failed: message dead-lettered", extra={"file_id": file_id})
        self.broker.ack(delivery)

    @staticmethod
    def _decode(delivery: Delivery) -> RowBatch | FileDone:
        if kind_of(delivery.headers) == FileDone.KIND:
            return FileDone.decode(delivery.headers, delivery.body)
        return RowBatch.decode(delivery.headers, delivery.body)

    def _on_error(self, delivery: Delivery, file_id: str, error: Exception) -> None:
        context = {"file_id": file_id, "deliveries": delivery.delivery_count + 1}
        if delivery.delivery_count + 1 >= MAX_ATTEMPTS:
            db.finish_file(self.conn, file_id, "failed", f"load failed: {error!r}")
            log.exception("file failed", extra=context)
            self.broker.reject(delivery, requeue=False)
        else:
            log.exception("batch failed, will retry", extra=context)
            time.sleep(1)
            self.broker.reject(delivery, requeue=True)
