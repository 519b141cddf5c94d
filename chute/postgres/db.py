"""PostgreSQL for the workers: the only module that knows psycopg2.

Every state change of a file happens here, each in one transaction. psycopg2's
connection errors become DatabaseUnavailable at this edge.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files as package_files
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql
from psycopg2.extensions import connection as Connection  # noqa: N812 - re-exported type

from chute.datasets.declarations import Dataset, Datasets
from chute.errors import DatabaseUnavailable, DeclarationStale
from chute.postgres import finishing, tables
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading import copyrows
from chute.runtime import metrics

log = logging.getLogger(__name__)

SCHEMA_LOCK = 0x63687574  # "chut": serialises schema set-up between services
# The columns of FileRecord, in its order.
FILE_RECORD_COLUMNS = ("file_id::text, seq, name, path, sha256, state, error, "
                       "duplicate_of::text, size_bytes, dataset")
DEADLOCK_RETRIES = 3  # a keyed batch the server chose as a deadlock's victim runs again


@dataclass(frozen=True)
class FileRecord:
    file_id: str
    seq: int
    name: str
    path: str
    sha256: str | None  # None: never read (quarantined unread: a link, no permission)
    state: str
    error: str | None
    duplicate_of: str | None
    size_bytes: int
    dataset: str | None  # None: no dataset matched its path


def connect(url: str) -> Connection:
    try:
        conn = psycopg2.connect(
            url,
            connect_timeout=5,
            application_name="chute",
            # A server that vanished without closing the socket (a host down, a cable
            # pulled) is noticed in about 30 s instead of the kernel's two hours.
            keepalives=1,
            keepalives_idle=15,
            keepalives_interval=5,
            keepalives_count=3,
        )
        psycopg2.extras.register_uuid(conn_or_curs=conn)
    except psycopg2.Error as e:
        raise DatabaseUnavailable(f"database: {str(e).strip()}") from None
    metrics.CONNECTED.labels("database").set(1)
    return conn


@contextmanager
def transaction(conn: Connection) -> Iterator[Any]:
    """Commit on a clean exit, roll back on an exception; never leaves a transaction open.

    Losing the server raises DatabaseUnavailable: OperationalError but a deadlock (a restart's
    AdminShutdown, a refused or reset connection, the server starting up) and
    InterfaceError (a connection already closed), and any other error that left the
    connection closed. Callers then reconnect instead of counting a failure against
    the data.
    """
    try:
        with conn, conn.cursor() as cur:
            yield cur
    except psycopg2.extensions.TransactionRollbackError:
        # A deadlock or a serialization failure: an OperationalError to psycopg2, but
        # the server is there and the transaction was rolled back; the caller retries.
        raise
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
        raise DatabaseUnavailable(f"database: {str(e).strip()}") from None
    except Exception as e:
        # Not only psycopg2.Error: a COPY cut off by a server shutdown has been seen to
        # surface as a SystemError from inside psycopg2.
        if conn.closed:
            raise DatabaseUnavailable(f"database: {e!r}") from None
        raise


@contextmanager
def _admin(url: str) -> Iterator[tuple[Any, str]]:
    """A cursor (autocommit) on the server's `postgres` database, and the name of the
    database `url` names."""
    parts = urlsplit(url)
    admin = connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            yield cur, parts.path.lstrip("/")
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
        raise DatabaseUnavailable(f"database: {str(e).strip()}") from None
    finally:
        admin.close()


DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"


def ensure_database(url: str) -> None:
    """Create the database named in `url` if it is missing (connects to `postgres`)."""
    with _admin(url) as (cur, name):
        cur.execute(DATABASE_EXISTS, (name,))
        if cur.fetchone() is None:
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                pass  # another service created it at the same moment


def prepare(url: str, datasets: Datasets, reader: str) -> dict[str, str]:
    """Create the database if missing, apply the schema and bring every dataset's table
    in step: what every service does before anything else, so that nobody runs SQL by
    hand. Returns the datasets whose declaration the table cannot take ({name: the one
    line}): nothing is applied to those, and their files wait for `chute rebuild`."""
    ensure_database(url)
    conn = connect(url)
    try:
        return apply_schema(conn, datasets, reader)
    finally:
        conn.close()


def apply_schema(conn: Connection, datasets: Datasets, reader: str) -> dict[str, str]:
    text = package_files("chute.postgres").joinpath("schema.sql").read_text()
    statement = sql.SQL(text).format(reader=sql.Identifier(reader),
                                     reader_name=sql.Literal(reader))
    with transaction(conn) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cur.execute(statement)
        changes, refused = tables.apply(cur, datasets, reader)
        for change in changes:
            log.info("table changed", extra={"change": change})
    return refused


def plan_tables(url: str, datasets: Datasets) -> list[tables.TablePlan]:
    """What start-up would do for each dataset, without doing it (`chute datasets`); a
    database that does not exist yet would get every table."""
    if not database_exists(url):
        return [tables.plan_new(dataset) for dataset in datasets]
    conn = connect(url)
    try:
        with transaction(conn) as cur:
            return [tables.plan(cur, dataset) for dataset in datasets]
    finally:
        conn.close()


def database_exists(url: str) -> bool:
    with _admin(url) as (cur, name):
        cur.execute(DATABASE_EXISTS, (name,))
        return cur.fetchone() is not None


# --- workers that cannot work ------------------------------------------------------


def report_problem(url: str, service: str, instance: str, problem: str,
                   kind: str = "cannot work") -> None:
    """Record what keeps `instance` of `service` from working (chute.runtime.health's kinds), for
    the API's /ready and status page to say."""
    conn = connect(url)
    try:
        with transaction(conn) as cur:
            cur.execute(
                """INSERT INTO chute.worker_problems (service, instance, kind, problem)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (service, instance, kind)
                   DO UPDATE SET problem = excluded.problem, reported_at = now()""",
                (service, instance, kind, problem),
            )
    finally:
        conn.close()


def clear_problem(url: str, service: str, instance: str, kind: str) -> None:
    """What `instance` reported of this kind is over."""
    conn = connect(url)
    try:
        with transaction(conn) as cur:
            cur.execute("DELETE FROM chute.worker_problems WHERE service = %s AND "
                        "instance = %s AND kind = %s", (service, instance, kind))
    finally:
        conn.close()


def clear_problems(url: str, service: str) -> None:
    """A worker of `service` started fine: what its predecessors reported is over."""
    conn = connect(url)
    try:
        with transaction(conn) as cur:
            cur.execute("DELETE FROM chute.worker_problems WHERE service = %s", (service,))
    finally:
        conn.close()


# --- the watcher -------------------------------------------------------------------


def register_file(
    conn: Connection, file_id: str, name: str, path: str, sha256: str, size: int,
    dataset: str | None,
) -> FileRecord:
    """Record an arrival (idempotent: a second call returns the first record)."""
    return register_files(conn, [(file_id, name, path, sha256, size, dataset)])[0]


def register_files(conn: Connection,
                   arrivals: list[tuple[str, str, str, str, int, str | None]]
                   ) -> list[FileRecord]:
    """Record arrivals (file_id, name, path, sha256, size, dataset), in one transaction
    and in this order (their seq); idempotent: a file already recorded keeps its first
    record."""
    records = []
    with transaction(conn) as cur:  # one commit for a burst of files
        for arrival in arrivals:
            cur.execute(
                f"""INSERT INTO chute.files (file_id, name, path, sha256, size_bytes, dataset)
                    VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (file_id) DO NOTHING
                    RETURNING {FILE_RECORD_COLUMNS}""",
                arrival,
            )
            row = cur.fetchone()
            if row is None:
                cur.execute(f"SELECT {FILE_RECORD_COLUMNS} FROM chute.files "
                            "WHERE file_id = %s", (arrival[0],))
                row = cur.fetchone()
            assert row is not None
            records.append(FileRecord(*row))
    return records


def record_entries(conn: Connection, archive_id: str,
                   entries: list[tuple[str, str | None, str | None]]) -> None:
    """A zip archive's entries (name, member file id or None, why skipped or None), once:
    an archive taken apart again after a crash records the same."""
    with transaction(conn) as cur:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO chute.archive_entries (archive_id, entry, member_id, skipped) "
                 "VALUES %s ON CONFLICT DO NOTHING",
            [(archive_id, *entry) for entry in entries], page_size=1000)


