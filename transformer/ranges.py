"""A large file read by several transformers: its plan handed out, and each range read.

The transformer that takes a file's FileArrived plans it (chute.reading.ranges) after
the scan that checked its bytes, writes the plan to the ledger (chute.file_ranges), and
sends one RangeTask per range to the ranges queue, which every transformer consumes one
message at a time; the FileArrived is acked once the tasks are confirmed.

A range is read from its own bytes, cut into the batches one transformer would cut there,
and checked before any of them is sent: its bytes hash as planned, it holds the planned
records, and no batch was cut short by the byte limit. Then its batches go out, the last
range's last one closing the file with its totals, and the task is acked. A crash at any
point sends the task again: the same batches, which the loader's ledger takes once. A
range that does not read as planned fails the file with the reason, nothing of that range
sent; `chute retry` then clears the file and reads it whole.

A range's batches are held until it is checked: a range of 8 MiB (CHUTE_RANGE_BYTES)
holds about as many bytes of batches (measured: 16 MiB ranges took a transformer reading
people past 200 MiB).
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import replace
from typing import BinaryIO

from chute.datasets.declarations import Dataset
from chute.errors import FileChanged, MessageDecodeError
from chute.postgres import db, plans
from chute.rabbitmq.broker import BATCHES, RANGES, Broker, Delivery
from chute.rabbitmq.messages import FileArrived, RangeTask, RowBatch
from chute.reading import ranges
from chute.reading.csvstream import UNCLOSED
from chute.reading.streams import HashingReader, codec_of
from chute.reading.transform import MAX_BATCH_BYTES, open_records, transform_range
from chute.runtime import metrics
from chute.runtime.config import Config
from chute.runtime.service import give_up_or_retry

log = logging.getLogger(__name__)

PUBLISH_GROUP = 4  # batches sent per wait for the broker's confirms


class RangeMismatch(Exception):
    """A range did not read as its plan says."""


def plan_file(conn: db.Connection, config: Config, raw: BinaryIO, event: FileArrived,
              dataset: Dataset, batch_size: int) -> list[tuple[str, dict, bytes]] | None:
    """The RangeTasks of a file cut into ranges, its plan written to the ledger; None
    when the file is read whole (and why is logged). `raw` is at its start."""
    reason = _read_whole(conn, config, raw, event, dataset)
    if reason is None:
        started = time.monotonic()
        cut = ranges.plan(raw, event.size, batch_size, config.range_bytes, dataset.delimiter,
                          len(dataset.columns), MAX_BATCH_BYTES)
        raw.seek(0)
        if isinstance(cut, ranges.Plan):
            stored = plans.record(conn, event.file_id, cut.ranges)
            log.info("file cut into ranges", extra={
                "file_id": event.file_id, "file_name": event.name, "ranges": len(stored),
                "plan_ms": round((time.monotonic() - started) * 1000, 1)})
            return [(RANGES, *_task(event, batch_size, cut, part).encode()) for part in stored]
        reason = cut
    if event.size >= 2 * config.range_bytes > 0:  # worth saying why a large file is not cut
        log.info("file read whole", extra={"file_id": event.file_id, "file_name": event.name,
                                           "reason": reason})
    return None


def _read_whole(conn: db.Connection, config: Config, raw: BinaryIO, event: FileArrived,
                dataset: Dataset) -> str | None:
    """Why the file is read by one transformer without even a planning pass, if it is."""
    if not config.range_bytes or event.size < 2 * config.range_bytes:
        return "small"
    if dataset.encoding != "utf-8":
        return f"encoded as {dataset.encoding}"
    codec = codec_of(raw.read(8))
    raw.seek(0)
    if codec is not None:
        return f"{codec}-compressed: read as one stream"
    if plans.reads_whole(conn, event.file_id):
        return "a range of it did not read as planned"
    return None


def _task(event: FileArrived, batch_size: int, cut: ranges.Plan, part: ranges.Range
          ) -> RangeTask:
    return RangeTask(
        file_id=event.file_id, seq=event.seq, name=event.name, path=event.path,
        sha256=event.sha256, size=event.size, dataset=event.dataset, batch_size=batch_size,
        data_start=cut.data_start, range_no=part.range_no, byte_start=part.byte_start,
        byte_end=part.byte_end, first_line=part.first_line, records=part.records,
        first_batch=part.first_batch, range_sha256=part.sha256,
        batches_total=cut.batches, rows_total=cut.records)


class RangeHandler:
    def __init__(self, config: Config, conn: db.Connection, broker: Broker) -> None:
        self.config = config
        self.conn = conn
        self.broker = broker
        self.pending: list[Delivery] = []

    def on_range(self, delivery: Delivery) -> None:
        self.pending.append(delivery)

    def handle_pending(self) -> None:
        deliveries, self.pending = self.pending, []
        for delivery in deliveries:
            try:
                task = RangeTask.decode(delivery.headers, delivery.body)
            except MessageDecodeError as e:
                log.error("undecodable range task", extra={"error": str(e)})
                self.broker.reject(delivery, requeue=False)
                continue
            context = {"file_id": task.file_id, "file_name": task.name,
                       "range_no": task.range_no}
            try:
                self._handle(task, context)
            except ConnectionError:
                raise  # broker or database lost: the task is delivered again
            except (FileChanged, FileNotFoundError) as e:
                if db.fail_file(self.conn, task.file_id, str(e)):
                    metrics.FILES.labels("failed").inc()
                log.error("file failed while a range was read", extra=context | {
                    "error": str(e)})
            except RangeMismatch as e:
                if plans.refuse(self.conn, task.file_id, str(e)):
                    metrics.FILES.labels("failed").inc()
                log.error("range did not read as planned: file failed", extra=context | {
                    "error": str(e)})
            except Exception as e:  # noqa: BLE001 - a bug: retried, then the file fails
                give_up_or_retry(self.broker, delivery,
                                 lambda error, file_id=task.file_id: db.fail_file(
                                     self.conn, file_id, error),
                                 "range", e, context)
                continue
            self.broker.ack(delivery)

    def _handle(self, task: RangeTask, context: dict[str, object]) -> None:
        record = db.get_file(self.conn, task.file_id)
        if record is None or record.state != "processing":
            log.info("range not read: its file is not being processed", extra=context | {
                "state": record.state if record else None})
            return
        ends_file = (task.first_batch + -(-task.records // task.batch_size)
                     == task.batches_total and task.records > 0)
        planned = range(task.first_batch, task.first_batch + -(-task.records // task.batch_size))
        loaded = plans.loaded_batches(self.conn, task.file_id)
        if all(n in loaded for n in planned) and not ends_file:
            return  # every batch of it is in (a task delivered again)
        dataset = self.config.datasets[task.dataset]
        started = time.monotonic()
        batches = self._read(task, dataset)
        if ends_file:
            batches[-1] = replace(batches[-1], batches_total=task.batches_total,
                                  rows_total=task.rows_total)
        sending = [b for b in batches if b.batch_no not in loaded or b.done is not None]
        count = len(sending)
        del batches
        # A few at a time: pika holds what it has not written yet, so all at once would
        # hold the range's batches twice.
        while sending:
            group, sending[:PUBLISH_GROUP] = sending[:PUBLISH_GROUP], []
            self.broker.publish_many([(BATCHES, *batch.encode()) for batch in group])
        metrics.BATCHES.labels("published").inc(count)
        log.info("range transformed", extra=context | {
            "records": task.records, "batches": count,
            "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    def _read(self, task: RangeTask, dataset: Dataset) -> list[RowBatch]:
        """The range's batches, checked against the plan (RangeMismatch, FileChanged)."""
        path = self.config.data_dir / task.path
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            if size != task.size:
                raise FileChanged(f"file changed after it was claimed: {size} bytes, "
                                  f"{task.size} when claimed")
            layout, _records = open_records(io.BytesIO(raw.read(task.data_start)), dataset)
            raw.seek(task.byte_start)
            hashing = HashingReader(_Bounded(raw, task.byte_end - task.byte_start))
            batches, records = transform_range(
                io.BufferedReader(hashing, buffer_size=1 << 16), layout, task.file_id,
                task.seq, task.sha256, task.batch_size, task.first_line, task.first_batch)
            while hashing.read(1 << 20):
                pass
        if hashing.digest.hexdigest() != task.range_sha256:
            raise FileChanged(f"file changed after it was claimed: range {task.range_no} "
                              f"(bytes {task.byte_start}-{task.byte_end}) hashes otherwise")
        where = f"range {task.range_no} (bytes {task.byte_start}-{task.byte_end})"
        if records != task.records:
            raise RangeMismatch(f"{where} held {records} records, {task.records} planned: "
                                "none of it was sent; `chute retry` reads the file whole")
        last_range = task.byte_end == task.size
        if not last_range and any(UNCLOSED.encode() in b.rejects for b in batches):
            raise RangeMismatch(f"{where} ends inside a quoted field: none of it was sent; "
                                "`chute retry` reads the file whole")
        short = [b.batch_no for b in batches[:-1]
                 if b.row_count + b.reject_count != task.batch_size]
        if short:
            raise RangeMismatch(f"{where}: batch {short[0]} was cut short by the batch byte "
                                "limit: none of it was sent; `chute retry` reads the file "
                                "whole")
        return batches


class _Bounded(io.RawIOBase):
    """The next `size` bytes of a file, as a stream of their own."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw = raw
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        data = self._raw.read(min(len(buffer), self._left))
        buffer[:len(data)] = data
        self._left -= len(data)
        return len(data)
