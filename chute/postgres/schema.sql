-- chute's own bookkeeping, applied at every service's start (idempotent; serialised by
-- an advisory lock so that services starting together do not race). Each dataset's
-- table is made from its declaration (tables.py) in the same transaction.
-- {reader} is the API's read-only role.

CREATE SCHEMA IF NOT EXISTS chute;

-- One row per arrival of a file; seq is the arrival order.
CREATE TABLE IF NOT EXISTS chute.files (
    file_id       uuid PRIMARY KEY,
    seq           bigserial UNIQUE,
    name          text NOT NULL,
    path          text NOT NULL,          -- where the file is now, relative to the data dir
    sha256        text,                   -- NULL: never read (see move_error below)
    size_bytes    bigint NOT NULL,
    state         text NOT NULL DEFAULT 'received' CHECK (state IN
                  ('received', 'processing', 'loaded', 'duplicate', 'quarantined', 'failed')),
    rows_total    bigint,
    rows_loaded   bigint,
    rows_rejected bigint,
    batches_total integer,                -- known once the transformer has read the whole file
    batch_size    integer,                -- fixed at the first attempt, so retries cut the same batches
    duplicate_of  uuid,
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    received_at   timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
-- Which dataset the file's rows belong to, chosen from its path by the watcher (NULL:
-- none matched, and the file was quarantined). Files recorded before datasets existed
-- were all people; the default fills them in, then goes.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'files' AND column_name = 'dataset') THEN
        ALTER TABLE chute.files ADD COLUMN dataset text DEFAULT 'people';
        ALTER TABLE chute.files ALTER COLUMN dataset DROP DEFAULT;
    END IF;
END
$$;
-- A keyed dataset's file (docs/keys.md): of its rows_loaded, how many were new keys,
-- how many replaced an older version, how many were older than the version already
-- loaded (or than a later line of the same file) and left the table as it was. NULL
-- for a dataset without a key. Set with rows_loaded from the ledger's sums.
-- Checked first: ALTER TABLE would lock the table at every start, even with nothing to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'files' AND column_name = 'rows_inserted') THEN
        ALTER TABLE chute.files ADD COLUMN rows_inserted bigint,
                                ADD COLUMN rows_replaced bigint,
                                ADD COLUMN rows_ignored bigint;
    END IF;
END
$$;
-- Why a finished file is still in work/ (chute.runtime.placement): its move out failed and is
-- tried again later; NULL once it has moved. A file never read (a link not followed, a
-- file this service may not read) has no sha256.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'files' AND column_name = 'move_error') THEN
        ALTER TABLE chute.files ADD COLUMN move_error text,
                                ALTER COLUMN sha256 DROP NOT NULL;
    END IF;
END
$$;
-- A snapshot's file (mode = "snapshot", docs/datasets.md): how many rows it removed,
-- those whose keys it does not hold. NULL for a dataset of another mode.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'files' AND column_name = 'rows_deleted') THEN
        ALTER TABLE chute.files ADD COLUMN rows_deleted bigint;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS files_sha256 ON chute.files (sha256);
CREATE INDEX IF NOT EXISTS files_dataset_seq ON chute.files (dataset, seq);
CREATE INDEX IF NOT EXISTS files_name_seq ON chute.files (name, seq);
CREATE INDEX IF NOT EXISTS files_state_seq ON chute.files (state, seq);

-- The batch ledger: a batch is loaded in the same transaction that inserts its row
-- here, so a batch delivered twice is loaded once.
CREATE TABLE IF NOT EXISTS chute.batches (
    file_id       uuid NOT NULL REFERENCES chute.files ON DELETE CASCADE,
    batch_no      integer NOT NULL,
    rows_loaded   integer NOT NULL,
    rows_rejected integer NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, batch_no)
);
-- A keyed batch's outcome per row, counted in the transaction that applied it (so a
-- redelivered batch, already here, counts nothing twice); NULL without a key.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'batches' AND column_name = 'rows_inserted') THEN
        ALTER TABLE chute.batches ADD COLUMN rows_inserted integer,
                                  ADD COLUMN rows_replaced integer,
                                  ADD COLUMN rows_ignored integer;
    END IF;
END
$$;