def get_file(conn: Connection, file_id: str) -> FileRecord | None:
    with transaction(conn) as cur:
        cur.execute(
            f"SELECT {FILE_RECORD_COLUMNS} FROM chute.files WHERE file_id = %s",
            (file_id,),
        )
        row = cur.fetchone()
    return FileRecord(*row) if row else None


def set_path(conn: Connection, file_id: str, path: str) -> None:
    with transaction(conn) as cur:
        cur.execute("UPDATE chute.files SET path = %s WHERE file_id = %s", (path, file_id))


def get_path(conn: Connection, file_id: str) -> str | None:
    with transaction(conn) as cur:
        cur.execute("SELECT path FROM chute.files WHERE file_id = %s", (file_id,))
        row = cur.fetchone()
    return row[0] if row else None


def move_paths(conn: Connection, moves: list[tuple[str, str, str]]) -> set[str]:
    """Record where files are about to go (file_id, path recorded now, new path), in one
    transaction, each only if its recorded path is still the one given (a concurrent
    mover may have chosen first): the file ids recorded. A move recorded clears the
    file's move_error: a failed move is tried again only by a new one."""
    if not moves:
        return set()
    ids, old, new = (list(column) for column in zip(*moves, strict=True))
    with transaction(conn) as cur:
        cur.execute(
            """UPDATE chute.files f SET path = m.new, move_error = NULL
               FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS m(file_id, old, new)
               WHERE f.file_id = m.file_id AND f.path = m.old
               RETURNING f.file_id::text""", (ids, old, new))
        return {row[0] for row in cur.fetchall()}


