"""`chute rebuild` and `chute replay` in PostgreSQL (the flow is chute.commands.rebuild).

A rebuild loads a dataset's archived files into a new table, TABLE_rebuild_N, beside the
live one, each file in one transaction with its counts and rejects under the new
declaration (chute.rebuild_files, _batches, _rejects). It runs while the pipeline does:
the live table keeps its readers and writers. Then one transaction swaps it in (swap):

1. the dataset's row of chute.datasets is locked for update: loaders share-lock it for
   every batch (db.hold_tables), so the swap waits for the batches writing to the old
   table, and those that follow wait for the swap and write to the new one;
2. files loaded since the rebuild's last pass are loaded into the new table, in this
   transaction (`catch_up`): the loaders are held meanwhile, so nothing slips past;
3. files still in processing start again (ledger and rejects cleared, `received`): their
   batches so far went to the old table; they are sent again after the commit;
4. every rebuilt file takes its new counts, ledger rows and rejects, and the name of the
   declaration that loaded it;
5. the old table becomes TABLE_previous (an earlier TABLE_previous is dropped), the new
   one TABLE, indexes included; chute.datasets names the new declaration.

Readers see the old table or the new one, never a mix: the renames take the tables'
exclusive locks, which wait for statements reading them and make later ones wait.

A rebuild killed at any point leaves the live table as it was (only the swap touches
it, in one transaction). Run again with the same declaration, it resumes where its
committed files end; with another, it drops its table and starts over.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from psycopg2 import sql

from chute.datasets.declarations import Dataset
from chute.errors import RebuildError
from chute.postgres import db, tables
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading import copyrows

REBUILD_LOCK = 0x72656275  # "rebu": with the dataset's name, one rebuild at a time
NAME_ROOM = 40  # characters of the table's name kept in its rebuild's and its previous'


@dataclass(frozen=True)
class Rebuild:
    rebuild_id: int
    dataset: Dataset  # the declaration rebuilt to, its table the live one's
    table: str  # the table being loaded
    resumed: bool

    @property
    def target(self) -> Dataset:
        """The dataset as the rebuild loads it: into its own table."""
        return replace(self.dataset, table=self.table)


@dataclass(frozen=True)
class ArchivedFile:
    file_id: str
    seq: int
    name: str
    path: str  # relative to the data folder
    sha256: str
    size: int
    batch_size: int | None


def previous_name(dataset: Dataset) -> str:
    """Where the swap keeps the old table until the next rebuild, or the user drops it."""
    return f"{dataset.table[:NAME_ROOM]}_previous"


def lock(conn: db.Connection, dataset: Dataset) -> None:
    """Hold this dataset's rebuild lock for the session, or refuse: one rebuild at a
    time. A session lock: a killed rebuild's connection closes, and the lock with it."""
    with db.transaction(conn) as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                    (REBUILD_LOCK, dataset.name))
        if not cur.fetchone()[0]:
            raise RebuildError(f"dataset {dataset.name}: another rebuild or replay of it "
                               "is running; wait for it to end")


def begin(conn: db.Connection, dataset: Dataset, reader: str) -> Rebuild:
    """Resume this dataset's unfinished rebuild if it was to the same declaration, else
    abandon it (its table dropped) and start one: a new table from the declaration."""
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO chute.declarations (hash, dataset, declaration) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (dataset.declaration_hash, dataset.name, dataset.declaration))
        cur.execute("SELECT rebuild_id, declaration, table_name FROM chute.rebuilds "
                    "WHERE dataset = %s AND state = 'running' FOR UPDATE", (dataset.name,))
        running = cur.fetchone()
        if running is not None:
            rebuild_id, declaration, table = running
            if declaration == dataset.declaration_hash and _exists(cur, table):
                return Rebuild(rebuild_id, dataset, table, resumed=True)
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.Identifier("public", table)))
            cur.execute("UPDATE chute.rebuilds SET state = 'abandoned', finished_at = now() "
                        "WHERE rebuild_id = %s", (rebuild_id,))
        cur.execute("INSERT INTO chute.rebuilds (dataset, declaration, table_name) "
                    "VALUES (%s, %s, '') RETURNING rebuild_id",
                    (dataset.name, dataset.declaration_hash))
        rebuild_id = cur.fetchone()[0]
        table = f"{dataset.table[:NAME_ROOM]}_rebuild_{rebuild_id}"
        cur.execute("UPDATE chute.rebuilds SET table_name = %s WHERE rebuild_id = %s",
                    (table, rebuild_id))
        rebuild = Rebuild(rebuild_id, dataset, table, resumed=False)
        for action in tables.plan_new(rebuild.target).actions:
            cur.execute(action.statement)
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier("public", table), sql.Identifier(reader)))
    return rebuild


