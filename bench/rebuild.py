"""`chute rebuild` measured: each file loaded once through the pipeline, then the
declaration changed (a column's type, which start-up cannot take) and the table rebuilt
from the archive, beside the schema floor (PostgreSQL's own COPY of the same rows into
the same table, bench/floors.py), in the same run. The API answers meanwhile: its p99
while idle and while the rebuild runs.

    .venv/bin/python -m bench.rebuild --rows 1000000

Writes bench/results/rebuild.json and prints a table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.floors import floors
from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from bench.stack import DATASETS, Stack
from chute.datasets.declarations import load

RESULTS = Path(__file__).resolve().parent / "results"
CHUTE = str(Path(sys.executable).parent / "chute")
# The declaration change of each dataset: a type the table does not have.
PEOPLE_CHANGED = """
[datasets.people]
match   = ["*.csv"]
filters = ["location", "first_name", "last_name"]
[datasets.people.columns.first_name]
type = "text"
header = "fullname"
take = "first_word"
required = true
max_length = 500
[datasets.people.columns.last_name]
type = "text"
header = "fullname"
take = "after_first_word"
max_length = 500
[datasets.people.columns.age]
type = "integer"
required = true
min = 0
max = 150
[datasets.people.columns.location]
type = "text"
required = true
max_length = 500
"""
WIDE_CHANGED = ('store_id   = { type = "integer", header = "Store", min = 1 }',
                'store_id   = { type = "bigint", header = "Store", min = 1 }')


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0


def poll(url: str, stop: threading.Event, samples: list[float], failed: list[str]) -> None:
    """A reader paging the dataset, as a client would, one request at a time; each
    answer that is not 200 is kept (the run fails on any)."""
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        answer = session.get(url, params={"limit": 100}, timeout=30)
        samples.append(time.perf_counter() - started)
        if answer.status_code != 200:
            failed.append(f"{answer.status_code}: {answer.text[:200]}")


def measure(root: Path, rows: int, batch_size: int) -> dict[str, Any]:
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    made = {"people": generate(files / "people.csv", rows, 7),
            "wide": generate_wide(files / "wide.csv", rows, 11)}
    changed = root / "changed.toml"
    changed.write_text(DATASETS.read_text().replace(*WIDE_CHANGED) + PEOPLE_CHANGED)
    result: dict[str, Any] = {"rows": rows, "batch_size": batch_size, "datasets": {}}
    with Stack(root, batch_size) as stack:
        for name, generated in made.items():
            target = "people.csv" if name == "people" else "wide/wide.csv"
            arrival = stack.drop(generated.path, target)
            stack.watch([arrival], timeout=600 + rows / 1000, interval=0.05)
            result["datasets"][name] = {"first_load_s": round(arrival.loaded_s or 0.0, 2),
                                        "state": arrival.state}
        # The workers stop (they run the old declaration); the API reads on.
        for name, process in stack.services.processes:
            if name != "api":
                stack.services.stop(process)
        env = {**stack.environment.env, "CHUTE_DATASETS": str(changed)}
        for name in made:
            url = f"{stack.environment.api}/datasets/{name}/rows"
            idle: list[float] = []
            stop = threading.Event()
            failed: list[str] = []
            reader = threading.Thread(target=poll, args=(url, stop, idle, failed))
            reader.start()
            time.sleep(5)
            stop.set()
            reader.join()
            during: list[float] = []
            stop = threading.Event()
            reader = threading.Thread(target=poll, args=(url, stop, during, failed))
            reader.start()
            started = time.perf_counter()
            done = subprocess.run([CHUTE, "rebuild", name], env=env, capture_output=True,
                                  text=True)
            seconds = time.perf_counter() - started
            stop.set()
            reader.join()
            if done.returncode != 0:
                raise SystemExit(f"rebuild {name} failed: {done.stderr}")
            if failed:
                raise SystemExit(f"the API failed {len(failed)} requests: {failed[0]}")
            result["datasets"][name].update({
                "rebuild_s": round(seconds, 2), "api_p99_idle_ms": round(p99(idle), 1),
                "api_p99_during_ms": round(p99(during), 1), "api_requests_during": len(during),
                "rebuild_over_first_load": round(
                    seconds / result["datasets"][name]["first_load_s"], 2)})
        datasets = load(changed)
        for name in made:
            floor = floors(stack.environment.database_url, datasets[name], 2, batch_size,
                           stack.root)["schema"]
            result["datasets"][name]["schema_floor_s"] = round(floor["seconds"], 2)
            result["datasets"][name]["rebuild_over_floor"] = round(
                result["datasets"][name]["rebuild_s"] / floor["seconds"], 2)
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"| {result['rows']:,} rows | first load (pipeline) | rebuild | rebuild / first "
             "load | schema floor | rebuild / floor | API p99 idle | API p99 during |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in result["datasets"].items():
        lines.append(f"| {name} | {d['first_load_s']:.1f} s | {d['rebuild_s']:.1f} s | "
                     f"{d['rebuild_over_first_load']:.2f}x | {d['schema_floor_s']:.1f} s | "
                     f"{d['rebuild_over_floor']:.2f}x | {d['api_p99_idle_ms']:.1f} ms | "
                     f"{d['api_p99_during_ms']:.1f} ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/chute-bench-rebuild"))
    args = parser.parse_args(argv)
    result = measure(args.work, args.rows, args.batch_size)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rebuild.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
