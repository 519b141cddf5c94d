"""The floors: PostgreSQL's own COPY of the very rows chute loaded, the least work the
database can do to store them, so no pipeline can beat it.

After chute has loaded a file and its services have stopped, the rows it loaded (every
column, lineage included) are written out in binary COPY format, chute's own, in as many
streams as chute ran loaders: stream k gets every k-th run of `batch_size` rows in
arrival order, as chute's loaders share the batches. Then each floor copies the streams
back in parallel (one `psql \\copy` per stream, one COPY each), into a fresh table:

- bare floor: the same columns and NOT NULLs, no index (`CREATE TABLE ... (LIKE t)`);
- schema floor: an identical table (`LIKE t INCLUDING ALL`: the same primary key,
  arrival-order index and GIN filter index), what chute's own table costs to fill.

Writing the streams out is not timed; both floors run against the same server, while
nothing of chute's runs.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from chute.datasets.declarations import Dataset
from chute.postgres.tables import copy_columns

FLOORS = {"bare": sql.SQL("CREATE TABLE {} (LIKE {})"),
          "schema": sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)")}


def psql(database_url: str, command: str, options: str = "") -> subprocess.Popen[bytes]:
    """One `psql -c` in the background; `options` are its session's PGOPTIONS."""
    env = dict(os.environ, PGOPTIONS=options) if options else None
    return subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database_url,
                             "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def wait_all(processes: list[subprocess.Popen[bytes]]) -> None:
    failures = []
    for process in processes:
        _out, err = process.communicate()
        if process.returncode != 0:
            failures.append(err.decode(errors="replace").strip())
    if failures:
        raise RuntimeError(f"psql failed: {failures[0]}")


def _export(database_url: str, dataset: Dataset, conn: Any, streams: int, batch_size: int,
            folder: Path) -> list[Path]:
    columns = copy_columns(dataset).as_string(conn)
    table = sql.Identifier(dataset.table).as_string(conn)
    paths = [folder / f"{dataset.table}-{k}.copy" for k in range(streams)]
    processes = []
    for k, path in enumerate(paths):
        query = (f"SELECT {columns} FROM (SELECT *, (row_number() OVER (ORDER BY file_seq, "
                 f"line) - 1) / {batch_size} % {streams} AS stream FROM {table}) numbered "
                 f"WHERE stream = {k} ORDER BY file_seq, line")
        processes.append(psql(database_url, f"\\copy ({query}) TO '{path}' (FORMAT binary)"))
    wait_all(processes)
    return paths


def floors(database_url: str, dataset: Dataset, streams: int, batch_size: int,
           folder: Path) -> dict[str, dict[str, Any]]:
    """{"bare": {...}, "schema": {...}}: seconds, rows and rows/s of each floor."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    results = {}
    paths: list[Path] = []
    try:
        paths = _export(database_url, dataset, conn, streams, batch_size, folder)
        columns = copy_columns(dataset).as_string(conn)
        for floor, create in FLOORS.items():
            name = f"bench_{floor}_floor_{dataset.table}"
            with conn.cursor() as cur:
                cur.execute(create.format(sql.Identifier(name), sql.Identifier(dataset.table)))
            started = time.perf_counter()
            wait_all([psql(database_url, f"\\copy {name} ({columns}) FROM '{path}' "
                                       "(FORMAT binary)") for path in paths])
            seconds = time.perf_counter() - started
            with conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
                rows = cur.fetchone()[0]
                cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            results[floor] = {"seconds": round(seconds, 3), "rows": rows,
                              "rows_per_s": round(rows / seconds), "streams": streams}
    finally:
        conn.close()
        for path in paths:
            path.unlink(missing_ok=True)
    return results
