"""One FileArrived event, handled from start to acknowledgement.

The order of effects: claim the file in the database, publish every batch and the
FileDone (each confirmed by the broker), and only then acknowledge the event. A crash
anywhere before the ack redelivers the event; handling it again publishes the same
batches, which the loader's ledger drops.
"""

from __future__ import annotations

import logging
import time
from typing import BinaryIO

from chute import db
from chute.broker import BATCHES, DELIVERY_LIMIT, Broker, Delivery
from chute.config import Config
from chute.folders import Folders
from chute.messages import FileArrived, FileDone, MessageDecodeError
from chute.service import Stop
from chute.transform import FileUnusable, transform

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """SIGTERM arrived mid-file: stop now and leave the event unacknowledged.

    The broker hands it to another transformer, which publishes the same batches again;
    the ledger keeps the ones already loaded from being loaded twice.
    """


class FileHandler:
    def __init__(self, config: Config, conn: db.Connection, broker: Broker,
                 stop: Stop) -> None:
        self.config = config
        self.stop = stop
        self.conn = conn
        self.broker = broker
        self.folders = Folders(config.data_dir)

    def on_file_arrived(self, delivery: Delivery) -> None:
        """Called by pika for each FileArrived; settles the delivery exactly once."""
        try:
            event = FileArrived.decode(delivery.headers, delivery.body)
        except MessageDecodeError as e:
            log.error("undecodable file event", extra={"error": str(e)})
            self.broker.reject(delivery, requeue=False)  # it will never decode
            return
        try:
            self._handle(event)
        except (ConnectionError, Interrupted):
            raise  # broker or database lost: the session restarts, the event is redelivered
        except Exception as e:  # a bug or an unexpected file: retry a few times, then fail
            self._on_error(delivery, event, e)
            return
        self.broker.ack(delivery)

    def _handle(self, event: FileArrived) -> None:
        context = {"file_id": event.file_id, "file_name": event.name}
        state, batch_size = db.begin_processing(self.conn, event.file_id, self.config.batch_size)
        if state == "duplicate":
            self.folders.to_archive(event.file_id, event.name)
            log.info("file is a duplicate", extra=context)
            return
        if state != "process":
            log.info("file already handled", extra=context | {"state": state})
            return
        path = self.config.data_dir / event.path
        started = time.monotonic()
        try:
            with path.open("rb") as stream:
                done = self._publish_batches(stream, event, batch_size)
        except FileUnusable as e:
            db.finish_file(self.conn, event.file_id, "quarantined", str(e))
            self.folders.to_quarantine(event.file_id, event.name, str(e))
            log.warning("file quarantined", extra=context | {"reason": str(e)})
            return
        except FileNotFoundError:
            db.finish_file(self.conn, event.file_id, "failed", f"file disappeared: {event.path}")
            log.error("file disappeared", extra=context)
            return
        log.info("file transformed", extra=context | {
            "rows_total": done.rows_total, "batches": done.batches,
            "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    def _publish_batches(self, stream: BinaryIO, event: FileArrived, batch_size: int) -> FileDone:
        for message in transform(stream, event.file_id, event.seq, event.sha256, batch_size):
            if self.stop():
                raise Interrupted(event.file_id)
            self.broker.publish(BATCHES, *message.encode())
            if isinstance(message, FileDone):
                return message
        raise AssertionError("transform always ends with FileDone")

    def _on_error(self, delivery: Delivery, event: FileArrived, error: Exception) -> None:
        context = {"file_id": event.file_id, "file_name": event.name,
                   "deliveries": delivery.delivery_count + 1}
        if delivery.delivery_count + 1 >= MAX_ATTEMPTS:
            db.finish_file(self.conn, event.file_id, "failed", f"transform failed: {error!r}")
            log.exception("file failed", extra=context)
            self.broker.reject(delivery, requeue=False)
        else:
            log.exception("file handling failed, will retry", extra=context)
            time.sleep(1)  # do not spin on a failure that needs a moment to clear
            self.broker.reject(delivery, requeue=True)


# Our own limit for failures we see, below the broker's limit for crashes we don't.
MAX_ATTEMPTS = min(3, DELIVERY_LIMIT)
