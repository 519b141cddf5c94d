"""What each part of a dataset's table costs to fill: `python -m bench.designs`.

    .venv/bin/python -m bench.designs [--rows 1000000] [--streams 2] [--dataset people]

The rows are the ones chute would load: a generated file (bench.generate or
bench.generate_wide, realistic cardinality, a few bad rows) run through chute's own
transform, its batches dealt to `--streams` binary COPY files as the loaders share them.
Each design is then filled by parallel `psql \\copy` streams into a fresh table of a
scratch database, timed, and dropped:

- bare: the columns, no index; schema: chute's table as tables.py makes it;
- the same table without one part (no filter index, no arrival index), to price each;
- the filter index kept another way (pending list sizes, no pending list, built after
  the load in one go), and the session settings a loader may choose (work_mem, which
  bounds the pending list's merge in an inserting session).

Prints a markdown table and writes bench/results/designs.json. Needs an idle machine:
every figure is wall time of the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from bench.floors import psql, wait_all
from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from bench.proc import machine_busy_seconds
from bench.stack import DATASETS
from chute.datasets.declarations import Dataset
from chute.datasets.declarations import load as load_datasets
from chute.postgres import db
from chute.postgres.tables import copy_columns, plan_new
from chute.rabbitmq.messages import RowBatch
from chute.reading import copyrows
from chute.reading.transform import transform

RESULTS = Path(__file__).resolve().parent / "results" / "designs.json"


@contextmanager
def scratch_database(admin_url: str, prefix: str = "chute_designs") -> Iterator[str]:
    """A database of its own for the run, dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    db.ensure_database(url)
    try:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        conn.cursor().execute("CREATE EXTENSION btree_gin")  # as chute's schema.sql
        conn.close()
        yield url
    finally:
        conn = psycopg2.connect(admin_url)
        conn.autocommit = True
        conn.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.close()


def write_streams(dataset: Dataset, csv: Path, streams: int, batch_size: int,
                  folder: Path) -> list[Path]:
    """chute's batches of the file, dealt round-robin to `streams` binary COPY files."""
    paths = [folder / f"{dataset.table}-{k}.copy" for k in range(streams)]
    outs = [p.open("wb") for p in paths]
    for out in outs:
        out.write(copyrows.HEADER)
    n = 0
    with csv.open("rb") as stream:
        for message in transform(stream, dataset, str(uuid.uuid4()), 1, "ab" * 32, batch_size):
            if isinstance(message, RowBatch) and message.rows:
                outs[n % streams].write(message.rows)
                n += 1
    for out in outs:
        out.write(copyrows.TRAILER)
        out.close()
    return paths


def designs(dataset: Dataset) -> dict[str, dict[str, Any]]:
    """name -> {"create": [statements], "after": [statements timed after the COPY],
    "options": PGOPTIONS of the COPY sessions}."""
    table = dataset.table
    made = [a.statement for a in plan_new(dataset).actions]  # table, arrival, key, filters
    create_table, arrival, filters = made[0], made[1], made[-1]
    ident = sql.Identifier(table)
    filters_idx = sql.Identifier(f"{table}_filters")
    cols = sql.SQL(", ").join(map(sql.Identifier, dataset.filters))

    def gin(options: str = "") -> sql.Composable:
        return sql.SQL("CREATE INDEX {} ON {} USING gin ({}){}").format(
            filters_idx, ident, cols, sql.SQL(options))

    # Text compared byte by byte (COLLATE "C"), as a filter's equality needs, instead
    # of by the database's locale: every comparison in an index's tree is one.
    text_c = [sql.SQL('ALTER TABLE {} ALTER COLUMN {} TYPE text COLLATE "C"').format(
        ident, sql.Identifier(c.name)) for c in dataset.columns if c.type.pg_type == "text"]
    btrees = [sql.SQL("CREATE INDEX {} ON {} ({})").format(
        sql.Identifier(f"{table}_{name}"), ident, sql.Identifier(name))
        for name in dataset.filters]
    bare = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
        ident, sql.Identifier(f"{table}_pkey"))
    # Every design with a GIN index ends by merging its pending list, which a later
    # query (or autovacuum) would otherwise pay for: the figure is the whole cost.
    clean = sql.SQL("SELECT gin_clean_pending_list({}::regclass)").format(
        sql.Literal(f"{table}_filters"))
    one_gin = {name: sql.SQL("CREATE INDEX {} ON {} USING gin ({})").format(
        filters_idx, ident, sql.Identifier(name)) for name in dataset.filters}
    # The lighter table of issue 26: one append-ordered btree, (file_seq, line), for
    # identity (unique), arrival order and paging; id stored without an index of its own.
    arrival_full = sql.SQL("CREATE UNIQUE INDEX {} ON {} (file_seq, line) WITH (fillfactor = 100)"
                           ).format(sql.Identifier(f"{table}_file_line"), ident)
    return {
        "bare": {"create": [create_table, bare]},
        "arrival only (no primary key)": {"create": [create_table, bare, arrival]},
        "lighter: arrival + the GIN filter index, no primary key": {
            "create": [create_table, bare, arrival, filters], "after": [clean]},
        "lighter, arrival fillfactor 100, text collate C": {
            "create": [create_table, bare, *text_c, arrival_full, filters], "after": [clean]},
        "schema, arrival fillfactor 100": {
            "create": [create_table, arrival_full, filters], "after": [clean]},
        "primary key only": {"create": [create_table]},
        "primary key + arrival": {"create": [create_table, arrival]},
        "schema (chute's table)": {"create": [create_table, arrival, filters],
                                   "after": [clean]},
        "schema, gin without pending list": {
            "create": [create_table, arrival, gin(" WITH (fastupdate = off)")]},
        "schema, gin pending list 32 MB": {
            "create": [create_table, arrival, gin(" WITH (gin_pending_list_limit = 32768)")],
            "after": [clean]},
        "schema, work_mem 64 MB": {
            "create": [create_table, arrival, filters], "options": "-c work_mem=64MB",
            "after": [clean]},
        "schema, text collate C": {"create": [create_table, *text_c, arrival, filters],
                                   "after": [clean]},
        "primary key + arrival, a btree per filter, text collate C": {
            "create": [create_table, *text_c, arrival, *btrees]},
        "primary key + arrival, gin built after": {
            "create": [create_table, arrival], "after": [gin()]},
        **{f"primary key + arrival, gin on {name} only": {
            "create": [create_table, arrival, one], "after": [clean]}
           for name, one in one_gin.items()},
    }


