"""Each dataset's table, made from its declaration and kept in step with it at start.

A table holds `id` (uuid, the primary key, derived from the file's content and line), the
declared columns in their order, and `file_seq` and `line`: which arrival of which file
and which line each row came from, which is also the arrival order the API pages in.

At start every service compares each declaration with the database (plan) and, under
one advisory lock so that services starting together do not race, applies what is safe:
a missing table is created, a new optional column is added, the filter index follows
the declared filters, a key declared on an empty table gets its unique index. Anything
else (a type changed, a column removed or made required, a key added to a table that
holds rows, changed or removed) refuses with one line naming the dataset, the column,
what the table has and what the file says, and `chute rebuild`: chute never drops or
rewrites loaded data on its own. A refused dataset's files wait; the others run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from chute.datasets.declarations import LINEAGE, Column, Dataset, Datasets


@dataclass(frozen=True)
class Action:
    description: str  # for `chute datasets` and the log
    statement: sql.Composable


@dataclass(frozen=True)
class TablePlan:
    dataset: Dataset
    exists: bool
    actions: tuple[Action, ...]
    refusal: str | None  # why start-up would stop, or None

    @property
    def summary(self) -> str:
        if self.refusal:
            return f"refused: {self.refusal} (run \"chute rebuild {self.dataset.name}\")"
        if not self.actions:
            return "matches the database"
        return "; ".join(a.description for a in self.actions)


def copy_columns(dataset: Dataset) -> sql.Composed:
    """The columns of a batch's COPY, in the tuples' order (see copyrows), comma-separated."""
    names = ("id", *(c.name for c in dataset.columns), "file_seq", "line")
    return sql.SQL(", ").join(map(sql.Identifier, names))


def plan(cur: Any, dataset: Dataset) -> TablePlan:
    """What start-up would do for one dataset, read from the catalogue; changes nothing."""
    table = sql.Identifier("public", dataset.table)
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relname = %s AND a.attnum > 0
             AND NOT a.attisdropped ORDER BY a.attnum""",
        (dataset.table,),
    )
    found = {name: (kind, not_null) for name, kind, not_null in cur.fetchall()}
    if not found:
        return plan_new(dataset)

    def refuse(message: str) -> TablePlan:
        return TablePlan(dataset, True, (), f"dataset {dataset.name}: table "
                                            f"{dataset.table}: {message}")

    if not set(LINEAGE) <= set(found):
        return refuse("exists but was not made by chute (it has no "
                      f"{', '.join(c for c in LINEAGE if c not in found)} column)")
    actions = []
    for column in dataset.columns:
        if column.name not in found:
            if column.required:
                return refuse(f"column {column.name}: the file says required "
                              f"{column.type.name}, the table has no such column (declare "
                              "it optional to have it added)")
            actions.append(Action(
                f"add column {column.name} {column.type.pg_type}",
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    table, sql.Identifier(column.name), sql.SQL(column.type.pg_type))))
            continue
        kind, not_null = found[column.name]
        if kind != column.type.pg_type:
            return refuse(f"column {column.name}: the table has {kind}, the file says "
                          f"{column.type.name}")
        if not_null != column.required:
            has, says = ("NOT NULL", "optional") if not_null else ("nullable", "required")
            return refuse(f"column {column.name}: the table has it {has}, the file says "
                          f"{says}")
    declared = {c.name for c in dataset.columns} | set(LINEAGE)
    extra = [name for name in found if name not in declared]
    if extra:
        return refuse(f"column {extra[0]}: the table has it, the file does not declare it")
    keyed = _index_columns(cur, key_index(dataset))
    if keyed != dataset.key:
        refusal = _key_change(cur, dataset, table, keyed)
        if refusal:
            return refuse(refusal)
        if keyed:
            actions.append(Action(
                f"drop the key index on {', '.join(keyed)} (the table is empty)",
                sql.SQL("DROP INDEX {}").format(sql.Identifier("public", key_index(dataset)))))
        actions.extend(_key_index(dataset, table))
    indexed = _index_columns(cur, _filters_index(dataset))
    if indexed != dataset.filters:
        if indexed:
            actions.append(Action(
                f"drop the filter index on {', '.join(indexed)}",
                sql.SQL("DROP INDEX {}").format(
                    sql.Identifier("public", _filters_index(dataset)))))
        actions.extend(_filter_index(dataset, table))
    return TablePlan(dataset, True, tuple(actions), None)


