"""How much the chute API costs over a bare aiohttp + asyncpg handler (a benchmark, not a test).

    .venv/bin/python bench/api_bench.py [--rows 100000] [--rounds 9] [--seconds 4]
                                        [--bare-skips-reset]

Fills a scratch database with `--rows` rows, runs `python -m api` (as deployed: every
middleware, logs at INFO) and a bare handler that runs the same first-chunk query,
one at a time, and drives each with the same load: wrk when it is installed (apt-get
install wrk), else a Python load generator in this process. Rounds alternate between the
two servers so that other work on the machine hits both alike; the median round counts.
Besides requests/s and p99 it reports each server's CPU time per request (from
/proc/PID/stat), which a busy machine disturbs far less than throughput.
Prints a markdown table; the target is chute >= 0.9x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chute.datasets.declarations import load as load_datasets  # noqa: E402
from chute.postgres import db  # noqa: E402

ADMIN_URL = os.environ.get("CHUTE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
QUERY = ("SELECT id::text AS id, first_name, last_name, age, location FROM public.people "
         "ORDER BY file_seq, line LIMIT $1")


def bare_server(port: int, database_url: str, skip_reset: bool) -> None:
    """The baseline: one route, the same query, nothing else (no auth, logs or metrics),
    and asyncpg's defaults unless skip_reset (then, like chute, no reset query on release)."""
    import asyncpg
    from aiohttp import web

    async def first_chunk(request: web.Request) -> web.Response:
        limit = int(request.query.get("num_records", "10"))
        async with request.app["pool"].acquire() as conn:
            rows = await conn.fetch(QUERY, limit)
        return web.json_response([dict(row) for row in rows])

    async def keep_session(_conn: asyncpg.Connection) -> None:
        pass

    async def pool(app: web.Application):  # noqa: ANN202 - aiohttp cleanup context
        app["pool"] = await asyncpg.create_pool(database_url, min_size=1, max_size=10,
                                                reset=keep_session if skip_reset else None)
        yield
        await app["pool"].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_get("/read/first-chunk", first_chunk)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                shutdown_timeout=2)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(database_url: str, database: str, rows: int) -> None:
    db.ensure_database(database_url)
    conn = db.connect(database_url)
    try:
        db.apply_schema(conn, load_datasets(None), f"{database}_reader")
        with conn, conn.cursor() as cur:
            cur.execute("""INSERT INTO chute.files (file_id, name, path, sha256, size_bytes, state,
                                                    dataset)
                           VALUES (%s, 'bench.csv', 'archive/bench.csv', repeat('0', 64), 0,
                                   'loaded', 'people') RETURNING seq""", (str(uuid.uuid4()),))
            seq = cur.fetchone()[0]
            cur.execute("""INSERT INTO people SELECT lpad(to_hex(g), 32, '0')::uuid,
                               'First' || g %% 5000, 'Last' || g %% 20000, g %% 100,
                               'Town ' || g %% 1000, %s, g + 1
                           FROM generate_series(1, %s) g""", (seq, rows))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE people")
    finally:
        conn.close()


