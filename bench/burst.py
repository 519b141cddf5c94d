"""Bursts of many small files: `python -m bench.burst [--bursts 1000,10000] [--workers 1+2,2+3]`.

Each burst is N seeded people files of 100 rows (realistic values, a few bad rows),
renamed into the inbox at once on a fresh stack. Reported: files/s and rows/s from the
first drop to the last file loaded, p50/p99 of each file's drop -> loaded, and the CPU
seconds per 1,000 files of every process, PostgreSQL's backends and the broker; then
the floor: PostgreSQL's own cost for the same rows done by hand (see floor()).

A separate module from bench.run so that the large-file runs are unchanged; `make bench`
runs both. Writes bench/results/burst.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

from bench import proc, report
from bench.generate import Generated, generate
from bench.stack import FINAL, Stack
from chute.commands.stack import REPLICAS

RESULTS = Path(__file__).resolve().parent / "results" / "burst.json"
PREFIX = "burst-"


def _workers(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(n) for n in part.split("+")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected T+L pairs joined by commas: {text!r}"
                                         ) from None
    if any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"expected T+L pairs joined by commas: {text!r}")
    return [(p[0], p[1]) for p in pairs]


def _counts(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--bursts", type=_counts, default=[1_000, 10_000],
                        help="files per burst, each on the default stack (as `make up`)")
    parser.add_argument("--rows", type=int, default=100, help="rows per file (default 100)")
    parser.add_argument("--workers", type=_workers, default=[(1, 2), (2, 3)],
                        help="transformers+loaders of the scale runs, each on a burst of "
                             "the first size, beside its default run (default 1+2,2+3)")
    parser.add_argument("--rate", type=float, default=0,
                        help="drop the files at this many a second (default: all at once)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path)
    return parser.parse_args(argv)


def make_files(folder: Path, count: int, rows: int) -> list[Generated]:
    """`count` distinct files (distinct seeds: equal bytes would be duplicates)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [generate(folder / f"{PREFIX}{i:05d}.csv", rows, seed=100_000 + i)
            for i in range(count)]


def burst(root: Path, files: list[Generated], batch_size: int, transformers: int,
          loaders: int, with_floor: bool, rate: float = 0) -> dict[str, Any]:
    """Drop every file at once (or `rate` files a second); wait for all to be final;
    measure."""
    n = len(files)
    with Stack(root, batch_size, transformers, loaders) as stack:
        env = stack.environment
        staging = env.data_dir / ".staging"
        staging.mkdir(exist_ok=True)
        for made in files:  # untimed: only the renames below are the drop
            shutil.copyfile(made.path, staging / made.path.name)  # a link is quarantined
        load = proc.load_average()
        servers = stack.servers()
        cpu_before = stack.cpu_seconds()
        dropped: dict[str, float] = {}
        started = time.time()
        for index, made in enumerate(files):
            if rate:  # paced: file i is dropped i / rate seconds after the first
                time.sleep(max(0.0, started + index / rate - time.time()))
            dropped[made.path.name] = time.time()
            os.rename(staging / made.path.name, env.inbox / made.path.name)
        _wait_final(stack, n, timeout=120 + n / 5)
        cpu = {k: round((v or 0.0) - (cpu_before.get(k) or 0.0), 2)
               for k, v in stack.cpu_seconds().items()}
        restarted = stack.servers() != servers
        records = _records(stack)
        errors = _check(records, files)
        latencies = sorted(records[name]["finished_at"] - at for name, at in dropped.items())
        first = min(dropped.values())
        seconds = max(r["finished_at"] for r in records.values()) - first
        rows = sum(made.rows for made in files)
        result: dict[str, Any] = {
            "files": n, "rows_each": files[0].rows, "rate": rate or "at once",
            "transformers": transformers,
            "loaders": loaders, "seconds": round(seconds, 2),
            "files_per_s": round(n / seconds, 1), "rows_per_s": round(rows / seconds),
            "p50_ms": round(statistics.median(latencies) * 1000),
            "p99_ms": round(_percentile(latencies, 99) * 1000),
            "max_ms": round(latencies[-1] * 1000),
            "phase_medians_ms": _phases(records, dropped),
            "cpu_s_per_1000_files": {k: round(v * 1000 / n, 2) for k, v in cpu.items()},
            "load_average_before": load, "servers_restarted": restarted, "errors": errors,
        }
        if with_floor:
            stack.services.stop_all()  # the floor competes with nothing of chute's
            result["floor"] = floor(env.database_url, n, loaders)
    return result