def set_move_error(conn: Connection, file_id: str, error: str | None) -> None:
    """Why a finished file is still in work/ (None: it is not): shown with the file."""
    with transaction(conn) as cur:
        cur.execute("UPDATE chute.files SET move_error = %s WHERE file_id = %s",
                    (error, file_id))


# --- the transformer ---------------------------------------------------------------


def begin_processing(conn: Connection, file_id: str, batch_size: int,
                     snapshots: Collection[str] = ()) -> tuple[str, int]:
    """Claim a file for transforming: ('process', batch size to use), ('duplicate', 0),
    or (its final state, 0) when there is nothing left to do.

    A redelivered event for a file already being processed is processed again: the
    batches are deterministic (the batch size is fixed at the first attempt) and the
    loader's ledger drops the ones already loaded.
    """
    state, size, _loaded = begin_processing_many(conn, [(file_id, "")], batch_size,
                                                 snapshots=snapshots)[file_id]
    return state, size


def begin_processing_many(conn: Connection, files: list[tuple[str, str]], batch_size: int,
                          declarations: dict[str, str] | None = None,
                          snapshots: Collection[str] = ()
                          ) -> dict[str, tuple[str, int, set[int]]]:
    """begin_processing for several files (file_id, sha256) in one transaction and one
    round trip (chute.claim_files, in schema.sql): {file_id: (state, batch size, batches
    already in the ledger)}. The ledger is read only for a file handled before (a first
    claim has none): the transformer needs no other statement before sending a file.

    Files are claimed in sha256 order, the order every transformer uses, so two groups
    holding files of the same content cannot deadlock; a file whose content is also
    earlier in the group is its duplicate, as it would be one transaction later. A file
    of a dataset named in `snapshots` (mode = "snapshot") is never a duplicate.
    """
    ordered = [file_id for file_id, _sha256 in sorted(files, key=lambda f: (f[1], f[0]))]
    with transaction(conn) as cur:
        cur.execute("SELECT claimed_id::text, claim, claim_batch_size, loaded "
                    "FROM chute.claim_files(%s::uuid[], %s, %s::text[])",
                    (ordered, batch_size, list(snapshots)))
        claims = {file_id: (state, size, set(loaded))
                  for file_id, state, size, loaded in cur.fetchall()}
        typed = [(f, h) for f, h in (declarations or {}).items()
                 if claims.get(_canonical(f), ("",))[0] == "process"]
        if typed:  # which declaration types each file: its history says
            cur.execute("UPDATE chute.files f SET declaration = d.hash FROM unnest("
                        "%s::uuid[], %s::text[]) AS d(file_id, hash) WHERE f.file_id = d.file_id",
                        ([f for f, _h in typed], [h for _f, h in typed]))
        return claims


