"""The keyed run of `make bench`: a snapshot feed, then the next day's snapshot.

    .venv/bin/python -m bench.keys --rows 20000     # this run alone (a smoke run)

A customers dataset keyed by customer_id: one file of N rows (every key new), then a
second file of N rows in which 70% of the keys are restated as they were, 20% carry a
changed balance and 10% are new, in another order (real feeds are not sorted by key).
Each file is timed from its drop to `loaded` on a fresh stack, and checked: the first
must insert N, the second insert N/10 and replace the rest, and the table hold 1.1 N rows.

The floor is measured the same way with PostgreSQL alone: psql copies each file's rows
(already typed, with their ids and lineage, as the loader's COPY carries them) into a
temporary table and runs chute's own merge statement (db.upsert_statement) once, into a
twin of the table with the same indexes. That is the least work the database can do to
hold the same result; chute's figure over it is what the pipeline costs on top.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2

from bench import names
from bench.stack import Stack
from chute.datasets.declarations import load
from chute.postgres.db import upsert_statement
from chute.reading.rowids import row_uuid

DECLARATION = """
[datasets.customers]
match   = ["customers-*.csv"]
key     = ["customer_id"]
filters = ["city"]

[datasets.customers.columns]
customer_id = { type = "bigint", required = true }
name        = { type = "text", required = true }
city        = { type = "text" }
balance     = { type = "numeric(12,2)" }
"""
FLOOR_TABLE = "bench_keyed_floor"


def _customers(rng: random.Random, count: int) -> Iterator[tuple[str, str, str]]:
    """Names and towns with real cardinality (bench.names), and balances."""
    firsts, lasts, towns = (pool.draw(rng, count) for pool in (
        names.first_names(), names.last_names(), names.places()))
    for first, last, town in zip(firsts, lasts, towns, strict=True):
        yield f"{first} {last}", town, f"{rng.randrange(0, 10_000_000) / 100:.2f}"


def _write(path: Path, rows: list[tuple[int, str, str, str]]) -> str:
    """The CSV file; returns its sha256 (the rows' ids come from it)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("customer_id", "name", "city", "balance"))
        writer.writerows(rows)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _twin(path: Path, rows: list[tuple[int, str, str, str]], sha256: str, seq: int) -> None:
    """What the loader's COPY carries for the same file, as CSV for psql: id, the
    columns, file_seq, line."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        for line, row in enumerate(rows, start=2):
            writer.writerow((row_uuid(sha256, line), *row, seq, line))


def generate(folder: Path, rows: int, seed: int = 15) -> dict[str, Any]:
    """Both days' files and their floor twins; what loading them must record."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(range(1, rows + 1))
    rng.shuffle(keys)
    first = dict(zip(keys, _customers(rng, rows), strict=True))
    changed, new = rows // 5, rows // 10
    kept = rng.sample(keys, rows - new)
    second = []
    for index, key in enumerate(kept):
        name, city, balance = first[key]
        if index < changed:
            balance = f"{rng.randrange(0, 10_000_000) / 100:.2f}"
        second.append((key, name, city, balance))
    second += [(rows + n + 1, *customer) for n, customer in enumerate(_customers(rng, new))]
    rng.shuffle(second)
    days = [[(key, *first[key]) for key in keys], second]
    files = []
    for day, content in enumerate(days, start=1):
        path = folder / f"customers-{day}.csv"
        sha256 = _write(path, content)
        _twin(folder / f"twin-{day}.csv", content, sha256, day)
        files.append(path)
    return {"files": files, "twins": [folder / "twin-1.csv", folder / "twin-2.csv"],
            "rows": rows, "new": new,
            "expected": [(rows, rows, 0, 0), (rows, new, rows - new, 0)]}


def _counts(stack: Stack, name: str) -> tuple[int, int, int, int]:
    assert stack.db is not None
    with stack.db.cursor() as cur:
        cur.execute("SELECT rows_loaded, rows_inserted, rows_replaced, rows_ignored "
                    "FROM chute.files WHERE name = %s", (name,))
        return cur.fetchone()


def floor(database_url: str, twins: list[Path]) -> list[float]:
    """Seconds per file: psql's COPY into a temporary table, then the merge statement."""
    customers = load_declaration()["customers"]
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            cur.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE public.customers INCLUDING ALL)")
        statement = upsert_statement(replace(customers, table=FLOOR_TABLE),
                                     "staging").as_string(conn)
    finally:
        conn.close()
    seconds = []
    for twin in twins:
        commands = ["CREATE TEMP TABLE staging (LIKE public.customers)",
                    f"\\copy staging FROM '{twin}' WITH (FORMAT csv)", statement]
        started = time.perf_counter()
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", database_url,
                        *(arg for command in commands for arg in ("-c", command))],
                       check=True, capture_output=True)
        seconds.append(round(time.perf_counter() - started, 3))
    return seconds


