"""The console's overview with 100 datasets and 1M files in the ledger (a benchmark).

    .venv/bin/python bench/console_bench.py [--files 1000000] [--requests 200]

Fills a scratch database with generate_series: 100 datasets (people and 99 declared),
`--files` arrivals spread over a year, newest last (about 2,700 today, 110 in the last
hour, 20 still in flight), a batch per loaded file, rejects for 1 file in 100. Then runs
`python -m api` on it and times, one request at a time, GET / (the overview) beside
GET /files and the file and dataset pages: median and p95 of `--requests` each, after
a warm-up. Prints EXPLAIN (ANALYZE, BUFFERS) of every query the overview runs, and
writes the figures and plans to bench/results/console.json. The scratch database goes
at the end. The target: the overview under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.console import queries as console_sql  # noqa: E402
from api.queries import FILE_COLUMNS, FILE_FROM, PROBLEM_SECONDS  # noqa: E402
from bench.api_bench import drop, free_port, start  # noqa: E402
from bench.proc import load_average, machine  # noqa: E402
from chute.datasets.declarations import load as load_datasets  # noqa: E402
from chute.postgres import db  # noqa: E402

DATASETS = 100
# api/queries.py Queries.loaded_rows, which the overview runs in the background.
ROWS_PER_DATASET = """SELECT dataset, sum(coalesce(rows_inserted, rows_loaded))::bigint AS rows
                        FROM chute.files
                       WHERE state = 'loaded' AND dataset IS NOT NULL GROUP BY dataset"""
RESULTS = REPO / "bench" / "results" / "console.json"
PG = os.environ.get("CHUTE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")


def declarations() -> str:
    """99 datasets besides people, each of its own folder."""
    return "".join(
        f'[datasets.ds{i:03d}]\nmatch = ["ds{i:03d}/*.csv"]\nfilters = ["code"]\n'
        f'[datasets.ds{i:03d}.columns]\ncode = {{ type = "text", required = true }}\n'
        f'amount = {{ type = "numeric(12,2)" }}\n\n' for i in range(1, DATASETS))


FILL = """
INSERT INTO chute.files (file_id, name, path, sha256, size_bytes, state, rows_total,
                         rows_loaded, rows_rejected, batches_total, batch_size, attempts,
                         error, received_at, started_at, finished_at, dataset)
SELECT md5(g::text)::uuid, ds || '/file-' || g || '.csv',
       CASE WHEN st = 'quarantined' THEN 'quarantine/' ELSE 'archive/' END
         || ds || '/file-' || g || '.csv',
       md5(g::text) || md5((g + 1)::text), 1000 + g %% 9000, st,
       CASE WHEN st IN ('loaded', 'failed') THEN 100 + g %% 900 END,
       CASE WHEN st = 'loaded' THEN 100 + g %% 900 - CASE WHEN g %% 100 = 0 THEN 5 ELSE 0 END END,
       CASE WHEN st = 'loaded' THEN CASE WHEN g %% 100 = 0 THEN 5 ELSE 0 END END,
       CASE WHEN st = 'loaded' THEN 1 END, 10000, 1,
       CASE WHEN st = 'quarantined' THEN 'no header: expected columns code, amount'
            WHEN st = 'failed' THEN 'processing kept failing' END,
       at, at + interval '1 second', CASE WHEN st NOT IN ('received', 'processing')
                                          THEN at + interval '2 seconds' END, ds
  FROM (SELECT g, CASE WHEN g %% 100 = 0 THEN 'people'
                       ELSE 'ds' || lpad((g %% 100)::text, 3, '0') END AS ds,
               now() - (%(files)s - g) * interval '31.5 seconds' AS at,
               CASE WHEN g > %(files)s - 20 THEN (ARRAY['received', 'processing'])[1 + g %% 2]
                    WHEN g %% 97 = 0 THEN 'duplicate' WHEN g %% 211 = 0 THEN 'quarantined'
                    WHEN g %% 1009 = 0 THEN 'failed' ELSE 'loaded' END AS st
          FROM generate_series(1, %(files)s) g) AS f
"""
BATCHES = """
INSERT INTO chute.batches (file_id, batch_no, rows_loaded, rows_rejected, loaded_at)
SELECT file_id, 0, rows_loaded, rows_rejected, finished_at FROM chute.files
 WHERE state = 'loaded'
"""
REJECTS = """
INSERT INTO chute.rejects (file_id, line, reason, raw)
SELECT file_id, n + 1, CASE WHEN n % 2 = 0 THEN 'amount: "x' || n || '" is not a number'
                            ELSE 'code: is empty' END, ',x' || n
  FROM chute.files, generate_series(1, 5) n WHERE rows_rejected > 0