def measure(url: str, dataset: Dataset, design: dict[str, Any], paths: list[Path]
            ) -> dict[str, Any]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(dataset.table)))
    for statement in design["create"]:
        cur.execute(statement)
    cur.execute("CHECKPOINT")  # each design starts with the same clean buffers
    columns = copy_columns(dataset).as_string(conn)
    started, busy = time.perf_counter(), machine_busy_seconds()
    wait_all([psql(url, f"\\copy {dataset.table} ({columns}) FROM '{p}' (FORMAT binary)",
                 design.get("options", "")) for p in paths])
    copy_s = time.perf_counter() - started
    for statement in design.get("after", []):
        cur.execute(statement)
    total_s = time.perf_counter() - started
    cpu_s = machine_busy_seconds() - busy
    cur.execute("SELECT pg_table_size(%s), pg_indexes_size(%s), count(*) FROM "
                + sql.Identifier(dataset.table).as_string(conn), (dataset.table,) * 2)
    table_bytes, index_bytes, rows = cur.fetchone()
    conn.close()
    return {"copy_s": round(copy_s, 2), "total_s": round(total_s, 2),
            "cpu_s": round(cpu_s, 2), "rows": rows,
            "table_mib": round(table_bytes / 2**20), "indexes_mib": round(index_bytes / 2**20)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.designs", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=2, help="as chute's loaders (2)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--dataset", choices=("people", "wide"), default="people")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fill each design this many times, keep the median")
    parser.add_argument("--only", help="designs whose name holds one of these texts "
                                       "(separated by '|')")
    parser.add_argument("--admin-url", default=os.environ.get(
        "CHUTE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    dataset = load_datasets(DATASETS)[args.dataset]  # the built-in people, and wide
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chute-designs-") as tmp:
        folder = Path(tmp)
        csv = folder / f"{args.dataset}.csv"
        (generate if args.dataset == "people" else generate_wide)(csv, args.rows)
        paths = write_streams(dataset, csv, args.streams, args.batch_size, folder)
        csv.unlink()
        with scratch_database(args.admin_url) as url:
            for name, design in designs(dataset).items():
                if args.only and not any(part in name for part in args.only.split("|")):
                    continue
                runs = sorted((measure(url, dataset, design, paths)
                               for _ in range(args.repeat)), key=lambda r: r["total_s"])
                results[name] = runs[len(runs) // 2] | {
                    "total_s_runs": [r["total_s"] for r in runs]}
                print(f"| {name} | {results[name]} |", flush=True)
    bare = results.get("bare", {}).get("total_s")
    print(f"\n{args.dataset}, {args.rows:,} rows, {args.streams} streams\n")
    print("| design | COPY s | with later steps s | x bare | machine CPU s | table MiB "
          "| indexes MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        ratio = f"{r['total_s'] / bare:.1f}" if bare else "-"
        print(f"| {name} | {r['copy_s']} | {r['total_s']} | {ratio} | {r['cpu_s']} "
              f"| {r['table_mib']} "
              f"| {r['indexes_mib']} |")
    record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": args.rows,
              "streams": args.streams, "dataset": args.dataset, "designs": results}
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous[args.dataset] = record
    args.out.write_text(json.dumps(previous, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