def table_shapes(conn: Connection) -> dict[str, str]:
    """The shape (Dataset.shape) each dataset's live table holds, by dataset."""
    with transaction(conn) as cur:
        cur.execute("SELECT name, shape FROM chute.datasets")
        return dict(cur.fetchall())


def hold_files(conn: Connection, file_ids: list[str], why: str) -> None:
    """Files of a held dataset wait, `received`, saying why; a claim clears it."""
    with transaction(conn) as cur:
        cur.execute("UPDATE chute.files SET error = %s WHERE file_id = ANY(%s::uuid[]) "
                    "AND state = 'received'", (why, file_ids))


def finish_file(conn: Connection, file_id: str, state: str, error: str | None) -> None:
    """Give a file a final state that has no rows: quarantined or failed, or loaded for a
    zip archive taken apart into its members."""
    with transaction(conn) as cur:
        cur.execute(
            """UPDATE chute.files SET state = %s, error = %s, finished_at = now()
               WHERE file_id = %s AND state NOT IN ('loaded', 'duplicate')""",
            (state, error, file_id),
        )


def fail_file(conn: Connection, file_id: str, error: str) -> bool:
    """Mark an unfinished file `failed` with `error`; True if it was unfinished.

    A file that already has a final state keeps it, and keeps its first error: the
    dead-letter notice that follows a handler's own verdict must not blur it.
    """
    with transaction(conn) as cur:
        cur.execute(
            """UPDATE chute.files SET state = 'failed', error = %s, finished_at = now()
               WHERE file_id = %s AND state IN ('received', 'processing')""",
            (error, file_id),
        )
        return cur.rowcount > 0


def reset_for_retry(conn: Connection, file_id: str, path: str) -> FileRecord:
    """Put a quarantined or failed file back to `received` at `path` (under work/), for
    `chute retry`; returns its record.

    The ledger and the batch size are kept: the retry cuts the same batches, and those
    already loaded are neither sent nor loaded again (but for a file that failed over
    its reject limit, whose rows are gone: it loads again whole). A file in another state is left
    as it is (a FileArrived for it is harmless: the transformer sees its state).
    """
    with transaction(conn) as cur:
        # A file failed with every batch in (over its reject limit) kept none of its
        # rows: its batches and rejects go, and the retry loads it whole.
        cur.execute(
            """WITH removed AS (
                   SELECT f.file_id FROM chute.files f WHERE f.file_id = %(id)s
                      AND f.state = 'failed' AND f.batches_total IS NOT NULL
                      AND f.batches_total <= (SELECT count(*) FROM chute.batches b
                                              WHERE b.file_id = f.file_id)),
               gone AS (DELETE FROM chute.batches WHERE file_id IN (SELECT * FROM removed))
               DELETE FROM chute.rejects WHERE file_id IN (SELECT * FROM removed)""",
            {"id": file_id})
        cur.execute(
            """UPDATE chute.files SET state = 'received', path = %s, error = NULL,
                      rows_loaded = NULL, rows_rejected = NULL, finished_at = NULL,
                      rows_inserted = NULL, rows_replaced = NULL, rows_ignored = NULL,
                      rows_deleted = NULL,
                      -- the new FileDone sets these again; until then the file cannot
                      -- complete (the FileDone is sent only once the bytes are verified)
                      batches_total = NULL, rows_total = NULL
               WHERE file_id = %s AND state IN ('quarantined', 'failed')""",
            (path, file_id),
        )
    record = get_file(conn, file_id)
    if record is None:
        raise LookupError(f"no file {file_id}")
    return record


# --- the loader --------------------------------------------------------------------


