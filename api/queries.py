"""The API's SQL and its connection pool: bound parameters only. Table and column names
are validated identifiers (datasets.py), quoted where the statements are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from chute.datasets.declarations import Dataset, Datasets
from chute.runtime.config import Config

PERSON_COLUMNS = "id::text AS id, first_name, last_name, age, location"

# Filters: each adds one condition with a bound value. Only the given ones go into the
# SQL, so every combination is its own statement the planner can match to an index;
# "$1 IS NULL OR location = $1" would hide the index from a generic plan. A parameter
# COL is equality, min_COL and max_COL a range (/people's min_age and max_age too).
OPERATORS = {"": "=", "min_": ">=", "max_": "<="}
PEOPLE_FILTERS = ("location", "first_name", "last_name", "min_age", "max_age")

# Rows are visible only below the dataset's first arrival still in progress. Files load
# concurrently (and a file's batches in any order), so a row can commit behind a
# position a reader has already paged past; below this line nothing can appear any more,
# which is what makes a cursor stable while files load. `failed` counts as settled.
SETTLED_BELOW = """(SELECT coalesce(min(seq), 9223372036854775807) FROM chute.files
                   WHERE state IN ('received', 'processing') AND dataset = ${})"""

# The declaration the dataset's table holds ($1 is the dataset's name in rows_sql).
SERVED_DECLARATION = ("(SELECT declaration FROM chute.datasets WHERE name = $1) "
                      "AS served_declaration")

FILE_COLUMNS = """
    f.file_id::text AS file_id, f.seq, f.name, f.dataset, f.sha256, f.state, f.rows_total,
    coalesce(f.rows_loaded, b.rows_loaded) AS rows_loaded,
    coalesce(f.rows_rejected, b.rows_rejected) AS rows_rejected,
    coalesce(f.rows_inserted, b.rows_inserted) AS rows_inserted,
    coalesce(f.rows_replaced, b.rows_replaced) AS rows_replaced,
    coalesce(f.rows_ignored, b.rows_ignored) AS rows_ignored, f.rows_deleted,
    f.error, f.move_error, f.received_at, f.finished_at,
    (SELECT e.archive_id::text FROM chute.archive_entries e WHERE e.member_id = f.file_id
      LIMIT 1) AS archive_id,
    (SELECT json_agg(json_build_object('entry', e.entry, 'file_id', e.member_id,
                                       'state', m.state, 'skipped', e.skipped)
                     ORDER BY e.entry)
       FROM chute.archive_entries e LEFT JOIN chute.files m ON m.file_id = e.member_id
      WHERE e.archive_id = f.file_id) AS entries
"""

# Files still processing have no final counts yet: show the ledger's running totals.
FILE_FROM = """
    FROM chute.files f
    LEFT JOIN LATERAL (
        SELECT sum(rows_loaded)::bigint AS rows_loaded, sum(rows_rejected)::bigint AS rows_rejected,
               sum(rows_inserted)::bigint AS rows_inserted,
               sum(rows_replaced)::bigint AS rows_replaced,
               sum(rows_ignored)::bigint AS rows_ignored
        FROM chute.batches WHERE file_id = f.file_id AND f.state = 'processing'
    ) b ON true