def plan_new(dataset: Dataset) -> TablePlan:
    """The plan for a table that does not exist yet (nor, perhaps, its database)."""
    table = sql.Identifier("public", dataset.table)
    return TablePlan(dataset, False, tuple(_create(dataset, table)), None)


def apply(cur: Any, datasets: Datasets, reader: str) -> tuple[list[str], dict[str, str]]:
    """Bring every dataset's table in step (the caller holds the schema lock, in one
    transaction); returns what was done, and the datasets refused ({name: the one
    line}): their tables are left as they are, and their files wait for `chute rebuild`
    while the other datasets run."""
    plans = [plan(cur, dataset) for dataset in datasets]
    refused = {p.dataset.name: f"{p.refusal} (run \"chute rebuild {p.dataset.name}\")"
               for p in plans if p.refusal}
    done = []
    for p in plans:
        if p.refusal:
            continue
        # Versions before the GIN filter index kept a btree (column, file_seq, line) per
        # filter; a database made by one may still have them, which only cost loading.
        for column in p.dataset.filters:
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier("public", f"{p.dataset.table}_{column}_file_line")))
        for action in p.actions:
            cur.execute(action.statement)
            done.append(f"dataset {p.dataset.name}: {action.description}")
        # Every start: the reader role reads every table (it may have been made later).
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier("public", p.dataset.table), sql.Identifier(reader)))
        if p.dataset.staged:
            ensure_stage(cur, p.dataset)
        record_declaration(cur, p.dataset)
    return done, refused


def stage_table(dataset: Dataset) -> sql.Identifier:
    """Where a staged dataset's rows wait for their file to complete (finishing.py)."""
    return sql.Identifier("chute_stage", dataset.table)


def ensure_stage(cur: Any, dataset: Dataset) -> None:
    """The staging table of a staged dataset, shaped as its table: made LIKE it, and
    given any column the table has gained since (rows come as the table's COPY
    tuples). Rows waiting in it are kept."""
    stage, table = stage_table(dataset), sql.Identifier("public", dataset.table)
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(stage, table))
    cur.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (file_seq)").format(
        sql.Identifier(f"{dataset.table[:50]}_file_seq"), stage))
    cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod)
                   FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0
                    AND NOT a.attisdropped AND a.attname NOT IN (
                        SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass
                           AND attnum > 0 AND NOT attisdropped)
                   ORDER BY a.attnum""",
                (f'public."{dataset.table}"', f'chute_stage."{dataset.table}"'))
    for name, pg_type in cur.fetchall():
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            stage, sql.Identifier(name), sql.SQL(pg_type)))


def drop_stage(cur: Any, dataset: Dataset) -> None:
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage_table(dataset)))


def record_declaration(cur: Any, dataset: Dataset) -> None:
    """The table now holds rows of `dataset`'s declaration: kept in chute.declarations
    (once per hash) and named in chute.datasets. Services that start with declarations
    of one shape (a rule relaxed, say) take turns here; their tables are the same."""
    cur.execute("INSERT INTO chute.declarations (hash, dataset, declaration) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (dataset.declaration_hash, dataset.name, dataset.declaration))
    cur.execute(
        """INSERT INTO chute.datasets (name, table_name, declaration, shape)
           VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE
           SET table_name = excluded.table_name, declaration = excluded.declaration,
               shape = excluded.shape, updated_at = now()
           WHERE (chute.datasets.declaration, chute.datasets.shape)
                 IS DISTINCT FROM (excluded.declaration, excluded.shape)""",
        (dataset.name, dataset.table, dataset.declaration_hash, dataset.shape))


def _create(dataset: Dataset, table: sql.Identifier) -> list[Action]:
    columns = [sql.SQL("id uuid PRIMARY KEY")]
    columns += [_definition(c) for c in dataset.columns]
    columns += [sql.SQL("file_seq bigint NOT NULL"), sql.SQL("line bigint NOT NULL")]
    names = ", ".join(c.name for c in dataset.columns)
    return [
        Action(f"create table {dataset.table} ({names})",
               sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns))),
        # (file_seq, line) says where each row came from and gives the API's order.
        Action("create its arrival-order index",
               sql.SQL("CREATE UNIQUE INDEX {} ON {} (file_seq, line)").format(
                   sql.Identifier(f"{dataset.table}_file_line"), table)),
        *_key_index(dataset, table),
        *_filter_index(dataset, table),
    ]


def _definition(column: Column) -> sql.Composable:
    return sql.SQL("{} {}{}").format(sql.Identifier(column.name), sql.SQL(column.type.pg_type),
                                     sql.SQL(" NOT NULL" if column.required else ""))


def key_index(dataset: Dataset) -> str:
    """The name of the unique index on a keyed dataset's key."""
    return f"{dataset.table}_key"