def _exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'public."{table}"',))
    return bool(cur.fetchone()[0])


PENDING = """
    SELECT f.file_id::text, f.seq, f.name, f.path, f.sha256, f.size_bytes, f.batch_size
    FROM chute.files f
    WHERE f.dataset = %s AND f.state = 'loaded'
      AND NOT EXISTS (SELECT FROM chute.rebuild_files r
                      WHERE r.rebuild_id = %s AND r.file_id = f.file_id)
    ORDER BY f.seq
"""


def pending(conn_or_cur: Any, rebuild: Rebuild) -> list[ArchivedFile]:
    """The dataset's loaded files the rebuild has not loaded yet, in arrival order."""
    def fetch(cur: Any) -> list[ArchivedFile]:
        cur.execute(PENDING, (rebuild.dataset.name, rebuild.rebuild_id))
        return [ArchivedFile(*row) for row in cur.fetchall()]

    if isinstance(conn_or_cur, db.Connection):
        with db.transaction(conn_or_cur) as cur:
            return fetch(cur)
    return fetch(conn_or_cur)


def progress(conn: db.Connection, rebuild: Rebuild) -> tuple[int, int]:
    """(files loaded by the rebuild, files it will have loaded once done so far)."""
    with db.transaction(conn) as cur:
        cur.execute("SELECT count(*) FROM chute.rebuild_files WHERE rebuild_id = %s",
                    (rebuild.rebuild_id,))
        done = cur.fetchone()[0]
        cur.execute("UPDATE chute.rebuilds SET files_total = %s + (SELECT count(*) FROM ("
                    + PENDING + ") p) WHERE rebuild_id = %s RETURNING files_total",
                    (done, rebuild.dataset.name, rebuild.rebuild_id, rebuild.rebuild_id))
        return done, cur.fetchone()[0]


def summary(conn: db.Connection, rebuild: Rebuild) -> tuple[int, list[str]]:
    """(files loaded into the new table, "NAME (file ID): why" of each left out)."""
    with db.transaction(conn) as cur:
        cur.execute("""SELECT f.name, f.file_id::text, r.skipped, r.skipped_state
                       FROM chute.rebuild_files r JOIN chute.files f USING (file_id)
                       WHERE r.rebuild_id = %s ORDER BY f.seq""", (rebuild.rebuild_id,))
        found = cur.fetchall()
    left_out = [f"{name} (file {file_id}): {state}: {why}"
                for name, file_id, why, state in found if why is not None]
    return len(found) - len(left_out), left_out


def load_file(cur: Any, rebuild: Rebuild, file: ArchivedFile,
              messages: Iterable[RowBatch | FileDone]) -> FileDone:
    """Load one file's batches (the transform of its archived bytes) into the rebuild's
    table, in the caller's transaction, with its counts and rejects; its FileDone."""
    target = rebuild.target
    prefix = f"{rebuild.rebuild_id}\t".encode()
    cur.execute("SAVEPOINT load_file")
    rejected = 0
    for message in messages:
        if isinstance(message, FileDone):
            limit = target.max_rejected
            if limit is not None and limit.exceeded(rejected, message.rows_total):
                # As the pipeline would: the file fails, and none of its rows count.
                cur.execute("ROLLBACK TO SAVEPOINT load_file")
                skip_file(cur, rebuild, file, f"{rejected:,} of {message.rows_total:,} rows "
                          f"rejected, over max_rejected = {limit.declared}", "failed")
                return message
            if target.mode == "snapshot":  # files come in arrival order: the newest yet
                cur.execute(sql.SQL("DELETE FROM {} WHERE file_seq < %s").format(
                    sql.Identifier("public", target.table)), (file.seq,))
            cur.execute("INSERT INTO chute.rebuild_files (rebuild_id, file_id, rows_total, "
                        "batches_total) VALUES (%s, %s, %s, %s)",
                        (rebuild.rebuild_id, file.file_id, message.rows_total,
                         message.batches))
            return message
        rejected += message.reject_count
        outcome: tuple[int, int, int] | tuple[None, None, None] = (None, None, None)
        if target.key:
            outcome = (db.upsert_rows(cur, target, message.rows, message.row_count)
                       if message.rows else (0, 0, 0))
        elif message.rows:
            db.copy_rows(cur, target, message.rows)
        if message.rejects:
            cur.copy_expert("COPY chute.rebuild_rejects (rebuild_id, file_id, line, reason, "
                            "raw) FROM STDIN",
                            io.BytesIO(re.sub(rb"(?m)^(?=.)", prefix, message.rejects)))
        cur.execute("INSERT INTO chute.rebuild_batches VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (rebuild.rebuild_id, file.file_id, message.batch_no, message.row_count,
                     message.reject_count, *outcome))
    raise AssertionError("transform always ends with FileDone")