def load_batch(conn: Connection, dataset: Dataset, batch: RowBatch) -> str | None:
    """Write a batch's rows and rejects and record it in the ledger, in one transaction.

    A batch already in the ledger is skipped: redelivery has no second effect.
    Returns the file's name when the file is `loaded` after this transaction (this
    batch completed it, or a redelivered batch finds it complete), so the caller moves
    it to archive/ before acknowledging: a crash between the commit and the move is
    repaired by the redelivery.

    A keyed dataset's batch is merged into its table (upsert_rows) and its ledger row
    keeps how many rows it inserted, replaced and ignored. Two keyed batches that touch
    the same keys can, rarely, deadlock (each waits for a key the other inserted): the
    server cancels one, which is then simply run again, a few times at most.
    """
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            return _load_batch(conn, dataset, batch)
        except psycopg2.errors.DeadlockDetected:
            if attempt == DEADLOCK_RETRIES:
                raise
            log.info("batch deadlocked, running it again",
                     extra={"file_id": batch.file_id, "batch_no": batch.batch_no})
    raise AssertionError("unreachable")


def load_batches(conn: Connection, work: list[tuple[Dataset, RowBatch]]
                 ) -> list[str | None]:
    """load_batch for several batches of datasets without a key, in one transaction
    and a few statements: one ledger INSERT for all, one COPY of rows per dataset, one
    of rejects, one completion (chute.complete_files) for all their files. A burst of
    small files costs a handful of statements per group instead of several per file.
    One batch that fails rolls back the group, and the caller then loads each alone,
    so that the batch at fault meets its own retries. Returns, for each batch, its
    file's name when the file is `loaded` afterwards.

    The caller sorts `work` by (file_id, batch_no): two loaders' groups then lock
    their files' rows in the same order. Keyed batches are not grouped: their rows lock
    keys, and two groups taking keys of different batches in different orders could
    deadlock.
    """
    assert not any(dataset.key for dataset, _batch in work)
    batches = [batch for _dataset, batch in work]
    with transaction(conn) as cur:
        hold_tables(cur, list({d.name: d for d, _batch in work}.values()))
        cur.execute(
            """INSERT INTO chute.batches (file_id, batch_no, rows_loaded, rows_rejected)
               SELECT * FROM unnest(%s::uuid[], %s::integer[], %s::integer[], %s::integer[])
               ON CONFLICT DO NOTHING RETURNING file_id::text, batch_no""",
            ([b.file_id for b in batches], [b.batch_no for b in batches],
             [b.row_count for b in batches], [b.reject_count for b in batches]),
        )
        # What the INSERT wrote, matched by the file id's canonical text. A batch sent
        # twice (a transformer that crashed before its ack sends again what the ledger
        # lacks) may be twice in one group: only its first copy is new.
        unseen = set(cur.fetchall())
        is_new = []
        for batch in batches:
            key = (_canonical(batch.file_id), batch.batch_no)
            is_new.append(key in unseen)
            unseen.discard(key)
        new = [item for item, fresh in zip(work, is_new, strict=True) if fresh]
        # Binary COPY tuples and COPY text lines both concatenate: one COPY for many.
        by_dataset: dict[str, tuple[Dataset, list[bytes]]] = {}
        for dataset, batch in new:
            by_dataset.setdefault(dataset.name, (dataset, []))[1].append(batch.rows)
        for dataset, rows in by_dataset.values():
            if any(rows):
                copy_rows(cur, dataset, b"".join(rows))
        rejects = b"".join(batch.rejects for _dataset, batch in new)
        if rejects:
            _copy_rejects(cur, rejects)
        # A file's totals come with its closing batch, when the group holds it.
        totals = {batch.file_id: batch.done for batch in batches if batch.done is not None}
        loaded = _complete(cur, list(dict.fromkeys(b.file_id for b in batches)), totals,
                           list({d.name: d for d, _batch in work}.values()))
    for batch, fresh in zip(batches, is_new, strict=True):
        _count(batch, fresh, None)
    return [loaded.get(batch.file_id) for batch in batches]


