-- What the first version of chute (commit d123d5b, before datasets) applied at start,
-- kept as it was for tests/integration/test_upgrade.py: a database made by it must keep
-- working when this version starts on it. Rendered with table = people; {reader} and
-- {reader_name} are filled by the test. The last three statements are an even older
-- version's btree filter indexes, which that version dropped and this one still drops.

-- chute's schema, applied at every service's start (idempotent; serialised by an
-- advisory lock so that services starting together do not race).
-- people is the loaded table (CHUTE_TABLE) and {reader} the API's read-only role.

CREATE SCHEMA IF NOT EXISTS chute;

-- One row per arrival of a file; seq is the arrival order.
CREATE TABLE IF NOT EXISTS chute.files (
    file_id       uuid PRIMARY KEY,
    seq           bigserial UNIQUE,
    name          text NOT NULL,
    path          text NOT NULL,          -- where the file is now, relative to the data dir
    sha256        text NOT NULL,
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
CREATE INDEX IF NOT EXISTS files_sha256 ON chute.files (sha256);
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

-- Rows that broke a rule: never loaded, never lost.
CREATE TABLE IF NOT EXISTS chute.rejects (
    file_id uuid NOT NULL REFERENCES chute.files ON DELETE CASCADE,
    line    bigint NOT NULL,
    reason  text NOT NULL,
    raw     text NOT NULL,
    PRIMARY KEY (file_id, line)
);

-- The loaded rows. id comes from the file's content and the line (chute.rowids);
-- (file_seq, line) says where each row came from and gives arrival order.
CREATE TABLE IF NOT EXISTS public.people (
    id         uuid PRIMARY KEY,
    first_name text NOT NULL,
    last_name  text,
    age        smallint NOT NULL CHECK (age BETWEEN 0 AND 150),
    location   text NOT NULL,
    file_seq   bigint NOT NULL,
    line       bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS people_file_line ON public.people (file_seq, line);

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
GRANT SELECT ON public.people TO {reader};

-- The API's /people filters: one GIN index over the three exact-match columns (btree_gin
-- gives GIN the scalar operator classes). GIN inserts go to a pending list that is merged
-- in bulk, so loading pays about 3 CPU-seconds per million rows for it, where three btree
-- indexes (column, file_seq, line) cost 12-17. A filtered page is then either a walk of the
-- keyset index that skips non-matching rows (a common value: it soon finds a page) or a
-- bitmap of the matching rows, sorted (a rare value, or several filters combined): the
-- planner picks by the value's frequency, which is why the API plans each query for its
-- values (plan_cache_mode). age has no index: a range over 151 values matches too many
-- rows for one to help.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS people_filters ON public.people USING gin (location, first_name, last_name);
-- Databases made by earlier versions kept a btree index per filter instead.

CREATE INDEX people_location_file_line ON public.people (location, file_seq, line);
CREATE INDEX people_first_name_file_line ON public.people (first_name, file_seq, line);
CREATE INDEX people_last_name_file_line ON public.people (last_name, file_seq, line);
