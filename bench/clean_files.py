"""The peer's best case: people and wide files with nothing to reject or clean.

    python -m bench.clean_files [--rows 1000000] [--peer-timeout 600]

bench.run measures chute, its floors and pgloader on files with a few bad rows, where
pgloader copies a batch again after each bad row. This runs the same scenario
(bench.scenarios.big_file, the default stack of 2 transformers and 2 loaders) on files
where every row loads as written, so pgloader runs at its own speed: no bad value, no
padded value, no "7.0" for a whole number. Results: bench/results/clean-files.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import proc, scenarios
from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from bench.stack import DATASETS
from chute.commands.stack import REPLICAS
from chute.datasets.declarations import load

RESULTS = Path(__file__).parent / "results" / "clean-files.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peer-timeout", type=float, default=600,
                        help="stop pgloader after this many seconds (its rate then "
                             "estimates the whole file)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    datasets = load(DATASETS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chute-bench-clean-") as work:
        root = Path(work)
        files = [
            (generate(root / "people.csv", args.rows, clean=True), "people", "people.csv"),
            (generate_wide(root / "wide.csv", args.rows, bad_share=0.0, messy_share=0.0),
             "wide", "wide/orders.csv"),
        ]
        for made, name, drop_as in files:
            print(f"a clean {name} file of {args.rows:,} rows ...", file=sys.stderr)
            run = scenarios.big_file(root / name, made, datasets[name], drop_as,
                                     args.batch_size, args.peer_timeout,
                                     REPLICAS["transformer"], REPLICAS["loader"])
            peer = run["pgloader"]
            if peer["finished"] and peer["rows"] != made.loaded:  # nothing here to refuse
                run["errors"].append(f"{name}: pgloader loaded {peer['rows']:,} rows "
                                     f"of a clean file of {made.loaded:,}")
            runs.append(run)
            made.path.unlink()
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": proc.machine(),
               "command": " ".join(["python -m bench.clean_files", *sys.argv[1:]]),
               "rows": args.rows, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    errors = [e for run in runs for e in run["errors"]]
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    return 1 if errors else 0


def table(results: dict[str, Any]) -> str:
    lines = ["| clean file | chute drop -> loaded | schema floor | / floor | pgloader | "
             "pgloader / chute |", "|---|---|---|---|---|---|"]
    for run in results["runs"]:
        peer = run["pgloader"]
        shown = (f"{peer['seconds']} s" if peer["finished"] else
                 f"stopped at {peer['seconds']} s with {peer['rows']:,} rows: "
                 f"~{peer['whole_file_s']} s")
        lines.append(
            f"| {run['dataset']}, {run['rows']:,} rows ({run['bytes'] / 1e6:.0f} MB) | "
            f"{run['drop_to_loaded_s']} s | {run['floors']['schema']['seconds']} s | "
            f"{run['chute_over_schema_floor']}x | {shown} | {run['pgloader_over_chute']}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