def _key_index(dataset: Dataset, table: sql.Identifier) -> list[Action]:
    """The unique index on the key: one row per key, and the arbiter of the loader's
    INSERT ... ON CONFLICT (key) (db.upsert_rows). A btree in the key's declared order;
    the key columns keep their declared nullability (a row without its key never
    reaches the table: cleaning rejects it)."""
    if not dataset.key:
        return []
    return [Action(
        f"create the key index on {', '.join(dataset.key)}",
        sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(key_index(dataset)), table,
            sql.SQL(", ").join(map(sql.Identifier, dataset.key))))]


def _key_change(cur: Any, dataset: Dataset, table: sql.Identifier,
                indexed: tuple[str, ...]) -> str | None:
    """Why the table's key cannot become the declared one, or None when it can.

    Only an empty table may gain or change its key in place: the rows of a table that
    has them were loaded under another key (or none) and may hold several rows of one
    new key, which no unique index takes. `chute rebuild` makes the table the new key
    would have given, from the archive. A key removed is refused even on an empty
    table, as a removed column is: the declaration lost something the table has.
    """
    has = f"key ({', '.join(indexed)})" if indexed else "no key"
    says = f"key ({', '.join(dataset.key)})" if dataset.key else "no key"
    if not dataset.key:
        return f"key: the table has {has}, the file says {says}"
    cur.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(table))
    if cur.fetchone()[0]:
        return f"key: the table has {has} and holds rows, the file says {says}"
    return None


def _index_columns(cur: Any, index: str) -> tuple[str, ...]:
    """The columns of an index of the public schema, in order; () when it is missing."""
    cur.execute(
        """SELECT array_agg(a.attname ORDER BY k.ord)
           FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = x.relnamespace
           CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE n.nspname = 'public' AND x.relname = %s""",
        (index,),
    )
    return tuple((cur.fetchone() or [None])[0] or ())


def _filter_index(dataset: Dataset, table: sql.Identifier) -> list[Action]:
    """One GIN index (btree_gin) over every filter column: equality and ranges on each.

    GIN inserts go to a pending list merged in bulk, so loading pays far less for it than
    for a btree per filter (measured on people: about 3 CPU-seconds per million rows,
    where three btrees cost 12-17). A filtered page is then either a walk of the
    arrival-order index that skips non-matching rows (a common value) or a bitmap of the
    matching rows, sorted (a rare value, or several filters): the planner picks by the
    value's frequency, which is why the API plans each query for its values.
    """
    if not dataset.filters:
        return []
    return [Action(
        f"create the filter index on {', '.join(dataset.filters)}",
        sql.SQL("CREATE INDEX {} ON {} USING gin ({})").format(
            sql.Identifier(_filters_index(dataset)), table,
            sql.SQL(", ").join(map(sql.Identifier, dataset.filters))))]


def _filters_index(dataset: Dataset) -> str:
    return f"{dataset.table}_filters"
