"""The peer: pgloader loading the very file chute loads, into the same typed columns.

pgloader is what a data engineer would reach for instead of chute. Its table has the
dataset's columns with their types, NOT NULL where chute requires a value, and the same
GIN filter index; it has no lineage columns (id, file_seq, line), so no primary key and no
arrival-order index. pgloader runs with its default settings, while chute's services are
stopped, against the same database server.

What pgloader does not check the way chute does, so it loads rows chute rejects (the
report says so beside its figure): min/max, max_length and pattern rules, a UTC offset
on a timestamp without time zone (PostgreSQL ignores it), "7.0" as a whole number
(PostgreSQL rejects it, chute reads 7), and runs of spaces inside texts (kept as they
are). A value that does not fit its PostgreSQL type makes PostgreSQL refuse the whole batch
(25,000 rows by default), and pgloader copies it again from just after each bad row, one
transaction per bad row: with a few percent of bad rows that takes hours for a million
rows. So pgloader runs for at most `timeout` seconds; a run cut short reports the rows it
had committed by then and its rate (bad rows are spread evenly through the file, so the
rate holds for the rest of it), flagged as unfinished.
"""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from chute.datasets.declarations import Dataset

# pgloader's expressions (Common Lisp) for a value cut from a field, as chute's `take`.
_TAKES = {
    "first_word": "(let ((s (string-trim \" \" {f}))) (subseq s 0 (position #\\Space s)))",
    "after_first_word": "(let* ((s (string-trim \" \" {f})) (p (position #\\Space s))) "
                        "(when p (string-left-trim \" \" (subseq s p))))",
}


def unchecked_rules(dataset: Dataset) -> list[str]:
    """The declared rules the peer's table does not enforce, for the report."""
    missed = []
    for column in dataset.columns:
        rules = column.rules
        for rule, value in (("min", rules.min), ("max", rules.max),
                            ("max_length", rules.max_length), ("pattern", rules.pattern),
                            ("values", rules.values)):
            if value is not None:
                missed.append(f"{column.name} {rule}")
        if column.type.name == "timestamp":
            missed.append(f"{column.name}: offsets refused")
    return missed


def _table_ddl(dataset: Dataset, table: str) -> list[sql.Composable]:
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type.pg_type),
                                         sql.SQL(" NOT NULL" if c.required else ""))
               for c in dataset.columns]
    statements: list[sql.Composable] = [sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(columns))]
    if dataset.filters:
        statements.append(sql.SQL("CREATE INDEX ON {} USING gin ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, dataset.filters))))
    return statements


def load_command(dataset: Dataset, path: Path, url: str, table: str) -> str:
    """A LOAD CSV command: the file's fields, named by the column each feeds, into the
    dataset's columns; every field trimmed, an empty one NULL (so a required column
    refuses it, as chute does)."""
    with path.open(encoding=dataset.encoding, newline="") as f:
        header = [h.strip().lower() for h in next(csv.reader(f, delimiter=dataset.delimiter))]
    direct = {c.header: c.name for c in dataset.columns if c.take is None}
    fields = [direct.get(h, f"field_{i}") for i, h in enumerate(header)]
    targets = []
    for column in dataset.columns:
        if column.take is None:
            targets.append(column.name)
        else:
            source = fields[header.index(column.header)]
            targets.append(f"{column.name} text using "
                           + _TAKES[column.take].format(f=source))
    options = "[trim both whitespace, null if blanks]"
    return (f"LOAD CSV\n  FROM '{path}'\n    ({', '.join(f'{f} {options}' for f in fields)})\n"
            f"  INTO {url}?{table}\n    ({', '.join(targets)})\n"
            "  WITH skip header = 1,\n"
            "       fields optionally enclosed by '\"',\n"
            "       fields escaped by double-quote,\n"
            f"       fields terminated by '{dataset.delimiter}'\n"
            "  SET timezone to 'UTC'\n;\n")


def pgloader(database_url: str, dataset: Dataset, path: Path, workdir: Path,
             timeout: float) -> dict[str, Any]:
    """pgloader with its default settings on the very file chute loads, for at most
    `timeout` seconds."""
    table = f"bench_pgloader_{dataset.table}"
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            for statement in _table_ddl(dataset, table):
                cur.execute(statement)
    finally:
        conn.close()
    command = workdir / f"{dataset.name}.load"
    command.write_text(load_command(dataset, path, database_url, table))
    started = time.perf_counter()
    try:
        done = subprocess.run(["pgloader", "--no-ssl-cert-verification", str(command)],
                              capture_output=True, text=True, cwd=workdir, timeout=timeout)
    except subprocess.TimeoutExpired:  # killed: its open transaction is rolled back
        done = None
    seconds = time.perf_counter() - started
    if done is not None and done.returncode != 0:
        raise RuntimeError(f"pgloader failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            rows = cur.fetchone()[0]
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    finally:
        conn.close()
    return {"seconds": round(seconds, 3), "rows": rows, "rows_per_s": round(rows / seconds),
            "finished": done is not None, "unchecked": unchecked_rules(dataset)}
