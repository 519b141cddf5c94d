"""The console's own SQL: what the overview and a file's page show beyond the API's
listings. Each statement is planned to use an index whatever the ledger holds (see the
plans in docs/console.md, from bench/console_bench.py): one probe per dataset, or a
range scan over the few rows of today, the last hour or the files still in flight.
"""

from __future__ import annotations

from typing import Any

import asyncpg

# Each dataset's newest arrival: one backward probe of files_dataset_seq per dataset.
LAST_ARRIVALS = """
    SELECT d.name AS dataset, f.file_id::text AS file_id, f.name, f.state, f.received_at,
           f.error
      FROM unnest($1::text[]) AS d(name)
      LEFT JOIN LATERAL (SELECT file_id, name, state, received_at, error FROM chute.files
                          WHERE dataset = d.name ORDER BY seq DESC LIMIT 1) f ON true"""

# Files still in flight, by stage, as the ledger tells them apart: `received` (waiting
# for a transformer), transforming (claimed, no batch of it loaded yet) and loading (some
# of its batches loaded). files_state_seq reads only the files in flight, and the batch
# ledger's primary key answers with one probe each (a LATERAL probe, not EXISTS: the
# planner would hash the whole ledger for an EXISTS).
WAITING = """
    SELECT f.dataset, CASE WHEN f.state = 'received' THEN 'received'
                           WHEN b.loaded THEN 'loading' ELSE 'transforming' END AS stage,
           count(*) AS files
      FROM chute.files f
      LEFT JOIN LATERAL (SELECT true AS loaded FROM chute.batches
                          WHERE file_id = f.file_id LIMIT 1) b ON f.state = 'processing'
     WHERE f.state IN ('received', 'processing')
     GROUP BY 1, 2"""

# Today's arrivals (since midnight in the server's time zone): files_received_at.
TODAY = """
    SELECT dataset, count(*) AS files,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) FILTER (WHERE state = 'quarantined') AS quarantined,
           coalesce(sum(rows_rejected), 0)::bigint AS rejected,
           coalesce(sum(rows_loaded + rows_rejected), 0)::bigint AS rows
      FROM chute.files WHERE received_at >= date_trunc('day', now())
     GROUP BY dataset"""

# Rows loaded per minute over the last hour, from the batch ledger (batches_loaded_at),
# each batch counted in the minute it committed; a batch's file by its primary key.
THROUGHPUT = """
    SELECT f.dataset, floor(extract(epoch FROM now() - b.loaded_at) / 60)::int AS minutes_ago,
           sum(b.rows_loaded)::bigint AS rows
      FROM chute.batches b JOIN chute.files f ON f.file_id = b.file_id
     WHERE b.loaded_at > now() - interval '1 hour'
     GROUP BY 1, 2"""

# A file's batches, in the order they committed (the batch ledger's primary key).
BATCHES = """
    SELECT batch_no, rows_loaded, rows_rejected, loaded_at FROM chute.batches
     WHERE file_id = $1 ORDER BY loaded_at, batch_no"""

# A file's rejects by reason, most frequent first, the values quoted in a reason left
# out (as chute.frequent_reasons counts them), each with its first two lines.
REJECT_GROUPS = """
    SELECT reason, n, line, raw FROM (
        SELECT reason, line, raw, count(*) OVER (PARTITION BY reason) AS n,
               row_number() OVER (PARTITION BY reason ORDER BY line) AS nth
          FROM (SELECT regexp_replace(reason, '"([^"\\\\]|\\\\.)*"…?', '"…"', 'g') AS reason,
                       line, raw
                  FROM chute.rejects WHERE file_id = $1) AS r) AS g
     WHERE nth <= 2 ORDER BY n DESC, reason, line"""

ALL_REJECTS = "SELECT line, reason, raw FROM chute.rejects WHERE file_id = $1 ORDER BY line"

# The file's extra fields the API's file item does not carry.
FILE_EXTRA = """
    SELECT path, size_bytes, started_at, attempts, batches_total, duplicate_of::text
      FROM chute.files WHERE file_id = $1"""


async def overview(conn: asyncpg.Connection, names: list[str]) -> dict[str, Any]:
    """Everything the overview reads on each request, in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return {
            "last": {r["dataset"]: r for r in await conn.fetch(LAST_ARRIVALS, names)},
            "waiting": await conn.fetch(WAITING),
            "today": {r["dataset"]: r for r in await conn.fetch(TODAY)},
            "throughput": await conn.fetch(THROUGHPUT),
        }


async def file_details(conn: asyncpg.Connection, file_id: Any) -> dict[str, Any]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return {
            "extra": await conn.fetchrow(FILE_EXTRA, file_id),
            "batches": await conn.fetch(BATCHES, file_id),
            "groups": await conn.fetch(REJECT_GROUPS, file_id),
        }