def hold_tables(cur: Any, datasets: list[Dataset]) -> None:
    """Share-lock each dataset's row of chute.datasets for this transaction, and check
    that its table holds rows of this worker's shape. A rebuild's swap takes the row's
    update lock: it waits for the batches writing to the old table, and the batches
    after it write to the new one (whose shape a stale worker would not fit)."""
    cur.execute("SELECT name, shape FROM chute.datasets WHERE name = ANY(%s) ORDER BY name "
                "FOR SHARE", ([d.name for d in datasets],))
    found = dict(cur.fetchall())
    for dataset in datasets:
        if found.get(dataset.name, dataset.shape) != dataset.shape:
            raise DeclarationStale(
                f"dataset {dataset.name}: its table now holds another declaration than "
                "this worker's (rebuilt since it started): restart it with the current "
                "datasets file")


def _load_batch(conn: Connection, dataset: Dataset, batch: RowBatch) -> str | None:
    with transaction(conn) as cur:
        completed, fresh, counts = _load_in(cur, dataset, batch)
    _count(batch, fresh, counts)  # after the commit: never rows that were rolled back
    return completed


def _load_in(cur: Any, dataset: Dataset, batch: RowBatch
             ) -> tuple[str | None, bool, tuple[int, int, int] | None]:
    """A batch's statements, in the caller's transaction: (the file's name if it is
    loaded afterwards, whether the batch was new, its keyed counts)."""
    outcome = None
    hold_tables(cur, [dataset])
    cur.execute(
        """INSERT INTO chute.batches (file_id, batch_no, rows_loaded, rows_rejected)
           VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1""",
        (batch.file_id, batch.batch_no, batch.row_count, batch.reject_count),
    )
    fresh = cur.fetchone() is not None
    if fresh:
        if dataset.staged:
            if batch.rows:  # merged once the file is complete (chute/postgres/finishing.py)
                finishing.stage_rows(cur, dataset, batch.rows)
        elif dataset.key:
            outcome = (upsert_rows(cur, dataset, batch.rows, batch.row_count)
                       if batch.rows else (0, 0, 0))
            cur.execute(
                """UPDATE chute.batches SET rows_inserted = %s, rows_replaced = %s,
                          rows_ignored = %s
                   WHERE file_id = %s AND batch_no = %s""",
                (*outcome, batch.file_id, batch.batch_no),
            )
        elif batch.rows:
            copy_rows(cur, dataset, batch.rows)
        if batch.rejects:
            _copy_rejects(cur, batch.rejects)
    # The last batch closes its file (no FileDone): its totals are written with the
    # completion. A redelivered closing batch whose file was reset (a retry) writes
    # them again, as a FileDone would.
    totals = {batch.file_id: batch.done} if batch.done is not None else {}
    completed = _complete(cur, [batch.file_id], totals, [dataset]).get(batch.file_id)
    return completed, fresh, outcome


def _complete(cur: Any, file_ids: list[str], totals: dict[str, FileDone],
              datasets: Collection[Dataset]) -> dict[str, str]:
    """chute.complete_files (see schema.sql), then what finishing does for the files
    it finished: {file_id: name} of the files among `file_ids` (as given) that are
    `loaded` afterwards. `totals`: the FileDone (or a closing batch's totals) of the
    files that have one in hand; `datasets`: those the files may belong to."""
    limited = [d for d in datasets if d.max_rejected is not None]
    cur.execute(
        "SELECT loaded_id::text, loaded_name, outcome, file_dataset, file_seq "
        "FROM chute.complete_files(%s::uuid[], %s::integer[], %s::bigint[], %s::text[], "
        "%s::text[], %s::text[])",
        (file_ids,
         [totals[f].batches if f in totals else None for f in file_ids],
         [totals[f].rows_total if f in totals else None for f in file_ids],
         [d.name for d in datasets if d.key],
         [d.name for d in limited],
         [d.max_rejected.declared for d in limited]),  # type: ignore[union-attr]
    )
    results = cur.fetchall()
    finishing.finish(cur, datasets, [finishing.Finished(file_id, outcome, dataset, seq)
                                     for file_id, _name, outcome, dataset, seq in results
                                     if outcome != "loaded"])
    names = {file_id: name for file_id, name, outcome, _d, _s in results
             if outcome != "failed_now"}  # by the canonical text of each id
    found = {f: names.get(_canonical(f)) for f in file_ids}
    return {f: name for f, name in found.items() if name is not None}