def skip_file(cur: Any, rebuild: Rebuild, file: ArchivedFile, why: str,
              state: str = "failed") -> None:
    """Leave a file out of the rebuild, saying why: missing from the archive
    (--skip-missing: it becomes `failed`), or unusable under the new declaration (its
    header lacks a new required column: `quarantined`, as the pipeline would). At the
    swap it takes that state and reason; its rows are not in the new table."""
    cur.execute("INSERT INTO chute.rebuild_files (rebuild_id, file_id, skipped, "
                "skipped_state) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (rebuild.rebuild_id, file.file_id, why, state))


@dataclass(frozen=True)
class Swapped:
    kept_as: str
    caught_up: int  # files loaded by the swap itself
    restarted: list[db.FileRecord]  # files to send through the pipeline again


def swap(conn: db.Connection, rebuild: Rebuild, reader: str,
         catch_up: Any) -> Swapped:
    """Swap the rebuilt table in (see the module's docstring). `catch_up(cur, files)`
    loads files into it in this transaction."""
    dataset, new = rebuild.dataset, rebuild.table
    live, kept = dataset.table, previous_name(dataset)
    with db.transaction(conn) as cur:
        cur.execute("SELECT 1 FROM chute.datasets WHERE name = %s FOR UPDATE", (dataset.name,))
        late = pending(cur, rebuild)
        catch_up(cur, late)
        cur.execute(
            """UPDATE chute.files SET state = 'received', rows_loaded = NULL,
                      rows_rejected = NULL, rows_inserted = NULL, rows_replaced = NULL,
                      rows_ignored = NULL, batches_total = NULL, rows_total = NULL
               WHERE dataset = %s AND state = 'processing' RETURNING file_id""",
            (dataset.name,))
        restarted = [row[0] for row in cur.fetchall()]
        cur.execute("DELETE FROM chute.batches WHERE file_id = ANY(%s::uuid[])", (restarted,))
        cur.execute("DELETE FROM chute.rejects WHERE file_id = ANY(%s::uuid[])", (restarted,))
        _take_counts(cur, rebuild)
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", kept)))
        _rename(cur, live, kept)
        _rename(cur, new, live)
        # Rows staged for the files just sent back to `received` go with them.
        tables.drop_stage(cur, dataset)
        if dataset.staged:
            tables.ensure_stage(cur, dataset)
        if dataset.mode == "snapshot":  # the newest snapshot in the new table
            cur.execute("""INSERT INTO chute.snapshots (dataset, seq)
                           SELECT %(d)s, coalesce(max(f.seq), 0) FROM chute.rebuild_files r
                           JOIN chute.files f USING (file_id)
                           WHERE r.rebuild_id = %(r)s AND r.skipped IS NULL
                           ON CONFLICT (dataset) DO UPDATE SET seq = excluded.seq""",
                        {"d": dataset.name, "r": rebuild.rebuild_id})
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier("public", live), sql.Identifier(reader)))
        tables.record_declaration(cur, dataset)
        cur.execute("UPDATE chute.rebuilds SET state = 'swapped', kept_as = %s, "
                    "finished_at = now() WHERE rebuild_id = %s", (kept, rebuild.rebuild_id))
        cur.execute(f"SELECT {db.FILE_RECORD_COLUMNS} FROM chute.files WHERE dataset = %s "
                    "AND state = 'received' ORDER BY seq", (dataset.name,))
        waiting = [db.FileRecord(*row) for row in cur.fetchall()]
    return Swapped(kept, len(late), waiting)