"""

# How long a worker's report that it cannot work (chute.worker_problems) counts. A worker
# that gives up exits; compose's restart policy starts it again within a minute (Docker's
# longest back-off), and each start reports again, so a problem that lasts stays fresh.
# A report older than this is from a worker nobody restarted: it no longer says anything
# about the workers that run.
PROBLEM_SECONDS = 300

FILE_FILTERS = {"name": "f.name = ${}", "dataset": "f.dataset = ${}", "state": "f.state = ${}",
                "before": "f.seq < ${}"}


async def schema_replayed(config: Config) -> bool:
    """True once the database the API reads has the schema and the reader role.

    With CHUTE_API_DATABASE_URL, that is a standby: read-only, so the schema is applied
    on the primary (CHUTE_DATABASE_URL) and arrives by replication, a moment later.
    """
    conn = await asyncpg.connect(config.read_url, timeout=5)
    try:
        return bool(await conn.fetchval(
            "SELECT to_regclass('chute.files') IS NOT NULL"
            " AND (SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest($1::text[]) t)"
            " AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2)",
            [f'public."{d.table}"' for d in config.datasets], config.reader_role))
    finally:
        await conn.close()


async def create_reader_pool(config: Config) -> asyncpg.Pool:
    """A pool whose every connection reads as the NOLOGIN reader role, read-only.
    It connects to CHUTE_API_DATABASE_URL when set (a standby), else CHUTE_DATABASE_URL.

    The role is set once per connection, and the read-only default comes with the
    connection's start-up settings. Neither stops SQL that says RESET ROLE: the guard
    against that is that no request reaches the SQL text (bound parameters only).
    """
    reader = config.reader_role

    async def read_only(conn: asyncpg.Connection) -> None:
        await conn.execute(f'SET ROLE "{reader}"')  # a validated identifier (config.py)

    async def keep_session(_conn: asyncpg.Connection) -> None:
        """Skip asyncpg's reset query on release (advisory locks, cursors, LISTEN, RESET
        ALL): our statements change none of that, and it cost a round trip per request.
        asyncpg still rolls back an open transaction before calling this."""

    # min_size=0: the API starts (and /ready says 503) even while PostgreSQL is down.
    # statement_timeout stops a slow query in the server; command_timeout stops waiting
    # on a server that no longer answers at all.
    return await asyncpg.create_pool(
        config.read_url, min_size=0, max_size=10, init=read_only, reset=keep_session,
        timeout=5, command_timeout=15,
        server_settings={
            "default_transaction_read_only": "on",
            "statement_timeout": "10s",
            # Plan each statement for its values: a filter on a common value and one on a
            # rare value want different plans (see the filter index in schema.sql).
            "plan_cache_mode": "force_custom_plan",
            "application_name": "chute-api",
        },
    )


@dataclass(frozen=True)
class Queries:
    datasets: Datasets
    people: str = "people"  # the dataset /people and /read/first-chunk serve

    async def first_chunk(self, conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
        table = _table(self.datasets[self.people])
        return await conn.fetch(
            f"SELECT {PERSON_COLUMNS} FROM {table} ORDER BY file_seq, line LIMIT $1", limit)

    def rows_sql(self, dataset: Dataset, filters: dict[str, Any], after: list[int] | None,
                 limit: int, select: str | None = None) -> tuple[str, list[Any]]:
        """A page of a dataset's rows and its arguments (public so tests can EXPLAIN it).

        `filters` maps COL, min_COL or max_COL to a typed value (None: not given). Rows
        come in (file_seq, line) order, the order of the unique index, and the cursor
        is the last row's (file_seq, line): a keyset, as fast on page 10 000 as on
        page 1.
        """
        args: list[Any] = [dataset.name]
        where = [f"file_seq < {SETTLED_BELOW.format(1)}"]
        for name, value in filters.items():
            if value is None:
                continue
            prefix = next(p for p in ("min_", "max_", "") if name.startswith(p))
            args.append(value)
            where.append(f'"{name[len(prefix):]}" {OPERATORS[prefix]} ${len(args)}')
        if after is not None:
            args.extend(after)
            where.append(f"(file_seq, line) > (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        if select is None:
            select = ", ".join(["id::text AS id", *(f'"{c.name}"' for c in dataset.columns)])
        sql = (f"SELECT {select}, file_seq, line FROM {_table(dataset)}"
               f" WHERE {' AND '.join(where)} ORDER BY file_seq, line LIMIT ${len(args)}")
        return sql, args

    def people_sql(self, filters: dict[str, Any], after: list[int] | None,
                   limit: int) -> tuple[str, list[Any]]:
        """The /people statement: rows_sql over the people dataset, whose min_age and
        max_age are the age range."""
        given = {name: value for name, value in filters.items() if name in PEOPLE_FILTERS}
        return self.rows_sql(self.datasets[self.people], given, after, limit,
                             select=PERSON_COLUMNS)

    async def rows(self, conn: asyncpg.Connection, dataset: Dataset, filters: dict[str, Any],
                   after: list[int] | None, limit: int) -> list[asyncpg.Record]:
        """rows_sql, each row also saying which declaration its table holds (read in the
        page's own snapshot: see routes.Served)."""
        select = ", ".join(["id::text AS id", *(f'"{c.name}"' for c in dataset.columns),
                            SERVED_DECLARATION])
        sql, args = self.rows_sql(dataset, filters, after, limit, select)
        return await conn.fetch(sql, *args)

    async def people_rows(self, conn: asyncpg.Connection, filters: dict[str, Any],
                          after: list[int] | None, limit: int) -> list[asyncpg.Record]:
        sql, args = self.people_sql(filters, after, limit)
        return await conn.fetch(sql, *args)

    async def loaded_rows(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Rows per dataset, from the files' counts (no count over a big table). A keyed
        dataset's table holds one row per key, each inserted once: the sum of inserted."""
        rows = await conn.fetch(
            """SELECT dataset, sum(coalesce(rows_inserted, rows_loaded))::bigint AS rows
               FROM chute.files
               WHERE state = 'loaded' AND dataset IS NOT NULL GROUP BY dataset""")
        return {row["dataset"]: row["rows"] for row in rows}

    async def tables(self, conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
        """Each dataset's table: the declaration it holds, and its running rebuild."""
        rows = await conn.fetch(
            """SELECT s.name, s.declaration, r.rebuild_id, r.files_total, r.started_at,
                      (SELECT count(*) FROM chute.rebuild_files f
                        WHERE f.rebuild_id = r.rebuild_id) AS files_done
               FROM chute.datasets s
               LEFT JOIN chute.rebuilds r ON r.dataset = s.name AND r.state = 'running'""")
        return {row["name"]: row for row in rows}

    async def files(self, conn: asyncpg.Connection, name: str | None, state: str | None,
                    before_seq: int | None, limit: int, dataset: str | None = None
                    ) -> list[asyncpg.Record]:
        args: list[Any] = []
        where = ["true"]
        for key, value in (("name", name), ("dataset", dataset), ("state", state),
                           ("before", before_seq)):
            if value is not None:
                args.append(value)
                where.append(FILE_FILTERS[key].format(len(args)))
        args.append(limit)
        return await conn.fetch(
            f"SELECT {FILE_COLUMNS} {FILE_FROM} WHERE {' AND '.join(where)}"
            f" ORDER BY f.seq DESC LIMIT ${len(args)}",
            *args,
        )

    async def file(self, conn: asyncpg.Connection, file_id: Any) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {FILE_COLUMNS} {FILE_FROM} WHERE f.file_id = $1", file_id
        )

    async def rejects(self, conn: asyncpg.Connection, file_id: Any, after_line: int | None,
                      limit: int) -> list[asyncpg.Record]:
        if after_line is None:
            return await conn.fetch(
                """SELECT line, reason, raw FROM chute.rejects WHERE file_id = $1
                   ORDER BY line LIMIT $2""", file_id, limit)
        return await conn.fetch(
            """SELECT line, reason, raw FROM chute.rejects WHERE file_id = $1 AND line > $2
               ORDER BY line LIMIT $3""", file_id, after_line, limit)

    async def worker_problems(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """Workers that reported lately what keeps them from working (chute.runtime.health), and
        why."""
        return await conn.fetch(
            """SELECT service, instance, kind, problem, reported_at FROM chute.worker_problems
               WHERE reported_at > now() - make_interval(secs => $1)
               ORDER BY service, instance, kind""", PROBLEM_SECONDS)

def _table(dataset: Dataset) -> str:
    return f'public."{dataset.table}"'
