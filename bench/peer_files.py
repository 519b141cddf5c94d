"""chute beside its two peers, pgloader and dlt, on clean files and on files with bad rows.

    python -m bench.peer_files [--rows 1000000] [--peer-timeout 600]

For people and for wide, two files of the same rows: one with nothing to reject or clean
(no bad value, no padded value, no "7.0" for a whole number: every tool loads it as
written) and the usual one with a few bad rows (bench.generate, bench.generate_wide).
Each is loaded by chute on the default stack (bench.scenarios.big_file: drop -> loaded,
then PostgreSQL's own COPY of the rows into the same table, the schema floor, then
pgloader), and then by dlt as its documentation shows (bench/peer_dlt.py, run in its own
venv, .venv-dlt, which `make bench` installs): pandas' reader, dlt's default, and the
DuckDB reader it recommends for speed. On a file with bad rows pgloader copies a batch
again after each one, so it is stopped after 60 s and its time estimated from its rate.
Results: bench/results/peer-files.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import proc, scenarios
from bench.designs import scratch_database
from bench.generate import Generated, generate
from bench.generate_wide import generate as generate_wide
from bench.stack import DATASETS
from chute.commands.stack import REPLICAS
from chute.datasets.declarations import load

REPO = Path(__file__).resolve().parents[1]
DLT_PYTHON = REPO / ".venv-dlt" / "bin" / "python"
RESULTS = Path(__file__).parent / "results" / "peer-files.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BAD_FILE_PEER_TIMEOUT = 60.0  # pgloader's rate is steady by then (bench.run uses 60-120)


def files(root: Path, rows: int) -> list[tuple[str, str, str, Generated]]:
    """(dataset, kind, where it is dropped, the file), clean first."""
    return [
        ("people", "clean", "people.csv", generate(root / "people-clean.csv", rows, clean=True)),
        ("people", "bad rows", "people.csv", generate(root / "people.csv", rows)),
        ("wide", "clean", "wide/orders.csv",
         generate_wide(root / "wide-clean.csv", rows, bad_share=0.0, messy_share=0.0)),
        ("wide", "bad rows", "wide/orders.csv", generate_wide(root / "wide.csv", rows)),
    ]


def dlt(made: Generated, dataset: str, url: str, method: str, timeout: float
        ) -> dict[str, Any]:
    done = subprocess.run(
        [str(DLT_PYTHON), "-m", "bench.peer_dlt", "--file", str(made.path), "--dataset",
         dataset, "--url", url, "--timeout", str(timeout), "--method", method],
        cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def dlt_methods(kind: str, dataset: str) -> list[str]:
    """pandas, dlt's default; on people's bad file it fails at the first row of too many
    fields, so also what its error leads a user to (skip such rows); DuckDB, the fast way."""
    extra = ["pandas-skip"] if (dataset, kind) == ("people", "bad rows") else []
    return ["pandas", *extra, "duckdb"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peer-timeout", type=float, default=600,
                        help="stop a peer after this many seconds on a clean file")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not DLT_PYTHON.exists():
        print(f"{DLT_PYTHON} is missing: `make bench` installs it", file=sys.stderr)
        return 2
    datasets = load(DATASETS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chute-bench-peers-") as work, \
            scratch_database(ADMIN_URL, "chute_peers") as dlt_url:
        root = Path(work)
        for dataset, kind, drop_as, made in files(root, args.rows):
            print(f"{dataset}, {kind}: {args.rows:,} rows ...", file=sys.stderr)
            timeout = args.peer_timeout if kind == "clean" else BAD_FILE_PEER_TIMEOUT
            run = scenarios.big_file(root / f"{dataset}-{kind}", made, datasets[dataset],
                                     drop_as, args.batch_size, timeout,
                                     REPLICAS["transformer"], REPLICAS["loader"])
            run["kind"] = kind
            peer = run["pgloader"]
            if kind == "clean" and peer["finished"] and peer["rows"] != made.loaded:
                run["errors"].append(f"{dataset}: pgloader loaded {peer['rows']:,} rows "
                                     f"of a clean file of {made.loaded:,}")
            run["dlt"] = {method: dlt(made, dataset, dlt_url, method, args.peer_timeout)
                          for method in dlt_methods(kind, dataset)}
            runs.append(run)
            made.path.unlink()
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": proc.machine(),
               "command": " ".join(["python -m bench.peer_files", *sys.argv[1:]]),
               "rows": args.rows, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    errors = [e for run in runs for e in run["errors"]]
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


def _peer(seconds: float, rows: int, finished: bool, whole: float | None = None) -> str:
    if finished:
        return f"{seconds:.1f} s ({rows:,} rows)"
    if whole:
        return f"stopped at {seconds:.0f} s with {rows:,} rows: ~{whole:,.0f} s"
    return f"failed after {seconds:.1f} s, {rows:,} rows"


def table(results: dict[str, Any]) -> str:
    used = {m for run in results["runs"] for m in run["dlt"]}
    methods = [m for m in ("pandas", "pandas-skip", "duckdb") if m in used]
    lines = ["| file | chute drop -> loaded | schema floor | / floor | pgloader | "
             + " | ".join(f"dlt, {m}" for m in methods) + " |",
             "|---|---|---|---|---|" + "---|" * len(methods)]
    for run in results["runs"]:
        peer = run["pgloader"]
        dlts = [_peer(d["seconds"], d["rows"], d["finished"]) if (d := run["dlt"].get(m))
                else "" for m in methods]
        lines.append(
            f"| {run['dataset']} {run['kind']}, {run['rows']:,} rows "
            f"({run['rejects']:,} to reject) | {run['drop_to_loaded_s']:.1f} s | "
            f"{run['floors']['schema']['seconds']:.1f} s | {run['chute_over_schema_floor']}x | "
            f"{_peer(peer['seconds'], peer['rows'], peer['finished'], peer['whole_file_s'])} | "
            + " | ".join(dlts) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
