"""The yardsticks: the same file loaded by `psql \\copy` (the floor) and pgloader (the peer).

Both load the file's three columns as text into a bare table with no index and no
check: no cleaning, no ids, no bookkeeping. \\copy is the least work PostgreSQL can do
with the bytes, so no pipeline can beat it; pgloader is what a data engineer would
reach for instead of chute. Both run while chute's services are stopped, against the
same database server, so they compete with nothing chute runs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg2

PGLOADER_COMMAND = """LOAD CSV
  FROM '{path}' (fullname, age, location)
  INTO {url}?{table} (fullname, age, location)
  WITH skip header = 1,
       fields optionally enclosed by '"',
       fields escaped by double-quote,
       fields terminated by ','
;
"""


def _create_table(database_url: str, table: str) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (fullname text, age text, location text)")
    finally:
        conn.close()


def _count(database_url: str, table: str) -> int:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def copy_floor(database_url: str, path: Path) -> dict[str, float]:
    """`psql \\copy` of a file COPY accepts whole (see bench.generate's copyable twin)."""
    table = "bench_copy_floor"
    _create_table(database_url, table)
    command = f"\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER true)"
    started = time.perf_counter()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database_url, "-c", command],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - started
    rows = _count(database_url, table)
    return {"seconds": round(seconds, 3), "rows": rows, "rows_per_s": round(rows / seconds)}


def pgloader_peer(database_url: str, path: Path, workdir: Path) -> dict[str, float]:
    """pgloader with its default settings on the very file chute loads."""
    table = "bench_pgloader_peer"
    _create_table(database_url, table)
    command = workdir / "people.load"
    command.write_text(PGLOADER_COMMAND.format(path=path, url=database_url, table=table))
    started = time.perf_counter()
    done = subprocess.run(["pgloader", "--no-ssl-cert-verification", str(command)],
                          capture_output=True, text=True, cwd=workdir)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pgloader failed ({done.returncode}): {done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    rows = _count(database_url, table)
    return {"seconds": round(seconds, 3), "rows": rows, "rows_per_s": round(rows / seconds)}