def _take_counts(cur: Any, rebuild: Rebuild) -> None:
    """The rebuilt files' counts, ledger and rejects become theirs (the rebuild's own
    copies go), and their history names the declaration that loaded them."""
    args = {"r": rebuild.rebuild_id, "d": rebuild.dataset.declaration_hash,
            "keyed": bool(rebuild.dataset.key)}
    cur.execute(
        """UPDATE chute.files f SET rows_total = r.rows_total, batches_total = r.batches_total,
                  rows_loaded = s.loaded, rows_rejected = s.rejected,
                  rows_inserted = CASE WHEN %(keyed)s THEN s.inserted END,
                  rows_replaced = CASE WHEN %(keyed)s THEN s.replaced END,
                  rows_ignored = CASE WHEN %(keyed)s THEN s.ignored END,
                  declaration = %(d)s
           FROM chute.rebuild_files r, LATERAL (
               SELECT coalesce(sum(b.rows_loaded), 0) AS loaded,
                      coalesce(sum(b.rows_rejected), 0) AS rejected,
                      coalesce(sum(b.rows_inserted), 0) AS inserted,
                      coalesce(sum(b.rows_replaced), 0) AS replaced,
                      coalesce(sum(b.rows_ignored), 0) AS ignored
               FROM chute.rebuild_batches b
               WHERE b.rebuild_id = r.rebuild_id AND b.file_id = r.file_id) s
           WHERE r.rebuild_id = %(r)s AND r.skipped IS NULL AND f.file_id = r.file_id""",
        args)
    cur.execute(
        """UPDATE chute.files f SET state = r.skipped_state, error = r.skipped, rows_loaded = 0,
                  rows_rejected = 0, finished_at = now()
           FROM chute.rebuild_files r
           WHERE r.rebuild_id = %(r)s AND r.skipped IS NOT NULL AND f.file_id = r.file_id""",
        args)
    done = "SELECT file_id FROM chute.rebuild_files WHERE rebuild_id = %(r)s"
    cur.execute(f"DELETE FROM chute.batches WHERE file_id IN ({done})", args)
    cur.execute(
        """INSERT INTO chute.batches (file_id, batch_no, rows_loaded, rows_rejected,
                                      rows_inserted, rows_replaced, rows_ignored)
           SELECT file_id, batch_no, rows_loaded, rows_rejected, rows_inserted,
                  rows_replaced, rows_ignored
           FROM chute.rebuild_batches WHERE rebuild_id = %(r)s""", args)
    cur.execute(f"DELETE FROM chute.rejects WHERE file_id IN ({done})", args)
    cur.execute(
        """INSERT INTO chute.rejects (file_id, line, reason, raw)
           SELECT file_id, line, reason, raw FROM chute.rebuild_rejects
           WHERE rebuild_id = %(r)s""", args)
    cur.execute("DELETE FROM chute.rebuild_rejects WHERE rebuild_id = %(r)s", args)
    cur.execute("DELETE FROM chute.rebuild_batches WHERE rebuild_id = %(r)s", args)


def _rename(cur: Any, table: str, to: str) -> None:
    """Rename a table and the indexes named after it (tables.py names them TABLE_...)."""
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
        sql.Identifier("public", table), sql.Identifier(to)))
    cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = %s", (to,))
    for (index,) in cur.fetchall():
        if index.startswith(f"{table}_"):
            cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier("public", index),
                sql.Identifier((to + index[len(table):])[:63])))


def abandon(conn: db.Connection, rebuild: Rebuild) -> None:
    """Stop a rebuild for good (the swap refused): its table goes, the live one stays."""
    with db.transaction(conn) as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.Identifier("public", rebuild.table)))
        cur.execute("UPDATE chute.rebuilds SET state = 'abandoned', finished_at = now() "
                    "WHERE rebuild_id = %s", (rebuild.rebuild_id,))


def unfit(conn: db.Connection, dataset: Dataset) -> str | None:
    """Why the live table cannot take `dataset`'s rows as it is (replay then refuses),
    or None."""
    with db.transaction(conn) as cur:
        return tables.plan(cur, dataset).refusal


def raise_if_missing(problems: list[str]) -> None:
    if problems:
        raise RebuildError("the archive does not hold what was loaded, so nothing was "
                           "swapped: " + "; ".join(problems) + " (restore those files, or "
                           "run again with --skip-missing to rebuild without them)")


# --- chute replay ------------------------------------------------------------------