"""


def fill(url: str, database: str, datasets_file: Path, files: int) -> None:
    db.ensure_database(url)
    conn = db.connect(url)
    try:
        db.apply_schema(conn, load_datasets(datasets_file), f"{database}_reader")
        with conn, conn.cursor() as cur:
            for label, statement in (("files", FILL), ("batches", BATCHES),
                                     ("rejects", REJECTS)):
                started = time.monotonic()
                cur.execute(statement, {"files": files} if statement is FILL else None)
                print(f"  {label}: {cur.rowcount:,} rows in {time.monotonic() - started:.0f} s",
                      flush=True)
            # The sequence behind seq, past the rows given explicitly ids.
            cur.execute("SELECT setval(pg_get_serial_sequence('chute.files', 'seq'), "
                        "(SELECT max(seq) FROM chute.files))")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE chute.files, chute.batches, chute.rejects")
    finally:
        conn.close()


def timed(session: requests.Session, url: str, count: int) -> dict[str, float]:
    for _ in range(5):  # warm-up: connections, the slow figures' first computation
        assert session.get(url, timeout=60).status_code == 200, url
    took = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, timeout=60)
        took.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
    took.sort()
    return {"median_ms": round(statistics.median(took), 1),
            "p95_ms": round(took[int(len(took) * 0.95) - 1], 1),
            "max_ms": round(took[-1], 1), "requests": count}


def plans(url: str, names: list[str]) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each query GET / runs, as the API's role runs them."""
    statements = {
        "last arrival per dataset": (console_sql.LAST_ARRIVALS, (names,)),
        "files waiting by stage": (console_sql.WAITING, ()),
        "today by dataset": (console_sql.TODAY, ()),
        "rows per minute, last hour": (console_sql.THROUGHPUT, ()),
        "recent files (/files?limit=50)": (
            f"SELECT {FILE_COLUMNS} {FILE_FROM} WHERE true ORDER BY f.seq DESC LIMIT $1", (50,)),
        "rows per dataset (in the background, every 30 s at most)": (ROWS_PER_DATASET, ()),
        "worker problems": (
            """SELECT service, instance, kind, problem, reported_at FROM chute.worker_problems
               WHERE reported_at > now() - make_interval(secs => $1)
               ORDER BY service, instance, kind""", (PROBLEM_SECONDS,)),
    }
    async def explain() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            found = {}
            for label, (statement, args) in statements.items():
                rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *args)
                found[label] = "\n".join(row[0] for row in rows)
            return found
        finally:
            await conn.close()

    return asyncio.run(explain())


def background(url: str, env: dict[str, str]) -> dict[str, float]:
    """What the overview recomputes in the background (api/console/slow.py), each the
    median of 3: the rows per dataset (one core, as the console runs it) and the
    declarations checked against the database."""
    from api.console.slow import declarations
    from chute.runtime.config import Config

    config = Config.from_env(env)

    async def rows() -> list[float]:
        conn = await asyncpg.connect(url)
        took = []
        try:
            for _ in range(3):
                started = time.perf_counter()
                async with conn.transaction(readonly=True):
                    await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                    await conn.fetch(ROWS_PER_DATASET)
                took.append((time.perf_counter() - started) * 1000)
        finally:
            await conn.close()
        return took

    plans = []
    for _ in range(3):
        started = time.perf_counter()
        declarations(config)
        plans.append((time.perf_counter() - started) * 1000)
    return {"rows_per_dataset_ms": round(statistics.median(asyncio.run(rows())), 1),
            "declarations_ms": round(statistics.median(plans), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    database = f"chute_console_bench_{uuid.uuid4().hex[:8]}"
    url = f"{PG}/{database}"
    namespace = f"chute-console-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        datasets_file = Path(scratch) / "chute.toml"
        datasets_file.write_text(declarations())
        names = [d.name for d in load_datasets(datasets_file)]
        assert len(names) == DATASETS
        api = None
        try:
            print(f"filling {database}: {DATASETS} datasets, {args.files:,} files", flush=True)
            fill(url, database, datasets_file, args.files)
            port = free_port()
            env = {**os.environ, "CHUTE_DATABASE_URL": url, "CHUTE_DATASETS": str(datasets_file),
                   "CHUTE_NAMESPACE": namespace, "CHUTE_API_PORT": str(port),
                   "CHUTE_DATA_DIR": scratch, "CHUTE_LOG_LEVEL": "WARNING"}
            base = f"http://127.0.0.1:{port}"
            api = start([sys.executable, "-m", "api"], env, base + "/health")
            session = requests.Session()
            people = session.get(base + "/files", params={"dataset": "people", "limit": 1000},
                                 timeout=30).json()["items"]
            rejected = next(f["file_id"] for f in people if f["rows_rejected"])
            figures = {
                "GET /": timed(session, base + "/", args.requests),
                "GET /files": timed(session, base + "/files", args.requests),
                "GET /console/files/{id}": timed(session, f"{base}/console/files/{rejected}",
                                                 args.requests),
                "GET /console/datasets/ds042": timed(session, base + "/console/datasets/ds042",
                                                     args.requests),
            }
            found = plans(url, names)
            slow = background(url, env)
        finally:
            if api is not None:
                api.terminate()
                api.wait(10)
            drop(database)
            from chute.rabbitmq.broker import delete_namespace
            try:
                delete_namespace(os.environ.get("CHUTE_AMQP_URL",
                                                "amqp://guest:guest@127.0.0.1:5672/%2F"),
                                 namespace)
            except Exception:  # noqa: BLE001 - the API may never have declared it
                pass
    print(f"\n{DATASETS} datasets, {args.files:,} files; {args.requests} requests each, "
          "one at a time\n")
    print("| route | median ms | p95 ms | max ms |\n|---|---:|---:|---:|")
    for route, f in figures.items():
        print(f"| `{route}` | {f['median_ms']} | {f['p95_ms']} | {f['max_ms']} |")
    print(f"\nin the background: rows per dataset {slow['rows_per_dataset_ms']} ms (every "
          f"30 s at most), declarations {slow['declarations_ms']} ms (every 10 s at most)")
    for label, plan in found.items():
        print(f"\n### {label}\n\n```\n{plan}\n```")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "datasets": DATASETS, "files": args.files, "figures": figures, "background": slow,
        "plans": found,
        "machine": machine(), "load_average": load_average(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "bench/console_bench.py " + " ".join(sys.argv[1:]),
    }, indent=1) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
