"""The transform against its floor: Arrow's own CSV reader on the same file.

    python -m bench.transform_floor [--rows 1000000] [--repeat 3]

For the people file and the wide file (with its 3% bad rows, and clean), in this process
and one thread:

- Arrow floor: `pyarrow.csv.read_csv` of the file, one thread, each column read as its
  declared Arrow type where Arrow can parse every value the file holds (else as text, and
  the table says which: Arrow stops at the first value it cannot convert, where chute
  rejects the row and goes on); and the same read with every column as text (Arrow's
  parse alone, no conversion);
- chute: the transformer's own transform() over the file (what a transformer does with a
  file but the broker), CPU-seconds, by stage from wrappers timing the stages' functions:
  classify (numpy: which lines the fast path takes), split + clean + check (Arrow
  compute), encode (COPY tuples), and the rest (the row-by-row way for the lines the fast
  path leaves, batching);
- the passes before it: the scan (sha256 and checks) and the range plan (quote parity);
- publish: the batches published to a scratch namespace of the real broker, with
  confirms, as the transformer publishes them.

Median of `--repeat` runs of each, interleaved. Results: bench/results/transform.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from bench import proc
from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from chute.datasets.declarations import Dataset, load
from chute.rabbitmq import broker as brokers
from chute.rabbitmq.messages import RowBatch
from chute.reading import columnar, ranges, transform
from chute.reading.cleaning import find_columns
from chute.reading.streams import DEFAULT_LIMITS, scan
from chute.runtime.config import DEFAULTS

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
RESULTS = Path(__file__).parent / "results" / "transform.json"
WIDE = Path(__file__).parent / "wide.toml"
RANGE_BYTES = int(DEFAULTS["CHUTE_RANGE_BYTES"])
STAGES = {"classify": (columnar, "_plain_lines"), "split_clean_check": (columnar, "_clean"),
          "encode": (transform, "row_tuples")}


def arrow_parse(path: Path) -> float:
    """read_csv on one thread, every column as text: Arrow's parse alone, CPU-seconds."""
    names = next(csv.reader(io.StringIO(path.open(encoding="utf-8").readline())))
    started = time.process_time()
    pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                   parse_options=pacsv.ParseOptions(newlines_in_values=True,
                                                    invalid_row_handler=lambda _row: "skip"),
                   convert_options=pacsv.ConvertOptions(
                       column_types=dict.fromkeys(names, pa.large_string())))
    return round(time.process_time() - started, 3)


def arrow_floor(path: Path, dataset: Dataset) -> dict[str, Any]:
    """read_csv on one thread with the declared types, text where Arrow cannot read a
    column's values; rows of another field count skipped."""
    names = next(csv.reader(io.StringIO(path.open(encoding="utf-8").readline())))
    layout = find_columns(names, dataset)
    types = {}
    for column, at in zip(dataset.columns, layout.at, strict=True):
        if at is not None:
            arrow = column.type.arrow_type
            # Arrow's reader has no uuid conversion; a column cut from a field is text.
            types[names[at]] = (pa.large_string() if column.take is not None
                                or isinstance(arrow, pa.BaseExtensionType) else arrow)
    as_text: list[str] = []
    while True:
        options = pacsv.ConvertOptions(
            column_types=types, include_columns=list(types),
            true_values=["true", "TRUE", "yes", "1", "t"],
            false_values=["false", "FALSE", "no", "0", "f"])
        started = time.process_time()
        try:
            table = pacsv.read_csv(
                path, read_options=pacsv.ReadOptions(use_threads=False),
                # A row of another field count is skipped, as an Arrow user would; line
                # breaks inside quotes are read (the files hold a few).
                parse_options=pacsv.ParseOptions(newlines_in_values=True,
                                                 invalid_row_handler=lambda _row: "skip"),
                convert_options=options)
        except pa.ArrowInvalid as e:
            found = re.search(r"column #(\d+)", str(e))
            if found is None or names[int(found[1])] not in types:
                raise
            name = names[int(found[1])]
            types[name] = pa.large_string()
            as_text.append(name)
            continue
        seconds = time.process_time() - started
        return {"cpu_s": round(seconds, 3), "rows": table.num_rows, "read_as_text": as_text,
                "parse_only_cpu_s": arrow_parse(path)}


def chute_transform(path: Path, dataset: Dataset, batch_size: int) -> dict[str, Any]:
    spent = dict.fromkeys(STAGES, 0.0)
    saved = {}
    for stage, (module, name) in STAGES.items():
        function = getattr(module, name)
        saved[stage] = function
        setattr(module, name, _timed(function, spent, stage))
    try:
        started = time.process_time()
        batches = []
        with path.open("rb") as raw:
            for message in transform.transform(raw, dataset, str(uuid.uuid4()), 1, "0" * 64,
                                               batch_size):
                if isinstance(message, RowBatch):
                    batches.append(message)
        total = time.process_time() - started
    finally:
        for stage, (module, name) in STAGES.items():
            setattr(module, name, saved[stage])
    result = {"cpu_s": round(total, 3),
              "stages_cpu_s": {k: round(v, 3) for k, v in spent.items()}}
    result["stages_cpu_s"]["row_by_row_and_batching"] = round(total - sum(spent.values()), 3)
    result["rows"] = sum(b.row_count for b in batches)
    result["rejects"] = sum(b.reject_count for b in batches)
    result["publish_cpu_s"] = _publish(batches)
    return result