REPLAYABLE = """
    SELECT f.file_id::text, f.seq, f.name, f.path, f.sha256, f.size_bytes, f.batch_size
    FROM chute.files f
    WHERE f.state = 'loaded' AND f.rows_rejected > 0 AND {where}
    ORDER BY f.seq
"""


def replayable(conn: db.Connection, dataset: str | None, file_ids: list[str]
               ) -> list[tuple[str, ArchivedFile]]:
    """(dataset, file) of the loaded files with rejects: those named, or the dataset's."""
    with db.transaction(conn) as cur:
        if file_ids:
            cur.execute(REPLAYABLE.replace("f.file_id::text,", "f.dataset, f.file_id::text,")
                        .format(where="f.file_id = ANY(%s::uuid[])"), (file_ids,))
        else:
            cur.execute(REPLAYABLE.replace("f.file_id::text,", "f.dataset, f.file_id::text,")
                        .format(where="f.dataset = %s"), (dataset,))
        return [(row[0], ArchivedFile(*row[1:])) for row in cur.fetchall()]


@dataclass(frozen=True)
class Replayed:
    passed: int  # rejected rows that now load
    still_rejected: int


def replay_file(cur: Any, dataset: Dataset, file: ArchivedFile,
                messages: Iterable[RowBatch | FileDone]) -> Replayed:
    """Give a loaded file's rejected rows a second chance, in the caller's transaction:
    the file's rows and rejects under the current declaration (`messages`, the transform
    of its archived bytes) are staged, and of them only the lines rejected before are
    used. Those that pass now go into the live table with their ids and lines (a keyed
    dataset's by the loader's own merge, so a replayed version never replaces a newer
    one); those that do not keep their place in chute.rejects with the current reason.
    Rows loaded before are never touched."""
    db.hold_tables(cur, [dataset])
    table = sql.Identifier("public", dataset.table)
    columns = tables.copy_columns(dataset)
    cur.execute(sql.SQL("CREATE TEMP TABLE replay_rows (LIKE {}) ON COMMIT DROP").format(table))
    cur.execute("CREATE TEMP TABLE replay_rejects (file_id uuid, line bigint, reason text, "
                "raw text) ON COMMIT DROP")
    for message in messages:
        if isinstance(message, FileDone):
            break
        if message.rows:
            cur.copy_expert(sql.SQL("COPY replay_rows ({}) FROM STDIN WITH (FORMAT binary)")
                            .format(columns), io.BytesIO(copyrows.wrap(message.rows)))
        if message.rejects:
            cur.copy_expert("COPY replay_rejects FROM STDIN", io.BytesIO(message.rejects))
    cur.execute("DELETE FROM replay_rows s WHERE NOT EXISTS (SELECT FROM chute.rejects r "
                "WHERE r.file_id = %s AND r.line = s.line)", (file.file_id,))
    cur.execute("SELECT count(*) FROM replay_rows")
    passed = cur.fetchone()[0]
    inserted = replaced = None
    if dataset.key:
        cur.execute(db.upsert_statement(dataset, "replay_rows"))
        inserted, replaced = cur.fetchone()
    else:
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM replay_rows "
                            "ON CONFLICT DO NOTHING").format(table, columns, columns))
    cur.execute("""UPDATE chute.rejects r SET reason = n.reason FROM replay_rejects n
                   WHERE r.file_id = %s AND n.line = r.line""", (file.file_id,))
    cur.execute("""DELETE FROM chute.rejects r WHERE r.file_id = %s AND NOT EXISTS (
                       SELECT FROM replay_rejects n WHERE n.line = r.line)""", (file.file_id,))
    cur.execute(
        """UPDATE chute.files SET rows_loaded = rows_loaded + %(p)s,
                  rows_rejected = rows_rejected - %(p)s,
                  rows_inserted = rows_inserted + %(i)s, rows_replaced = rows_replaced + %(r)s,
                  rows_ignored = rows_ignored + %(p)s - %(i)s - %(r)s,
                  declaration = %(d)s
           WHERE file_id = %(f)s RETURNING rows_rejected""",
        {"p": passed, "i": inserted, "r": replaced, "f": file.file_id,
         "d": dataset.declaration_hash})
    still = cur.fetchone()[0]
    cur.execute("DROP TABLE replay_rows; DROP TABLE replay_rejects")
    return Replayed(passed, still)
