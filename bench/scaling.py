"""One large file read by 1, 2 and 3 transformers (its ranges shared between them).

    python -m bench.scaling [--rows 5000000] [--transformers 1,2,3] [--loaders 2]
                            [--dataset wide|people]

First the file read whole by one transformer (CHUTE_RANGE_BYTES=0, as before ranges),
then each count of transformers sharing its ranges. Each loads the same file on a fresh
stack (bench.scenarios.big_file: drop -> loaded, CPU-seconds by process, peak RSS, then
PostgreSQL's own COPY of the rows into the same table, the schema floor, measured in the
same run). Results: bench/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import proc, scenarios
from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from chute.datasets.declarations import load

RESULTS = Path(__file__).parent / "results" / "scaling.json"  # {dataset}: its last run
DATASETS = Path(__file__).parent / "wide.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--transformers", default="1,2,3")
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--dataset", choices=("wide", "people"), default="wide")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/chute-bench-scaling"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    make = generate_wide if args.dataset == "wide" else generate
    made = make(args.workdir / f"{args.dataset}.csv", args.rows)
    dataset = load(DATASETS)[args.dataset]
    drop_as = "wide/orders.csv" if args.dataset == "wide" else "people.csv"
    runs: list[dict[str, Any]] = []
    plans = [(1, "0")] + [(int(n), None) for n in args.transformers.split(",")]
    for count, range_bytes in plans:
        print(f"{args.rows:,} {args.dataset} rows, {count} transformer(s), "
              f"{'whole' if range_bytes == '0' else 'ranges'} ...", file=sys.stderr)
        if range_bytes is not None:
            os.environ["CHUTE_RANGE_BYTES"] = range_bytes  # the stack's services inherit it
        try:
            run = scenarios.big_file(args.workdir / f"t{count}-{range_bytes}", made, dataset,
                                     drop_as, args.batch_size, None, count,
                                     args.loaders)
        finally:
            os.environ.pop("CHUTE_RANGE_BYTES", None)
        run["read"] = "whole" if range_bytes == "0" else "ranges"
        runs.append(run)
    made.path.unlink()
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": proc.machine(),
               "command": " ".join(["python -m bench.scaling", *sys.argv[1:]]),
               "dataset": args.dataset, "rows": args.rows, "bytes": made.size, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(args.out.read_text()) if args.out.exists() else {}
    recorded[args.dataset] = results
    args.out.write_text(json.dumps(recorded, indent=2) + "\n")
    print(table(results))
    errors = [e for run in runs for e in run["errors"]]
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


def table(results: dict[str, Any]) -> str:
    lines = ["| transformers | read | drop -> loaded | schema floor | / floor | CPU s: "
             "transformers / loaders / PostgreSQL | peak RSS transformers, MiB |",
             "|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        cpu = run["cpu_s"]
        rss = run["peak_rss_mb"]
        lines.append(
            f"| {run['transformers']} | {run.get('read', 'ranges')} | "
            f"{run['drop_to_loaded_s']} s | "
            f"{run['floors']['schema']['seconds']} s | {run['chute_over_schema_floor']}x | "
            f"{_sum(cpu, 'transformer')} / {_sum(cpu, 'loader')} / {_sum(cpu, 'postgres')} | "
            f"{_each(rss, 'transformer')} |")
    return "\n".join(lines)


def _sum(figures: dict[str, float | None], prefix: str) -> float:
    return round(sum(v or 0 for k, v in figures.items() if k.startswith(prefix)), 1)


def _each(figures: dict[str, float | None], prefix: str) -> str:
    return ", ".join(f"{v:.0f}" for k, v in sorted(figures.items())
                     if k.startswith(prefix) and v is not None)


if __name__ == "__main__":
    sys.exit(main())