def _canonical(file_id: str) -> str:
    """A uuid as PostgreSQL writes it (a message may spell it otherwise)."""
    return str(uuid.UUID(file_id))


def _copy_rejects(cur: Any, rejects: bytes) -> None:
    cur.copy_expert("COPY chute.rejects (file_id, line, reason, raw) FROM STDIN",
                    io.BytesIO(rejects))


def _count(batch: RowBatch, fresh: bool, outcome: tuple[int, int, int] | None) -> None:
    if fresh:
        metrics.BATCHES.labels("loaded").inc()
        metrics.ROWS.labels(batch.dataset, "loaded").inc(batch.row_count)
        metrics.ROWS.labels(batch.dataset, "rejected").inc(batch.reject_count)
        if outcome is not None:
            for label, count in zip(("inserted", "replaced", "ignored"), outcome, strict=True):
                metrics.KEYED_ROWS.labels(batch.dataset, label).inc(count)
    else:
        metrics.BATCHES.labels("skipped").inc()
        log.info("batch already loaded",
                 extra={"file_id": batch.file_id, "batch_no": batch.batch_no})


def copy_rows(cur: Any, dataset: Dataset, rows: bytes) -> None:
    """COPY the rows (binary tuples, see copyrows); if some already exist (an earlier
    arrival of the same bytes that failed half-way), insert only the missing ones
    instead: never a second copy."""
    table, columns = dataset.table, tables.copy_columns(dataset)
    target = sql.SQL("{} ({})").format(sql.Identifier("public", table), columns)
    stream = copyrows.wrap(rows)
    cur.execute("SAVEPOINT copy_rows")
    try:
        cur.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT binary)").format(target),
                        io.BytesIO(stream))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT copy_rows")
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE incoming ON COMMIT DROP AS SELECT * FROM public.{} WITH NO DATA"
            ).format(sql.Identifier(table))
        )
        cur.copy_expert(sql.SQL("COPY incoming ({}) FROM STDIN WITH (FORMAT binary)").format(
            columns), io.BytesIO(stream))
        cur.execute(
            sql.SQL("INSERT INTO {} SELECT {} FROM incoming ON CONFLICT DO NOTHING").format(
                target, columns)
        )
        cur.execute("DROP TABLE incoming")  # another batch of a group may need it


def upsert_rows(cur: Any, dataset: Dataset, rows: bytes, count: int) -> tuple[int, int, int]:
    """Merge a keyed batch into its table; returns how many of its `count` rows were
    inserted (a new key), replaced an older version, or were ignored.

    The rule makes the table a function of the data alone: a key's row is the version
    with the greatest (file_seq, line), i.e. the latest in arrival order. Each version
    is compared with the one in the table, not with what loaded before it, so batches
    may commit in any order, twice, on any number of loaders: the result is the one of
    a single in-order load.

    Set-based, never a statement per row: the tuples are COPied into a staging table
    (temporary, one per connection and dataset, emptied at every commit), collapsed to
    one row per key (DISTINCT ON: the latest line wins within the batch, sorted by key
    so that concurrent batches take their keys in one order, which keeps deadlocks
    rare), then one INSERT ... ON CONFLICT (key) DO UPDATE whose WHERE keeps the newer
    version. ON CONFLICT re-reads a row another loader just committed and compares
    with that, so two loaders never lose each other's newer version.

    Counting: RETURNING yields only the rows written; an inserted tuple has no xmax
    yet, an updated one carries ours (the row lock ON CONFLICT took). Every other row
    of the batch (older than the table's, or than a later line of this batch) was
    ignored. The counts are kept with the ledger row, in this transaction.

    `id` is the id of the line the current version came from (rowids), so a replaced
    row takes its new line's id. An id is unique to its bytes and line, and the same
    line always gives the same key, so the id of an incoming row can exist in the
    table only on the row of its own key, the one ON CONFLICT updates. Unless the
    declaration changed how the key is read between two arrivals of the same bytes
    (an earlier one failed half-way; a loaded one makes the next a duplicate): then
    that line is in the table already under another key, and it is ignored, as the
    unkeyed path skips rows already loaded (copy_rows).
    """
    staging = staging_table(cur, dataset)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
        sql.Identifier(staging), tables.copy_columns(dataset)), io.BytesIO(copyrows.wrap(rows)))
    inserted, replaced = merge_staging(cur, dataset, staging)
    return inserted, replaced, count - inserted - replaced