-- Rows that broke a rule: never loaded, never lost.
CREATE TABLE IF NOT EXISTS chute.rejects (
    file_id uuid NOT NULL REFERENCES chute.files ON DELETE CASCADE,
    line    bigint NOT NULL,
    reason  text NOT NULL,
    raw     text NOT NULL,
    PRIMARY KEY (file_id, line)
);

-- Workers that cannot work (a data folder they cannot write, say) and why: the API's
-- /ready and status page report them. A worker writes its row when it gives up at start
-- and exits; a worker of the same service that starts fine deletes them. The API counts
-- only rows reported in the last few minutes (api/queries.py PROBLEM_SECONDS): a failing
-- worker under a supervisor (compose's restart policy) starts, and reports, again sooner.
CREATE TABLE IF NOT EXISTS chute.worker_problems (
    service     text NOT NULL,            -- watcher, transformer, loader
    instance    text NOT NULL,            -- the host name: a container's id under compose
    problem     text NOT NULL,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, instance)
);
-- What kind of problem (chute.runtime.health): 'cannot work' (the worker stopped), 'is
-- restarting' (its sessions keep failing), 'is waiting' (held by something outside it:
-- the broker's alarm, a full disk). An instance may have one of each.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'worker_problems' AND column_name = 'kind') THEN
        ALTER TABLE chute.worker_problems ADD COLUMN kind text NOT NULL DEFAULT 'cannot work',
            DROP CONSTRAINT worker_problems_pkey,
            ADD PRIMARY KEY (service, instance, kind);
    END IF;
END
$$;

-- A file's completion, for the loaders: for each file given (the caller sorts them by
-- file_id, so two loaders' groups lock them in the same order), after the caller has
-- written its own pieces in this transaction (ledger rows, or the totals that a closing
-- batch or a FileDone carries, passed here as batches_totals/rows_totals, NULL where the
-- caller has none), the file becomes `loaded` if every batch is in the ledger.
-- Exactly one transaction must see a file complete, whichever loaders hold its last
-- batch and its totals. Each caller takes the file's row lock before counting: the
-- transactions that could complete the file run this part one at a time. Under READ
-- COMMITTED (the default; REPEATABLE READ would break this) each statement of a
-- VOLATILE function takes a fresh snapshot, so the count, after the lock is granted,
-- sees every piece committed by the holders before it, plus its own: whichever goes
-- last sees them all, and an earlier one sees at least one piece missing. Totals are
-- written under the same lock, so they too count as written before the next holder.
-- NO KEY UPDATE, not UPDATE: the ledger's foreign key takes KEY SHARE on this row,
-- which NO KEY UPDATE does not conflict with, so two batches of one file never
-- deadlock; FOR UPDATE would make each wait for the other's KEY SHARE.
-- The keyed counts stay NULL for a dataset without a key (keyed_datasets names those
-- with one). Returns (file_id, name) of each file that is `loaded` afterwards, whether
-- now or before: the caller moves it to archive/ (a move is idempotent).
CREATE OR REPLACE FUNCTION chute.complete_files(file_ids uuid[], batches_totals integer[],
                                                rows_totals bigint[], keyed_datasets text[],
                                                limited_datasets text[], reject_limits text[])
