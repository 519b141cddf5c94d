"""`chute retry FILE_ID`: put a quarantined or failed file back through the pipeline.

The same arrival goes round again: the file returns to work/FILE_ID/NAME, its state to
`received`, and a FileArrived is published. Its batch size and ledger are kept, so
batches that were loaded before the failure are not loaded again.
"""

from __future__ import annotations

import os

from chute.errors import RetryError
from chute.postgres import db, plans
from chute.rabbitmq.broker import FILES, Broker
from chute.rabbitmq.messages import FileArrived
from chute.runtime.config import Config
from chute.runtime.folders import Folders, reason_path

RETRYABLE = ("quarantined", "failed")


def retry_file(config: Config, file_id: str) -> str:
    conn = db.connect(config.database_url)
    try:
        record = db.get_file(conn, file_id)
        if record is None:
            raise RetryError(f"no file {file_id}")
        if record.state not in RETRYABLE:
            raise RetryError(f"{record.name} is {record.state}: only quarantined or failed "
                             "files can be retried")
        if record.dataset is None:  # nothing moved: the file stays where it is
            raise RetryError(f"{record.name}: no dataset matched it; declare one whose "
                             "`match` fits it, then drop the file in again")
        if record.sha256 is None:  # never read: the watcher must look at it afresh
            raise RetryError(f"{record.name} was never read ({record.error}): fix it, then "
                             "drop it into the inbox again")
        folders = Folders(config.data_dir)
        work = folders.work_path(file_id, record.name)
        current = config.data_dir / record.path
        if not work.exists():
            if not current.exists():
                raise RetryError(f"{record.name}: the file is no longer at {current}")
            work.parent.mkdir(parents=True, exist_ok=True)
            os.replace(current, work)
            reason_path(current).unlink(missing_ok=True)
        if plans.reads_whole(conn, file_id):  # its ranges' batches may be numbered otherwise
            plans.forget_loaded(conn, file_id, record.seq, config.datasets[record.dataset])
        record = db.reset_for_retry(conn, file_id, folders.relative(work))
    finally:
        conn.close()
    broker = Broker(config.amqp_url, config.namespace)
    try:
        event = FileArrived(file_id=record.file_id, seq=record.seq, name=record.name,
                            path=record.path, sha256=record.sha256, size=record.size_bytes,
                            dataset=record.dataset)
        broker.publish(FILES, *event.encode())
    finally:
        broker.close()
    return record.name
