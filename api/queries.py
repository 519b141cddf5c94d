"""The API's SQL: bound parameters only. The table name is a validated identifier
(CHUTE_TABLE), quoted once when the queries are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

FILE_COLUMNS = """
    f.file_id::text AS file_id, f.seq, f.name, f.sha256, f.state, f.rows_total,
    coalesce(f.rows_loaded, b.rows_loaded) AS rows_loaded,
    coalesce(f.rows_rejected, b.rows_rejected) AS rows_rejected,
    f.error, f.received_at, f.finished_at
"""

# Files still processing have no final counts yet: show the ledger's running totals.
FILE_FROM = """
    FROM chute.files f
    LEFT JOIN LATERAL (
        SELECT sum(rows_loaded)::bigint AS rows_loaded, sum(rows_rejected)::bigint AS rows_rejected
        FROM chute.batches WHERE file_id = f.file_id AND f.state = 'processing'
    ) b ON true
"""


@dataclass(frozen=True)
class Queries:
    table: str

    @property
    def _table(self) -> str:
        return 'public."' + self.table + '"'

    async def first_chunk(self, conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
        return await conn.fetch(
            f"""SELECT id::text AS id, first_name, last_name, age, location
                FROM {self._table} ORDER BY file_seq, line LIMIT $1""",
            limit,
        )

    async def files(self, conn: asyncpg.Connection, name: str | None, state: str | None,
                    before_seq: int | None, limit: int) -> list[asyncpg.Record]:
        return await conn.fetch(
            f"""SELECT {FILE_COLUMNS} {FILE_FROM}
                WHERE ($1::text IS NULL OR f.name = $1)
                  AND ($2::text IS NULL OR f.state = $2)
                  AND ($3::bigint IS NULL OR f.seq < $3)
                ORDER BY f.seq DESC LIMIT $4""",
            name, state, before_seq, limit,
        )

    async def file(self, conn: asyncpg.Connection, file_id: Any) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {FILE_COLUMNS} {FILE_FROM} WHERE f.file_id = $1", file_id
        )

    async def rejects(self, conn: asyncpg.Connection, file_id: Any, after_line: int | None,
                      limit: int) -> list[asyncpg.Record]:
        return await conn.fetch(
            """SELECT line, reason, raw FROM chute.rejects
               WHERE file_id = $1 AND ($2::bigint IS NULL OR line > $2)
               ORDER BY line LIMIT $3""",
            file_id, after_line, limit,
        )
