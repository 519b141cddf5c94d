"""`make bench`: measure the whole pipeline on generated people and wide files.

    .venv/bin/python -m bench.run [--sizes 1000000,5000000] [--wide-sizes 1000000]

Prints a markdown table and writes every figure, with the date and the machine, to
bench/results/latest.json. Exits 1 when any load was wrong (counts differ from the file).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import keys, proc, report, scenarios
from bench.generate import Generated, generate
from bench.generate_wide import generate as generate_wide
from bench.stack import DATASETS
from chute.commands.stack import REPLICAS
from chute.datasets.declarations import load as load_datasets

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers joined by commas: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--rows", type=int, help="one file of this many rows (= --sizes N)")
    parser.add_argument("--sizes", type=_sizes, default=[1_000_000],
                        help="large people files' sizes, each on a fresh stack "
                             "(default 1000000)")
    parser.add_argument("--wide-sizes", type=_sizes,
                        help="large wide files' sizes (bench/wide.toml; default: --sizes)")
    parser.add_argument("--no-wide", action="store_true", help="no wide file")
    parser.add_argument("--batch-size", type=int, default=10_000,
                        help="CHUTE_BATCH_SIZE for every run but the sweep (default 10000)")
    parser.add_argument("--batch-sizes", type=_sizes, default=[],
                        help="also time the first size with each of these batch sizes")
    parser.add_argument("--transformers", type=int, default=REPLICAS["transformer"],
                        help="transformers for the large-file runs (default: as `make up`, "
                             f"{REPLICAS['transformer']})")
    parser.add_argument("--loaders", type=int, default=REPLICAS["loader"],
                        help="loaders for the large-file runs (default: as `make up`, "
                             f"{REPLICAS['loader']})")
    parser.add_argument("--small-files", type=int, default=50)
    parser.add_argument("--small-rows", type=int, default=100)
    parser.add_argument("--scale-files", type=int, default=4)
    parser.add_argument("--scale-rows", type=int,
                        help="rows per scale-out file (default: first size / files)")
    parser.add_argument("--no-peers", action="store_true", help="skip pgloader")
    parser.add_argument("--peer-timeout", type=float, default=120,
                        help="stop pgloader after this many seconds and report its rate "
                             "(default 120)")
    parser.add_argument("--no-small", action="store_true")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--no-keys", action="store_true", help="skip the keyed run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path,
                        help="where files and stacks live (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.rows:
        args.sizes = [args.rows]
    if args.no_wide:
        args.wide_sizes = []
    elif args.wide_sizes is None:
        args.wide_sizes = args.sizes
    return args


def _generate(folder: Path, name: str, rows: int, seed: int,
              write: Callable[[Path, int, int], Generated] = generate) -> Generated:
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    made = write(folder / name, rows, seed)
    print(f"generated {name}: {rows:,} rows, {made.size / 1e6:.1f} MB "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return made


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    files = work / "files"
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": proc.machine(),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "batch_size": args.batch_size,
    }
    datasets = load_datasets(DATASETS)
    peer_timeout = None if args.no_peers else args.peer_timeout
    big: dict[int, Generated] = {}
    results["big_files"] = []
    for rows in args.sizes:
        big[rows] = _generate(files, f"people-{rows}.csv", rows, seed=7)
        print(f"one people file of {rows:,} rows ...", file=sys.stderr)
        results["big_files"].append(scenarios.big_file(
            work / f"big-{rows}", big[rows], datasets["people"], "people.csv",
            args.batch_size, peer_timeout, args.transformers, args.loaders))
    for rows in args.wide_sizes:
        made = _generate(files, f"wide-{rows}.csv", rows, 11, generate_wide)
        print(f"one wide file of {rows:,} rows ...", file=sys.stderr)
        results["big_files"].append(scenarios.big_file(
            work / f"wide-{rows}", made, datasets["wide"], "wide/orders.csv",
            args.batch_size, peer_timeout, args.transformers, args.loaders))
        made.path.unlink()  # up to a GB: not kept beside the next one
    first = args.sizes[0]
    results["batch_sweep"] = []
    for size in args.batch_sizes:
        print(f"{first:,} rows, batch size {size:,} ...", file=sys.stderr)
        results["batch_sweep"].append(scenarios.big_file(
            work / f"sweep-{size}", big[first], datasets["people"], "people.csv", size,
            None, args.transformers, args.loaders))
    if not args.no_small:
        small = [_generate(files / "small", f"small-{i:03d}.csv", args.small_rows, 1000 + i)
                 for i in range(args.small_files)]
        print(f"{args.small_files} small files ...", file=sys.stderr)
        results["small_files"] = scenarios.small_files(work / "small", small, args.batch_size)
    results["scale_out"] = []
    if not args.no_scale:
        each = args.scale_rows or max(1, first // args.scale_files)
        parts = [_generate(files, f"part-{each}-{i}.csv", each, 20 + i)
                 for i in range(args.scale_files)]
        for workers in (1, 2):
            print(f"{args.scale_files} files at once, {workers} + {workers} workers ...",
                  file=sys.stderr)
            results["scale_out"].append(scenarios.scale_out(
                work / f"scale-{workers}", parts, args.batch_size, workers, workers))
    if not args.no_keys:  # bench/keys.py: two days of a keyed feed, the first size each
        print(f"keyed: {first:,} rows, then {first:,} more ...", file=sys.stderr)
        results["keyed"] = keys.keyed(work / "keyed", first, args.batch_size, args.loaders)
    results["errors"] = [error for section in ("big_files", "batch_sweep", "scale_out")
                         for r in results[section] for error in r["errors"]]
    results["errors"] += results.get("small_files", {}).get("errors", [])
    results["errors"] += results.get("keyed", {}).get("errors", [])
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_peers and shutil.which("pgloader") is None:
        print("pgloader is missing: apt-get install pgloader (or pass --no-peers)",
              file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="chute-bench-"))
    try:
        results = run(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report.write_json(results, args.out)
    print(report.markdown(results))
    print(f"\nwritten: {args.out}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
