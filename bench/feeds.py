"""Compressed files measured: the 1M-row people file plain, gzip'd and zstd'd, each
dropped alone on a fresh stack (so each worker's peak RSS is its own), drop -> loaded,
beside the floors measured in the same run: PostgreSQL's own COPY of the same rows into
the same table (bench/floors.py) and the decompression alone, by the same libraries.
Then a zip of 1,000 small people files (100 rows) beside the same 1,000 files dropped
one by one (bench/burst.py), in files per second, with the same workers.

    .venv/bin/python -m bench.feeds --rows 1000000 --members 1000

The files are compressed as suppliers do, with the command-line tools at their default
levels (gzip -6, zstd -3). Writes bench/results/feeds.json and prints a table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from bench import burst, proc
from bench.floors import floors
from bench.generate import generate
from bench.stack import FINAL, Stack
from chute.commands.stack import REPLICAS
from chute.datasets.declarations import load
from chute.reading.streams import DEFAULT_LIMITS, READ_SIZE, text_stream

RESULTS = Path(__file__).resolve().parent / "results"
COMPRESS = {"gzip": ["gzip", "-6", "-c"], "zstd": ["zstd", "-3", "-c", "-q"]}
SUFFIX = {"plain": "", "gzip": ".gz", "zstd": ".zst"}


def decompress_seconds(path: Path) -> float:
    """The text of a compressed file read once, as the transformer's streams read it."""
    started = time.perf_counter()
    with path.open("rb") as raw:
        text = text_stream(raw, DEFAULT_LIMITS)
        while text.read(READ_SIZE):
            pass
    return time.perf_counter() - started


def zip_against_burst(root: Path, count: int, batch_size: int, rounds: int = 3
                      ) -> dict[str, Any]:
    """Files per second: the same `count` small files one by one, then in one zip, each
    `rounds` times, interleaved; the medians."""
    runs = [_zip_round(root, count, batch_size) for _round in range(rounds)]
    middle = len(runs) // 2
    zipped = sorted(runs, key=lambda r: r["zip_s"])[middle]
    alone = sorted(runs, key=lambda r: r["one_by_one_s"])[middle]
    return {**zipped, "one_by_one_s": alone["one_by_one_s"],
            "one_by_one_files_per_s": alone["one_by_one_files_per_s"],
            "zip_s_all": [r["zip_s"] for r in runs],
            "one_by_one_s_all": [r["one_by_one_s"] for r in runs]}


def _zip_round(root: Path, count: int, batch_size: int) -> dict[str, Any]:
    files = burst.make_files(root / "small", count, 100)
    archive = root / "small.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for made in files:
            out.write(made.path, made.path.name)
    workers = (REPLICAS["transformer"], REPLICAS["loader"])
    dropped = burst.burst(root, files, batch_size, *workers, with_floor=False)
    with Stack(root, batch_size, *workers) as stack:
        arrival = stack.drop(archive, archive.name)
        names = [f"{archive.name}/{made.path.name}" for made in files]
        deadline = time.monotonic() + 120 + count / 5
        while True:
            states = stack.states(names)
            if len(states) == count and all(state in FINAL for state in states.values()):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the zip's members not final: {len(states)} of {count}")
            time.sleep(0.05)
        seconds = time.time() - arrival.dropped_at
        wrong = sorted(n for n, state in states.items() if state != "loaded")
        if wrong:
            raise SystemExit(f"{len(wrong)} members not loaded, as {wrong[0]}")
    return {"members": count, "rows_each": 100, "workers": f"{workers[0]}+{workers[1]}",
            "zip_bytes": archive.stat().st_size, "zip_s": round(seconds, 2),
            "zip_files_per_s": round(count / seconds, 1),
            "one_by_one_s": dropped["seconds"], "one_by_one_files_per_s": dropped["files_per_s"]}