def _timed(function: Callable[..., Any], spent: dict[str, float], stage: str
           ) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[stage] += time.process_time() - started
    return timed


def _publish(batches: list[RowBatch]) -> float:
    """The transformer's publishing of these batches, with confirms, to a scratch queue."""
    namespace = f"chute-bench-{uuid.uuid4().hex[:8]}"
    broker = brokers.Broker(AMQP, namespace)
    try:
        started = time.process_time()
        for batch in batches:
            broker.publish(brokers.BATCHES, *batch.encode())
        return round(time.process_time() - started, 3)
    finally:
        broker.close()
        brokers.delete_namespace(AMQP, namespace)


def passes(path: Path, dataset: Dataset, batch_size: int) -> dict[str, float]:
    with path.open("rb") as raw:
        started = time.process_time()
        scan(raw, DEFAULT_LIMITS)
        scanned = time.process_time() - started
        raw.seek(0)
        started = time.process_time()
        ranges.plan(raw, path.stat().st_size, batch_size, RANGE_BYTES, dataset.delimiter,
                    len(dataset.columns), transform.MAX_BATCH_BYTES)
        planned = time.process_time() - started
    return {"scan_cpu_s": round(scanned, 3), "plan_cpu_s": round(planned, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/chute-bench-transform"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    people = load(None)["people"]
    wide = load(WIDE)["wide"]
    files = [("people", people, generate(args.workdir / "people.csv", args.rows)),
             ("wide", wide, generate_wide(args.workdir / "wide.csv", args.rows)),
             ("wide, clean", wide, generate_wide(args.workdir / "wide-clean.csv", args.rows,
                                                 bad_share=0.0))]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _d, _m in files}
    floors: dict[str, list[dict[str, Any]]] = {name: [] for name, _d, _m in files}
    for _round in range(args.repeat):  # interleaved: the machine's drift hits each alike
        for name, dataset, made in files:
            floors[name].append(arrow_floor(made.path, dataset))
            runs[name].append(chute_transform(made.path, dataset, args.batch_size)
                              | passes(made.path, dataset, args.batch_size))
            print(f"{name}: chute {runs[name][-1]['cpu_s']} CPU-s, Arrow "
                  f"{floors[name][-1]['cpu_s']}", file=sys.stderr)
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": proc.machine(), "command": " ".join(
                   ["python -m bench.transform_floor", *sys.argv[1:]]),
               "rows": args.rows, "files": {}}
    for name, _dataset, made in files:
        chute = _median(runs[name])
        arrow = _median(floors[name])
        chute["over_arrow"] = round(chute["cpu_s"] / arrow["cpu_s"], 2)
        results["files"][name] = {"bytes": made.size, "rejects": made.rejects,
                                  "chute": chute, "arrow": arrow}
    clean, bad = results["files"]["wide, clean"], results["files"]["wide"]
    results["bad_rows_cost"] = round(bad["chute"]["cpu_s"] / clean["chute"]["cpu_s"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))
    return 0


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median CPU, whole (its stages add up)."""
    ordered = sorted(runs, key=lambda r: r["cpu_s"])
    median = dict(ordered[len(ordered) // 2])
    median["cpu_s_runs"] = [r["cpu_s"] for r in runs]
    median["cpu_s_median"] = statistics.median(r["cpu_s"] for r in runs)
    return median


def _table(results: dict[str, Any]) -> str:
    lines = ["| file | Arrow read_csv, 1 thread | Arrow, every column as text | chute transform "
             "| / Arrow | classify | split, clean, check | encode | row by row, batching | "
             "publish | scan | plan |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, f in results["files"].items():
        c, s = f["chute"], f["chute"]["stages_cpu_s"]
        text = f" (text: {', '.join(f['arrow']['read_as_text'])})" if f["arrow"][
            "read_as_text"] else ""
        lines.append(f"| {name} | {f['arrow']['cpu_s']} s{text} | "
                     f"{f['arrow']['parse_only_cpu_s']} s | {c['cpu_s']} s | "
                     f"{c['over_arrow']}x | {s['classify']} | {s['split_clean_check']} | "
                     f"{s['encode']} | {s['row_by_row_and_batching']} | {c['publish_cpu_s']} | "
                     f"{c['scan_cpu_s']} | {c['plan_cpu_s']} |")
    lines.append(f"\n3% bad rows cost {results['bad_rows_cost']}x the clean file's CPU (wide)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
