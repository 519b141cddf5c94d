"""What a file's completion does besides marking it loaded, in the same transaction.

chute.complete_files (schema.sql) decides, when a file's last piece commits, whether it
is loaded or, over its dataset's `max_rejected`, failed. Then, here:

- A failed file keeps none of its rows: an unkeyed dataset's are deleted from the
  table (they were never served: the API serves rows only below the first arrival
  still loading); a staged dataset's never left the staging table and are dropped.
- A staged dataset (keyed, with `mode = "snapshot"` or `max_rejected`) has its file
  merged now, by the keyed rule (db.upsert_statement): a file that fails replaced no
  row. A snapshot then removes every row older than itself: after the merge, those are
  exactly the keys it does not hold. A snapshot older than the newest one merged
  (chute.snapshots) is superseded whole and changes nothing, so the table depends on
  the files alone, not on the order they complete in.

A crash anywhere rolls the whole transaction back: the closing batch is delivered
again and the completion runs again.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from psycopg2 import sql

from chute.datasets.declarations import Dataset
from chute.postgres import db, tables
from chute.reading import copyrows
from chute.runtime import metrics

log = logging.getLogger(__name__)


class Finished(NamedTuple):
    """A file chute.complete_files finished in this transaction."""

    file_id: str
    outcome: str  # loaded_now or failed_now
    dataset: str
    seq: int


def stage_rows(cur: Any, dataset: Dataset, rows: bytes) -> None:
    """A batch of a staged dataset, kept until its file completes (the ledger row,
    in the same transaction, makes a batch delivered twice staged once)."""
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
        tables.stage_table(dataset), tables.copy_columns(dataset)), io.BytesIO(copyrows.wrap(rows)))


def finish(cur: Any, datasets: Iterable[Dataset], finished: list[Finished]) -> None:
    by_name = {d.name: d for d in datasets}
    for file in finished:
        dataset = by_name.get(file.dataset)
        if dataset is None:
            continue
        if file.outcome == "failed_now":
            remove_rows(cur, dataset, file.seq)
            # Counted before the commit: a rollback (rare) counts it again when it reruns.
            metrics.FILES.labels("failed").inc()
            log.warning("file failed: over its reject limit, none of its rows kept",
                        extra={"file_id": file.file_id, "dataset": dataset.name})
        elif dataset.staged:
            _merge(cur, dataset, file)


def remove_rows(cur: Any, dataset: Dataset, seq: int) -> None:
    target = (tables.stage_table(dataset) if dataset.staged
              else sql.Identifier("public", dataset.table))
    cur.execute(sql.SQL("DELETE FROM {} WHERE file_seq = %s").format(target), (seq,))


def _merge(cur: Any, dataset: Dataset, file: Finished) -> None:
    staging = db.staging_table(cur, dataset)
    columns = tables.copy_columns(dataset)
    cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(staging)))
    cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE file_seq = %s").format(
        sql.Identifier(staging), columns, columns, tables.stage_table(dataset)), (file.seq,))
    count = cur.rowcount
    deleted = None
    if dataset.mode == "snapshot":
        deleted = 0
        cur.execute("INSERT INTO chute.snapshots (dataset, seq) VALUES (%s, 0) "
                    "ON CONFLICT DO NOTHING", (dataset.name,))
        cur.execute("SELECT seq FROM chute.snapshots WHERE dataset = %s FOR UPDATE",
                    (dataset.name,))
        newest = cur.fetchone()[0]
    if dataset.mode == "snapshot" and file.seq < newest:
        inserted = replaced = 0  # superseded by a newer snapshot, merged already
    else:
        inserted, replaced = db.merge_staging(cur, dataset, staging)
        if dataset.mode == "snapshot":
            cur.execute(sql.SQL("DELETE FROM {} WHERE file_seq < %s").format(
                sql.Identifier("public", dataset.table)), (file.seq,))
            deleted = cur.rowcount
            cur.execute("UPDATE chute.snapshots SET seq = %s WHERE dataset = %s",
                        (file.seq, dataset.name))
    remove_rows(cur, dataset, file.seq)
    for label, rows in (("inserted", inserted), ("replaced", replaced),
                        ("ignored", count - inserted - replaced), ("deleted", deleted or 0)):
        metrics.KEYED_ROWS.labels(dataset.name, label).inc(rows)
    cur.execute("""UPDATE chute.files SET rows_inserted = %s, rows_replaced = %s,
                          rows_ignored = %s, rows_deleted = %s WHERE file_id = %s""",
                (inserted, replaced, count - inserted - replaced, deleted, file.file_id))