def measure(root: Path, rows: int, batch_size: int, rounds: int = 3) -> dict[str, Any]:
    files = root / "files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    plain = generate(files / "people.csv", rows, 7).path
    paths = {"plain": plain}
    for codec, command in COMPRESS.items():
        target = files / f"people.csv{SUFFIX[codec]}"
        with target.open("wb") as out:
            subprocess.run([*command, str(plain)], stdout=out, check=True)
        paths[codec] = target
    result: dict[str, Any] = {"rows": rows, "batch_size": batch_size, "rounds": rounds,
                              "machine": proc.machine(), "files": {}}
    # Rounds interleave the kinds (plain, gzip, zstd, plain, ...): a machine that slows
    # down for a while slows each kind alike. Each figure is the median of its rounds.
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in paths}
    for _round in range(rounds):
        for kind, path in paths.items():
            runs[kind].append(_one(root, kind, path, rows, batch_size, result))
    for kind, entries in runs.items():
        entries.sort(key=lambda e: e["loaded_s"])
        median = dict(entries[len(entries) // 2])
        median["loaded_s_all"] = [e["loaded_s"] for e in entries]
        result["files"][kind] = median
    base = result["files"]["plain"]["loaded_s"]
    for entry in result["files"].values():
        entry["over_plain"] = round(entry["loaded_s"] / base, 2)
    return result


def _one(root: Path, kind: str, path: Path, rows: int, batch_size: int,
         result: dict[str, Any]) -> dict[str, Any]:
    """One drop of one file on a fresh stack; the COPY floor beside the plain file's."""
    with Stack(root, batch_size) as stack:
        arrival = stack.drop(path, path.name)
        stack.watch([arrival], timeout=600 + rows / 1000, interval=0.02)
        if arrival.state != "loaded":
            raise SystemExit(f"{path.name} ended {arrival.state}")
        peaks = {}
        for name, process in stack.services.processes:
            peak = proc.peak_rss_mb(process.pid)
            if peak is not None:
                peaks[name] = max(peaks.get(name, 0.0), round(peak, 1))
        entry: dict[str, Any] = {"bytes": path.stat().st_size,
                                 "loaded_s": round(arrival.loaded_s or 0.0, 2),
                                 "peak_rss_mb": peaks}
        if kind != "plain":
            entry["decompress_s"] = round(decompress_seconds(path), 2)
        if kind == "plain":
            floor = floors(stack.environment.database_url, load(None)["people"], 2,
                           batch_size, stack.root)["schema"]
            result.setdefault("copy_floor_s_all", []).append(round(floor["seconds"], 2))
            result["copy_floor_s"] = sorted(result["copy_floor_s_all"])[
                len(result["copy_floor_s_all"]) // 2]
    return entry


def markdown(result: dict[str, Any]) -> str:
    lines = [f"| {result['rows']:,} rows | size | drop -> loaded | / plain | decompress alone "
             "| peak RSS transformer / loader |", "|---|---|---|---|---|---|"]
    for kind, d in result["files"].items():
        rss = d["peak_rss_mb"]
        alone = f"{d['decompress_s']:.2f} s" if "decompress_s" in d else "-"
        lines.append(f"| {kind} | {d['bytes'] / 1e6:.1f} MB | {d['loaded_s']:.2f} s | "
                     f"{d['over_plain']:.2f}x | {alone} | "
                     f"{rss.get('transformer', 0):.0f} / {rss.get('loader', 0):.0f} MiB |")
    lines.append(f"\nPostgreSQL's own COPY of the same rows into the same table (floor): "
                 f"{result['copy_floor_s']:.2f} s")
    z = result.get("zip")
    if z:
        lines += ["", f"| {z['members']:,} files of {z['rows_each']} rows | seconds | files/s |",
                  "|---|---|---|",
                  f"| one zip ({z['zip_bytes'] / 1e6:.1f} MB) | {z['zip_s']:.2f} s | "
                  f"{z['zip_files_per_s']:.0f} |",
                  f"| one by one | {z['one_by_one_s']:.2f} s | "
                  f"{z['one_by_one_files_per_s']:.0f} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="drops of each file")
    parser.add_argument("--members", type=int, default=1000,
                        help="small files in the zip (and dropped one by one); 0: none")
    parser.add_argument("--work", type=Path, default=Path("/tmp/chute-bench-feeds"))
    args = parser.parse_args(argv)
    result = measure(args.work, args.rows, args.batch_size, args.rounds)
    if args.members:
        result["zip"] = zip_against_burst(args.work, args.members, args.batch_size,
                                          args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feeds.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