def staging_table(cur: Any, dataset: Dataset) -> str:
    """The connection's temporary table for a keyed merge (emptied at every commit)."""
    staging = _staging_name(dataset)
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS")
                .format(sql.Identifier(staging), sql.Identifier("public", dataset.table)))
    return staging


def merge_staging(cur: Any, dataset: Dataset, staging: str) -> tuple[int, int]:
    """Merge the rows of `staging` into the table (see upsert_rows): (inserted,
    replaced)."""
    cur.execute("SAVEPOINT upsert_rows")
    try:
        cur.execute(upsert_statement(dataset, staging))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT upsert_rows")
        cur.execute(upsert_statement(dataset, staging, skip_lines_loaded=True))
    inserted, replaced = cur.fetchone()
    return inserted, replaced


# The merge of a keyed batch (see upsert_rows). {guard} is empty but after an id
# conflict. The row comparison is on (file_seq, line): arrival order, then line.
UPSERT = """
WITH written AS (
    INSERT INTO {table} AS t ({columns})
    SELECT DISTINCT ON ({key}) {columns} FROM {staging} s {guard}
    ORDER BY {key}, s.file_seq DESC, s.line DESC
    ON CONFLICT ({arbiter}) DO UPDATE SET ({columns}) = ROW({excluded})
    WHERE (excluded.file_seq, excluded.line) > (t.file_seq, t.line)
    RETURNING t.xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""


def upsert_statement(dataset: Dataset, staging: str,
                     skip_lines_loaded: bool = False) -> sql.Composable:
    """UPSERT for a dataset and a staging table (public: the benchmark's floor runs the
    very same statement by hand). skip_lines_loaded leaves out the staged rows whose id
    the table holds under another key (see upsert_rows)."""
    table = sql.Identifier("public", dataset.table)
    names = ("id", *(c.name for c in dataset.columns), "file_seq", "line")

    def keys(alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias),
                                                          sql.Identifier(name))
                                  for name in dataset.key)

    guard = sql.SQL("")
    if skip_lines_loaded:
        guard = sql.SQL("WHERE NOT EXISTS (SELECT FROM {} p WHERE p.id = s.id "
                        "AND (({}) IS DISTINCT FROM ({})))").format(table, keys("p"), keys("s"))
    return sql.SQL(UPSERT).format(
        table=table, columns=tables.copy_columns(dataset), staging=sql.Identifier(staging),
        key=keys("s"), arbiter=sql.SQL(", ").join(map(sql.Identifier, dataset.key)),
        excluded=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(name))
                                    for name in names),
        guard=guard)


def _staging_name(dataset: Dataset) -> str:
    """The staging table's name: a table's name may already be 63 characters long."""
    return "staging_" + hashlib.sha1(dataset.table.encode()).hexdigest()[:16]


def record_done(conn: Connection, done: FileDone,
                datasets: Collection[Dataset] = ()) -> str | None:
    """Record a file's totals; returns its name if the file is `loaded` afterwards
    (every batch was already in), as load_batch does.

    `datasets`: those the file may belong to (a FileDone does not name its dataset),
    for their key (a keyed file without rows, a header alone, then counts 0 inserted,
    replaced and ignored, not NULL), their reject limit and their staging."""
    with transaction(conn) as cur:
        return _complete(cur, [done.file_id], {done.file_id: done}, datasets
                         ).get(done.file_id)


# --- recovery ----------------------------------------------------------------------


def files_by_id(conn: Connection, file_ids: list[str]) -> dict[str, FileRecord]:
    if not file_ids:
        return {}
    with transaction(conn) as cur:
        cur.execute(
            f"SELECT {FILE_RECORD_COLUMNS} FROM chute.files WHERE file_id = ANY(%s::uuid[])",
            (file_ids,),
        )
        return {row[0]: FileRecord(*row) for row in cur.fetchall()}