RETURNS TABLE (loaded_id uuid, loaded_name text, outcome text, file_dataset text,
               file_seq bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
    found_file record;
    total integer;
    zero bigint;
    counts record;
    limit_text text;
    rows_in_file bigint;
    over boolean;
BEGIN
    FOR i IN 1 .. coalesce(array_length(file_ids, 1), 0) LOOP
        loaded_id := file_ids[i];
        SELECT f.name, f.batches_total, f.dataset, f.rows_total, f.seq INTO found_file
          FROM chute.files f WHERE f.file_id = loaded_id AND f.state = 'processing'
           FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            SELECT f.name, f.dataset, f.seq INTO loaded_name, file_dataset, file_seq
              FROM chute.files f WHERE f.file_id = loaded_id AND f.state = 'loaded';
            IF FOUND THEN
                outcome := 'loaded';
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        total := coalesce(batches_totals[i], found_file.batches_total);
        IF total IS NULL THEN
            CONTINUE;  -- its totals are still to come
        END IF;
        zero := CASE WHEN found_file.dataset = ANY(keyed_datasets) THEN 0 END;
        SELECT count(*) AS batches, coalesce(sum(b.rows_loaded), 0) AS loaded,
               coalesce(sum(b.rows_rejected), 0) AS rejected,
               coalesce(sum(b.rows_inserted), zero) AS inserted,
               coalesce(sum(b.rows_replaced), zero) AS replaced,
               coalesce(sum(b.rows_ignored), zero) AS ignored
          INTO counts FROM chute.batches b WHERE b.file_id = loaded_id;
        IF counts.batches < total THEN
            IF batches_totals[i] IS NOT NULL THEN
                UPDATE chute.files f SET batches_total = batches_totals[i],
                       rows_total = rows_totals[i]
                 WHERE f.file_id = loaded_id;
            END IF;
            CONTINUE;
        END IF;
        rows_in_file := coalesce(rows_totals[i], found_file.rows_total);
        -- max_rejected: a count ("100") or a share of the file's rows ("2%").
        file_dataset := found_file.dataset;
        file_seq := found_file.seq;
        limit_text := reject_limits[array_position(limited_datasets, found_file.dataset)];
        over := limit_text IS NOT NULL AND CASE
            WHEN limit_text LIKE '%\%' THEN
                counts.rejected * 100 > rtrim(limit_text, '%')::numeric * rows_in_file
            ELSE counts.rejected > limit_text::bigint END;
        IF over THEN
            -- Failed with every row counted, none of them kept (the caller removes
            -- them); its rejects stay readable. The ledger stays too, so that a batch
            -- delivered again finds itself loaded; `chute retry` clears it.
            UPDATE chute.files f SET state = 'failed', rows_loaded = counts.loaded,
                   rows_rejected = counts.rejected, finished_at = now(),
                   batches_total = total, rows_total = rows_in_file,
                   error = format('%s of %s rows rejected, over max_rejected = %s; most '
                                  'frequent: %s', to_char(counts.rejected, 'FM999,999,999,999,990'),
                                  to_char(rows_in_file, 'FM999,999,999,999,990'),
                                  limit_text, chute.frequent_reasons(loaded_id))
             WHERE f.file_id = loaded_id;
            loaded_name := found_file.name;
            outcome := 'failed_now';
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE chute.files f SET state = 'loaded', rows_loaded = counts.loaded,
               rows_rejected = counts.rejected, rows_inserted = counts.inserted,
               rows_replaced = counts.replaced, rows_ignored = counts.ignored,
               finished_at = now(), batches_total = total, rows_total = rows_in_file
         WHERE f.file_id = loaded_id;
        loaded_name := found_file.name;
        outcome := 'loaded_now';
        RETURN NEXT;
    END LOOP;
END
$$;

-- A file's three most frequent reject reasons, each with its count, the values quoted
-- in them left out ("age: \"x\" is not a whole number" counts with every other age).
CREATE OR REPLACE FUNCTION chute.frequent_reasons(id uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(format('%s (%s)', reason, to_char(n, 'FM999,999,999,990')),
                               '; '), 'none')
      FROM (SELECT regexp_replace(r.reason, '"([^"\\]|\\.)*"…?', '"…"', 'g') AS reason,
                   count(*) AS n
              FROM chute.rejects r WHERE r.file_id = id
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3) AS top
$$;

-- mode = "snapshot": the newest snapshot merged so far, per dataset. A snapshot older
-- than it that completes later is superseded whole: it changes nothing.
CREATE TABLE IF NOT EXISTS chute.snapshots (
    dataset text PRIMARY KEY,
    seq     bigint NOT NULL
);
-- A zip archive's record (docs/datasets.md#zip-archives): each of its entries, with the
-- member arrival it became or why it was skipped. The archive itself is an arrival
-- without a dataset; each member an arrival of its own, named ARCHIVE.zip/ENTRY.
CREATE TABLE IF NOT EXISTS chute.archive_entries (
    archive_id uuid NOT NULL,  -- no foreign key: chute.files stays truncatable
    entry      text NOT NULL,
    member_id  uuid,      -- its arrival in chute.files, for a member
    skipped    text,      -- else why it was left out
    PRIMARY KEY (archive_id, entry)
);
CREATE INDEX IF NOT EXISTS archive_entries_member ON chute.archive_entries (member_id);
-- A large file cut into ranges that several transformers read at once
-- (chute/reading/ranges.py): its plan, written before any range is handed out. The same
-- file gives the same plan; a plan written twice (the event delivered again) is kept once.
CREATE TABLE IF NOT EXISTS chute.file_ranges (
    file_id     uuid NOT NULL REFERENCES chute.files ON DELETE CASCADE,
    range_no    integer NOT NULL,
    byte_start  bigint NOT NULL,
    byte_end    bigint NOT NULL,
    first_line  bigint NOT NULL,
    records     bigint NOT NULL,
    first_batch integer NOT NULL,
    sha256      text NOT NULL,
    PRIMARY KEY (file_id, range_no)
);
-- A file whose range did not read as planned is read whole at its retry (its rows and
-- ledger are cleared first: batches cut whole may be numbered otherwise).
ALTER TABLE chute.files ADD COLUMN IF NOT EXISTS read_whole boolean NOT NULL DEFAULT false;
-- Staging tables (one per staged dataset, named as its table): a keyed dataset whose
-- files merge only once complete (a snapshot, or a reject limit) keeps their rows here
-- until then (chute/postgres/finishing.py).
CREATE SCHEMA IF NOT EXISTS chute_stage;

-- The transformer's claim of a group of files, in one round trip: for each file, in
-- the order given (the caller sorts them by sha256, the order every transformer uses,
-- so two groups holding files of the same content cannot deadlock), the file's row is
-- locked; a file in a final state is left as it is; else, under a lock on its content
-- (one arrival per content at a time), it becomes `processing`, or `duplicate` when an
-- earlier arrival of the same bytes is processing or loaded. Each statement of a
-- VOLATILE function takes a fresh snapshot, so the check sees every claim committed
-- before the lock was granted, and the earlier files of the same group.
-- Returns (file_id, state: process/duplicate/a final state/unknown, batch size, the
-- batches already in the ledger, read only for a file handled before).
-- A file of a snapshot dataset (snapshot_datasets) is never a duplicate: the same state
-- sent again (an empty feed, a value put back) must be applied again.
CREATE OR REPLACE FUNCTION chute.claim_files(file_ids uuid[], new_batch_size integer,
                                             snapshot_datasets text[])
RETURNS TABLE (claimed_id uuid, claim text, claim_batch_size integer, loaded integer[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    id uuid;
    found_file record;
BEGIN
    FOREACH id IN ARRAY file_ids LOOP
        claimed_id := id;
        claim_batch_size := 0;
        loaded := ARRAY[]::integer[];
        SELECT f.state, f.sha256, f.attempts, f.dataset INTO found_file
          FROM chute.files f WHERE f.file_id = id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            claim := 'unknown';
        ELSIF found_file.state IN ('loaded', 'duplicate', 'quarantined', 'failed') THEN
            claim := found_file.state;
        ELSE
            PERFORM pg_advisory_xact_lock(hashtext(found_file.sha256));
            IF found_file.attempts > 0 OR found_file.state <> 'received' THEN
                SELECT coalesce(array_agg(b.batch_no), ARRAY[]::integer[]) INTO loaded
                  FROM chute.batches b WHERE b.file_id = id;
            END IF;
            UPDATE chute.files f SET state = 'processing', attempts = f.attempts + 1,
                   error = NULL, started_at = coalesce(f.started_at, now()),
                   batch_size = coalesce(f.batch_size, new_batch_size)
             WHERE f.file_id = id AND (found_file.dataset = ANY(snapshot_datasets)
                   OR NOT EXISTS (
                   SELECT FROM chute.files o WHERE o.sha256 = found_file.sha256
                      AND o.file_id <> id AND o.state IN ('processing', 'loaded')))
            RETURNING f.batch_size INTO claim_batch_size;
            IF FOUND THEN
                claim := 'process';
            ELSE
                UPDATE chute.files f SET state = 'duplicate', duplicate_of = (
                       SELECT o.file_id FROM chute.files o
                        WHERE o.sha256 = found_file.sha256 AND o.file_id <> id
                          AND o.state IN ('processing', 'loaded')
                        ORDER BY o.seq LIMIT 1),
                       rows_total = 0, rows_loaded = 0, rows_rejected = 0,
                       started_at = coalesce(f.started_at, now()), finished_at = now()
                 WHERE f.file_id = id;
                claim := 'duplicate';
                claim_batch_size := 0;
                loaded := ARRAY[]::integer[];
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Every declaration a dataset has had (chute.datasets.declarations.Dataset.declaration:
-- the checked TOML as canonical JSON), by its hash; each file says which one typed it.
CREATE TABLE IF NOT EXISTS chute.declarations (
    hash        text PRIMARY KEY,
    dataset     text NOT NULL,
    declaration text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now()
);
-- Each dataset's live table and the declaration it holds rows of: set when the table
-- is made or brought in step at start, and by a rebuild's swap. `shape` (Dataset.shape)
-- is what a loader checks, under this row's share lock, before writing a batch: the
-- swap takes the row's update lock, so no batch writes to a table being swapped.
CREATE TABLE IF NOT EXISTS chute.datasets (
    name        text PRIMARY KEY,
    table_name  text NOT NULL,
    declaration text NOT NULL REFERENCES chute.declarations,
    shape       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'chute'
                   AND table_name = 'files' AND column_name = 'declaration') THEN
        ALTER TABLE chute.files ADD COLUMN declaration text;
    END IF;
END
$$;

-- `chute rebuild` (chute/rebuilding): a new table loaded from the archive beside the
-- live one, then swapped in. Its progress is kept per file, so a rebuild killed at
-- any point resumes (the same declaration) or starts over (another), to the same end.
CREATE TABLE IF NOT EXISTS chute.rebuilds (
    rebuild_id  bigserial PRIMARY KEY,
    dataset     text NOT NULL,
    declaration text NOT NULL REFERENCES chute.declarations,
    table_name  text NOT NULL,            -- the table being loaded
    kept_as     text,                     -- after the swap: the old table's new name
    state       text NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'swapped', 'abandoned')),
    files_total integer,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS rebuilds_running ON chute.rebuilds (dataset)
    WHERE state = 'running';
-- Each file a rebuild has loaded (or skipped, with why), in the transaction that loaded
-- its rows into the new table; its batches' counts and its rejects under the new
-- declaration, which become the file's at the swap.
CREATE TABLE IF NOT EXISTS chute.rebuild_files (
    rebuild_id    bigint NOT NULL REFERENCES chute.rebuilds ON DELETE CASCADE,
    file_id       uuid NOT NULL,          -- no foreign key: chute.files stays truncatable
    rows_total    bigint,
    batches_total integer,
    skipped       text,                   -- why it is not in the new table
    skipped_state text CHECK (skipped_state IN ('failed', 'quarantined')),
    PRIMARY KEY (rebuild_id, file_id)
);
CREATE TABLE IF NOT EXISTS chute.rebuild_batches (
    rebuild_id    bigint NOT NULL,
    file_id       uuid NOT NULL,
    batch_no      integer NOT NULL,
    rows_loaded   integer NOT NULL,
    rows_rejected integer NOT NULL,
    rows_inserted integer,
    rows_replaced integer,
    rows_ignored  integer,
    PRIMARY KEY (rebuild_id, file_id, batch_no),
    FOREIGN KEY (rebuild_id, file_id) REFERENCES chute.rebuild_files ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE IF NOT EXISTS chute.rebuild_rejects (
    rebuild_id bigint NOT NULL,
    file_id    uuid NOT NULL,
    line       bigint NOT NULL,
    reason     text NOT NULL,
    raw        text NOT NULL,
    PRIMARY KEY (rebuild_id, file_id, line),
    FOREIGN KEY (rebuild_id, file_id) REFERENCES chute.rebuild_files ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED
);

-- The API's role: it can read and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {reader_name}) THEN
        CREATE ROLE {reader} NOLOGIN;
    END IF;
END
$$;
-- The schema's owner may need to be a member to SET ROLE to it: a login that is not a
-- superuser (RDS's master user) must be, and so must any on PostgreSQL 16 and later.
GRANT {reader} TO CURRENT_USER;
GRANT USAGE ON SCHEMA chute TO {reader};
GRANT SELECT ON ALL TABLES IN SCHEMA chute TO {reader};

-- Filter indexes are GIN over scalar columns (see tables.py).
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- The console's overview (api/console/queries.py; plans in docs/console.md): today's
-- arrivals by when they came, and the batches of the last hour by when they loaded,
-- each a short range scan however long the ledger grows.
CREATE INDEX IF NOT EXISTS files_received_at ON chute.files (received_at);
CREATE INDEX IF NOT EXISTS batches_loaded_at ON chute.batches (loaded_at);