def load_declaration() -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as declaration:
        declaration.write(DECLARATION)
        declaration.flush()
        return load(Path(declaration.name))


def keyed(root: Path, rows: int, batch_size: int, loaders: int) -> dict[str, Any]:
    """Both days through the pipeline, then the floor on the same server."""
    made = generate(root / "files", rows)
    declaration = root / "chute.toml"
    declaration.write_text(DECLARATION)
    result: dict[str, Any] = {"rows": rows, "batch_size": batch_size, "loaders": loaders,
                              "days": [], "errors": []}
    stack = Stack(root, batch_size, 1, loaders)
    stack.environment.env["CHUTE_DATASETS"] = str(declaration)
    with stack:
        for path, expected in zip(made["files"], made["expected"], strict=True):
            cpu_before = stack.cpu_seconds()
            arrival = stack.drop(path, path.name)
            stack.watch([arrival], timeout=300 + rows / 1000, interval=0.01)
            cpu_after = stack.cpu_seconds()
            counts = _counts(stack, path.name)
            result["days"].append({
                "file": path.name, "state": arrival.state,
                "drop_to_loaded_s": round(arrival.loaded_s or 0.0, 3),
                "rows_per_s": round(rows / (arrival.loaded_s or 1.0)),
                "loaded_inserted_replaced_ignored": counts,
                "cpu_s": {k: round((cpu_after[k] or 0.0) - (cpu_before.get(k) or 0.0), 2)
                          for k in cpu_after}})
            if arrival.state != "loaded" or counts != expected:
                result["errors"].append(f"keyed {path.name}: {arrival.state}, counts "
                                        f"{counts}, expected {expected}")
        assert stack.db is not None
        with stack.db.cursor() as cur:
            cur.execute("SELECT count(*) FROM customers")
            held = cur.fetchone()[0]
        if held != rows + made["new"]:
            result["errors"].append(f"keyed: the table holds {held} rows, expected "
                                    f"{rows + made['new']}")
        stack.services.stop_all()  # the floor competes with nothing of chute's
        result["floor_s"] = floor(stack.environment.database_url, made["twins"])
    result["over_floor"] = [round(day["drop_to_loaded_s"] / seconds, 2)
                            for day, seconds in zip(result["days"], result["floor_s"],
                                                    strict=True)]
    return result


def markdown(result: dict[str, Any]) -> str:
    days = result["days"]
    lines = [f"| keyed (customer_id), {result['rows']:,} rows a file, {result['loaders']} "
             "loaders | day 1: all new | day 2: 70% same, 20% changed, 10% new |",
             "|---|---|---|"]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(i) for i in range(len(days))) + " |")

    row("chute drop -> loaded", lambda i: f"{days[i]['drop_to_loaded_s']:.1f} s "
                                          f"({days[i]['rows_per_s'] / 1000:,.0f}k rows/s)")
    row("floor: psql COPY + the merge statement", lambda i: f"{result['floor_s'][i]:.1f} s")
    row("chute time / floor time", lambda i: f"{result['over_floor'][i]:.2f}x")
    row("loaded / inserted / replaced / ignored",
        lambda i: " / ".join(f"{n:,}" for n in days[i]["loaded_inserted_replaced_ignored"]))
    row("CPU s: loaders / PG backends",
        lambda i: f"{sum(v for k, v in days[i]['cpu_s'].items() if k.startswith('loader')):.1f}"
                  f" / {days[i]['cpu_s'].get('postgres backends', 0):.1f}")
    if result["errors"]:
        lines.append("")
        lines.append("WRONG RESULTS: " + "; ".join(result["errors"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keys", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--loaders", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chute-bench-keys-") as work:
        result = keyed(Path(work), args.rows, args.batch_size, args.loaders)
    print(markdown(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