def _wait_final(stack: Stack, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = _sql(stack, "SELECT count(*) FROM chute.files WHERE name LIKE %s "
                           "AND state = ANY(%s)", (PREFIX + "%", list(FINAL)))
        if rows and rows[0][0] >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"burst not final within {timeout:.0f}s: "
                                 f"{rows[0][0] if rows else '?'} of {n}")
        time.sleep(0.2)


def _sql(stack: Stack, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    stack.states([])  # reconnects if the database went away
    assert stack.db is not None
    with stack.db.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def _records(stack: Stack) -> dict[str, dict[str, Any]]:
    rows = _sql(stack, """SELECT name, state, rows_total, rows_loaded, rows_rejected,
                                 extract(epoch FROM received_at)::float8,
                                 extract(epoch FROM started_at)::float8,
                                 extract(epoch FROM finished_at)::float8
                          FROM chute.files WHERE name LIKE %s""", (PREFIX + "%",))
    return {name: {"state": state, "rows_total": total, "rows_loaded": loaded,
                   "rows_rejected": rejected, "received_at": received,
                   "started_at": started, "finished_at": finished}
            for name, state, total, loaded, rejected, received, started, finished in rows}


def _phases(records: dict[str, dict[str, Any]], dropped: dict[str, float]
            ) -> dict[str, int]:
    """Median milliseconds a file spent waiting for the watcher (drop -> registered),
    for a transformer (-> claimed for transforming), and in transforming and loading
    (-> loaded): where a burst queues up."""
    spans = {"watcher": [], "to_transformer": [], "to_loaded": []}
    for name, at in dropped.items():
        r = records[name]
        if None in (r["received_at"], r["started_at"], r["finished_at"]):
            continue
        spans["watcher"].append(r["received_at"] - at)
        spans["to_transformer"].append(r["started_at"] - r["received_at"])
        spans["to_loaded"].append(r["finished_at"] - r["started_at"])
    return {k: round(statistics.median(v) * 1000) for k, v in spans.items() if v}


def _check(records: dict[str, dict[str, Any]], files: list[Generated]) -> list[str]:
    errors = []
    for made in files:
        got = records.get(made.path.name)
        want = {"state": "loaded", "rows_total": made.rows, "rows_loaded": made.loaded,
                "rows_rejected": made.rejects}
        if got is None:
            errors.append(f"{made.path.name}: not recorded")
            continue
        errors += [f"{made.path.name}: {k} is {got[k]}, expected {v}"
                   for k, v in want.items() if got[k] != v]
    if len(records) != len(files):
        errors.append(f"{len(records)} files recorded, {len(files)} dropped")
    return errors


def floor(database_url: str, n: int, sessions: int) -> dict[str, Any]:
    """PostgreSQL's own cost for the same work, done by hand: per file, one transaction
    holding a ledger row, the COPY of the very rows chute loaded (text format), its
    rejects' COPY and its state change, into copies of chute's tables (same indexes), in
    `sessions` parallel sessions. No broker, no Python worker: what no pipeline beats."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""CREATE TABLE bench_floor_rows (LIKE public.people INCLUDING ALL);
                       CREATE TABLE bench_floor_rejects (LIKE chute.rejects INCLUDING ALL);
                       CREATE TABLE bench_floor_files AS SELECT file_id, seq, state,
                           rows_loaded, rows_rejected, finished_at FROM chute.files;
                       ALTER TABLE bench_floor_files ADD PRIMARY KEY (file_id);
                       CREATE TABLE bench_floor_batches (LIKE chute.batches INCLUDING ALL);
                       ALTER TABLE bench_floor_batches ADD FOREIGN KEY (file_id)
                           REFERENCES bench_floor_files""")
        cur.execute("SELECT file_id::text, seq FROM chute.files WHERE name LIKE %s",
                    (PREFIX + "%",))
        by_seq = {seq: file_id for file_id, seq in cur.fetchall()}
        rows = _split_copy(cur, "COPY (SELECT * FROM public.people ORDER BY file_seq) "
                                "TO STDOUT", by_seq, column=-2, key=int)
        rejects = _split_copy(cur, "COPY (SELECT * FROM chute.rejects ORDER BY file_id) "
                                   "TO STDOUT", {v: v for v in by_seq.values()}, column=0)
    conn.close()
    work: queue.Queue[str] = queue.Queue()
    for file_id in by_seq.values():
        work.put(file_id)
    connections = [psycopg2.connect(database_url) for _ in range(sessions)]
    pids = []
    for c in connections:
        with c.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])
    cpu_before = sum(proc.cpu_seconds(pid) or 0.0 for pid in pids)

    def session(c: Any) -> None:
        while True:
            try:
                file_id = work.get_nowait()
            except queue.Empty:
                return
            body, count = rows.get(file_id, (b"", 0))
            bad, bad_count = rejects.get(file_id, (b"", 0))
            with c, c.cursor() as cur:
                cur.execute("INSERT INTO bench_floor_batches (file_id, batch_no, rows_loaded,"
                            " rows_rejected) VALUES (%s, 0, %s, %s)", (file_id, count, bad_count))
                if body:
                    cur.copy_expert("COPY bench_floor_rows FROM STDIN", io.BytesIO(body))
                if bad:
                    cur.copy_expert("COPY bench_floor_rejects FROM STDIN", io.BytesIO(bad))
                cur.execute("UPDATE bench_floor_files SET state = 'loaded', rows_loaded = %s,"
                            " rows_rejected = %s, finished_at = now() WHERE file_id = %s",
                            (count, bad_count, file_id))

    started = time.perf_counter()
    threads = [threading.Thread(target=session, args=(c,)) for c in connections]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    cpu = sum(proc.cpu_seconds(pid) or 0.0 for pid in pids) - cpu_before
    for c in connections:
        c.close()
    return {"sessions": sessions, "files": n, "seconds": round(seconds, 2),
            "files_per_s": round(n / seconds, 1),
            "postgres_cpu_s_per_1000_files": round(cpu * 1000 / n, 2)}