def start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not answer {url}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, seconds: int, connections: int) -> tuple[int, float, float]:
    """Requests answered, their rate, and the p99 latency in ms."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"errors under load from {url}:\n{out}")
    done = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out).groups()
    return done, rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(url: str, seconds: int, connections: int) -> tuple[int, float, float]:
    """The fallback load generator: `connections` clients in a loop for `seconds`."""
    import aiohttp

    async def drive() -> list[float]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def client() -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    async with session.get(url) as response:
                        await response.read()
                        assert response.status == 200
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(client() for _ in range(connections)))
        return latencies

    latencies = asyncio.run(drive())
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return len(latencies), len(latencies) / seconds, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--num-records", type=int, default=10)
    parser.add_argument("--bare-skips-reset", action="store_true",
                        help="give the bare pool chute's no-op reset too, to see the cost of "
                             "chute's own code alone")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "DATABASE_URL"),
                        help=argparse.SUPPRESS)  # how this script starts the baseline
    args = parser.parse_args()
    if args.bare:
        bare_server(int(args.bare[0]), args.bare[1], args.bare_skips_reset)
        return

    database = f"chute_bench_api_{uuid.uuid4().hex[:8]}"
    database_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    load = run_wrk if shutil.which("wrk") else run_python
    ports = {"chute": free_port(), "bare": free_port()}
    env = {**os.environ, "CHUTE_DATABASE_URL": database_url,
           "CHUTE_API_PORT": str(ports["chute"]), "CHUTE_API_HOST": "127.0.0.1"}
    env.pop("CHUTE_API_TOKEN", None)
    processes = []
    try:
        fill(database_url, database, args.rows)
        path = f"/read/first-chunk?num_records={args.num_records}"
        urls = {name: f"http://127.0.0.1:{port}{path}" for name, port in ports.items()}
        processes.append(start([sys.executable, "-m", "api"], env, urls["chute"]))
        bare = [sys.executable, __file__, "--bare", str(ports["bare"]), database_url]
        processes.append(start(bare + ["--bare-skips-reset"] * args.bare_skips_reset, env,
                               urls["bare"]))
        assert requests.get(urls["chute"]).json() == requests.get(urls["bare"]).json()
        pids = {"chute": processes[0].pid, "bare": processes[1].pid}
        results: dict[str, list[tuple[float, float, float]]] = {"chute": [], "bare": []}
        for name in ("chute", "bare"):
            load(urls[name], 2, args.connections)  # warm-up: pool filled, code paths hot
        for _ in range(args.rounds):
            for name in ("chute", "bare"):
                cpu = cpu_seconds(pids[name])
                done, rate, p99 = load(urls[name], args.seconds, args.connections)
                cpu_us = (cpu_seconds(pids[name]) - cpu) / done * 1e6
                results[name].append((rate, p99, cpu_us))
        report(results, load.__name__, args)
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        drop(database)


def report(results: dict[str, list[tuple[float, float, float]]], tool: str,
           args: argparse.Namespace) -> None:
    median = {name: [statistics.median(column) for column in zip(*runs, strict=True)]
              for name, runs in results.items()}
    bare = "bare pool without reset query" if args.bare_skips_reset else "bare asyncpg defaults"
    print(f"\n`GET /read/first-chunk?num_records={args.num_records}` over {args.rows} rows, "
          f"{args.connections} connections, {args.rounds} rounds of {args.seconds} s "
          f"({tool.removeprefix('run_')}; {bare}; median of the rounds)\n")
    print("| server | requests/s | p99 latency (ms) | server CPU per request (µs) |")
    print("|---|---:|---:|---:|")
    for name, (rate, p99, cpu_us) in median.items():
        print(f"| {name} | {rate:,.0f} | {p99:.1f} | {cpu_us:,.0f} |")
    # Each round ran chute then bare back to back, under much the same outside load: the
    # median of the rounds' own ratios shrugs off a noisy round better than a ratio of
    # medians would.
    pairs = list(zip(results["chute"], results["bare"], strict=True))
    rate_ratio = statistics.median(c[0] / b[0] for c, b in pairs)
    cpu_ratio = statistics.median(b[2] / c[2] for c, b in pairs)
    print(f"\nchute / bare, median of the rounds: **{rate_ratio:.2f}x** requests/s, "
          f"**{cpu_ratio:.2f}x** requests per CPU second (target >= 0.90x)")


def drop(database: str) -> None:
    for _ in range(30):  # PostgreSQL may be restarting: the scratch database must still go
        try:
            admin = psycopg2.connect(ADMIN_URL)
            break
        except psycopg2.OperationalError:
            time.sleep(2)
    else:
        raise SystemExit(f"could not drop the scratch database {database}; drop it by hand")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cur.execute(f'DROP ROLE IF EXISTS "{database}_reader"')
    admin.close()


if __name__ == "__main__":
    main()
