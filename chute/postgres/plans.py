"""The ledger of a file cut into ranges (chute.file_ranges, see chute/reading/ranges.py)."""

from __future__ import annotations

from chute.datasets.declarations import Dataset
from chute.postgres import finishing
from chute.postgres.db import Connection, transaction
from chute.reading.ranges import Range


def record(conn: Connection, file_id: str, ranges: tuple[Range, ...]) -> tuple[Range, ...]:
    """Write a file's plan, unless one is written already; return the plan the ledger
    holds. Plans are deterministic, so a second writer (the event delivered again) finds
    its own plan, and the ranges handed out are those of the ledger either way."""
    with transaction(conn) as cur:
        cur.execute(
            """INSERT INTO chute.file_ranges (file_id, range_no, byte_start, byte_end,
                      first_line, records, first_batch, sha256)
               SELECT %s, * FROM unnest(%s::integer[], %s::bigint[], %s::bigint[],
                      %s::bigint[], %s::bigint[], %s::integer[], %s::text[])
               ON CONFLICT DO NOTHING""",
            (file_id, [r.range_no for r in ranges], [r.byte_start for r in ranges],
             [r.byte_end for r in ranges], [r.first_line for r in ranges],
             [r.records for r in ranges], [r.first_batch for r in ranges],
             [r.sha256 for r in ranges]))
        cur.execute(
            """SELECT range_no, byte_start, byte_end, first_line, records, first_batch, sha256
                 FROM chute.file_ranges WHERE file_id = %s ORDER BY range_no""", (file_id,))
        return tuple(Range(*row) for row in cur.fetchall())


def reads_whole(conn: Connection, file_id: str) -> bool:
    """Whether the file is to be read by one transformer: a range of it did not read as
    planned."""
    with transaction(conn) as cur:
        cur.execute("SELECT read_whole FROM chute.files WHERE file_id = %s", (file_id,))
        row = cur.fetchone()
    return bool(row and row[0])


def refuse(conn: Connection, file_id: str, reason: str) -> bool:
    """A range did not read as planned: the file fails with the reason (True if it was
    unfinished) and is read whole when retried."""
    with transaction(conn) as cur:
        cur.execute(
            """UPDATE chute.files SET read_whole = true, state = 'failed', error = %s,
                      finished_at = now()
               WHERE file_id = %s AND state IN ('received', 'processing')""",
            (reason, file_id))
        return cur.rowcount > 0


def loaded_batches(conn: Connection, file_id: str) -> set[int]:
    with transaction(conn) as cur:
        cur.execute("SELECT batch_no FROM chute.batches WHERE file_id = %s", (file_id,))
        return {row[0] for row in cur.fetchall()}


def forget_loaded(conn: Connection, file_id: str, seq: int, dataset: Dataset) -> None:
    """Before a file refused by its plan is read whole: its rows, rejects, batches and
    plan go, since batches cut whole may be numbered otherwise than its ranges cut them.
    A keyed dataset loses the rows this file wrote (inserted or replaced); reading it
    again writes the same rows back."""
    with transaction(conn) as cur:
        finishing.remove_rows(cur, dataset, seq)
        for table in ("chute.batches", "chute.rejects", "chute.file_ranges"):
            cur.execute(f"DELETE FROM {table} WHERE file_id = %s", (file_id,))  # noqa: S608