def _split_copy(cur: Any, query: str, keys: dict[Any, str], column: int,
                key: Any = str) -> dict[str, tuple[bytes, int]]:
    """COPY text output split by file: {file_id: (lines, count)}. COPY text escapes line
    breaks inside values, so a line is a row."""
    out = io.BytesIO()
    cur.copy_expert(query, out)
    found: dict[str, list[bytes]] = {}
    for line in out.getvalue().splitlines(keepends=True):
        value = key(line.rstrip(b"\n").split(b"\t")[column].decode())
        if value in keys:
            found.setdefault(keys[value], []).append(line)
    return {k: (b"".join(v), len(v)) for k, v in found.items()}


def _percentile(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1]


def markdown(results: dict[str, Any]) -> str:
    lines = [f"small-file bursts, {results['date']}: {results['machine']['nproc']} cores, "
             f"{results['machine']['cpu_model']}", "",
             "| burst | T + L | files/s | rows/s | p50 / p99 drop -> loaded "
             "| CPU s per 1,000 files | floor: PG CPU s per 1,000 (files/s) |",
             "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        cpu = r["cpu_s_per_1000_files"]
        parts = ", ".join(f"{_short(k)} {v:.1f}" for k, v in cpu.items() if k != "api")
        fl = r.get("floor")
        floor_cell = (f"{fl['postgres_cpu_s_per_1000_files']:.1f} ({fl['files_per_s']:.0f})"
                      if fl else "")
        note = " (a server restarted)" if r["servers_restarted"] else ""
        paced = f" at {r['rate']:g}/s" if r.get("rate", "at once") != "at once" else ""
        lines.append(f"| {r['files']:,} x {r['rows_each']}{paced} | {r['transformers']} + "
                     f"{r['loaders']} | {r['files_per_s']:.0f}{note} | "
                     f"{r['rows_per_s'] / 1000:.0f}k | {r['p50_ms']:,} / {r['p99_ms']:,} ms | "
                     f"{parts} | {floor_cell} |")
    errors = [e for r in results["runs"] for e in r["errors"]]
    if errors:
        lines.append("WRONG RESULTS: " + "; ".join(errors[:20]))
    return "\n".join(lines)


def _short(label: str) -> str:
    return {"postgres backends": "PG", "rabbitmq (whole broker)": "RabbitMQ"}.get(label, label)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="chute-burst-"))
    default = (REPLICAS["transformer"], REPLICAS["loader"])  # as `make up`
    runs = [(n, *default) for n in args.bursts]
    runs += [(args.bursts[0], *pair) for pair in args.workers if pair != default]
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": proc.machine(),
        "command": " ".join(["python -m bench.burst", *sys.argv[1:]]), "runs": []}
    try:
        files = make_files(work / "files", max(n for n, _, _ in runs), args.rows)
        for n, transformers, loaders in runs:
            print(f"burst of {n:,} files, {transformers} + {loaders} workers ...",
                  file=sys.stderr)
            results["runs"].append(burst(work / f"burst-{n}-{transformers}-{loaders}",
                                         files[:n], args.batch_size, transformers, loaders,
                                         not args.no_floor, args.rate))
            print(markdown(results), file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["errors"] = [e for r in results["runs"] for e in r["errors"]]
    report.write_json(results, args.out)
    print(markdown(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
