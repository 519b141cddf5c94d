"""The measurements, each on a fresh stack so one cannot warm up or slow down the next.

Every figure is checked before it is kept: a run whose counts differ from what the
generator wrote (rows, rejects) is reported as wrong, because a fast wrong load is
not a result.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import floors, peers, proc
from bench.generate import Generated
from bench.stack import Arrival, Stack
from chute.datasets.declarations import Dataset


def _check(arrival: Arrival, made: Generated) -> list[str]:
    """Differences between what the pipeline recorded and what the file holds."""
    expected = {"state": "loaded", "rows_total": made.rows, "rows_loaded": made.loaded,
                "rows_rejected": made.rejects}
    got = {"state": arrival.state, **{k: arrival.counts.get(k) for k in list(expected)[1:]}}
    return [f"{arrival.name}: {key} is {got[key]}, expected {value}"
            for key, value in expected.items() if got[key] != value]


def _phases(stack: Stack, arrival: Arrival) -> dict[str, float]:
    """Seconds after the drop at which the file was registered, claimed by a transformer,
    fully published, and marked loaded (database and log clocks: same machine)."""
    counts = arrival.counts
    transformed = [e for e in stack.log_events("transformer", "file transformed")
                   if e.get("file_name") == arrival.name]
    phases = {
        "registered_s": counts["received_at"] - arrival.dropped_at,
        "claimed_s": counts["started_at"] - arrival.dropped_at,
        "marked_loaded_s": counts["finished_at"] - arrival.dropped_at,
    }
    if transformed:
        end = datetime.fromisoformat(str(transformed[-1]["time"])).timestamp()
        phases["transformed_s"] = end - arrival.dropped_at
        phases["transform_busy_s"] = float(transformed[-1]["duration_ms"]) / 1000
    ranges = [e for e in stack.log_events("transformer", "range transformed")
              if e.get("file_name") == arrival.name]
    if ranges:  # read in ranges: transformed once the last range is sent
        phases["transformed_s"] = max(datetime.fromisoformat(str(e["time"])).timestamp()
                                      for e in ranges) - arrival.dropped_at
        phases["transform_busy_s"] = sum(float(e["duration_ms"]) for e in ranges) / 1000
        phases["ranges"] = len(ranges)
    return {key: round(value, 3) for key, value in phases.items()}


def _cpu_used(before: dict[str, float | None], after: dict[str, float | None]
              ) -> dict[str, float]:
    return {key: round((after[key] or 0.0) - (before.get(key) or 0.0), 2) for key in after}


def big_file(root: Path, made: Generated, dataset: Dataset, drop_as: str, batch_size: int,
             peer_timeout: float | None, transformers: int = 1, loaders: int = 1
             ) -> dict[str, Any]:
    """One large file of `dataset`: drop -> loaded, first row in the API, peak memory, CPU
    by process, then the floors and (unless peer_timeout is None) the peer on the rows
    and the file chute loaded, on the same server."""
    result: dict[str, Any] = {"dataset": dataset.name, "rows": made.rows,
                              "rejects": made.rejects, "bytes": made.size,
                              "batch_size": batch_size, "transformers": transformers,
                              "loaders": loaders}
    with Stack(root, batch_size, transformers, loaders) as stack:
        result["load_average_before"] = proc.load_average()
        servers = stack.servers()
        cpu_before = stack.cpu_seconds()
        arrival = stack.drop(made.path, drop_as)
        stack.watch([arrival], timeout=300 + made.rows / 1000, interval=0.01,
                    first_row=dataset.name)
        result["servers_restarted"] = _restarted(stack, servers)
        result["cpu_s"] = _cpu_used(cpu_before, stack.cpu_seconds())
        result["peak_rss_mb"] = stack.peak_rss_mb()
        result["drop_to_loaded_s"] = round(arrival.loaded_s, 3)
        result["rows_per_s"] = round(made.rows / arrival.loaded_s)
        result["first_row_s"] = round(arrival.first_row_s or float("nan"), 3)
        result["phases"] = _phases(stack, arrival)
        durations = [float(e["duration_ms"]) for e in stack.log_events("loader", "batch loaded")]
        result["loader_batches"] = len(durations)
        result["loader_busy_s"] = round(sum(durations) / 1000, 3)
        result["errors"] = _check(arrival, made)
        stack.services.stop_all()  # the yardsticks compete with nothing of chute's
        url = stack.environment.database_url
        result["floors"] = floors.floors(url, dataset, loaders, batch_size, stack.root)
        for floor, measured in result["floors"].items():
            result[f"chute_over_{floor}_floor"] = round(
                arrival.loaded_s / measured["seconds"], 2)
            if measured["rows"] != made.loaded:
                result["errors"].append(f"{drop_as}: the {floor} floor copied "
                                        f"{measured['rows']} rows, chute loaded {made.loaded}")
        if peer_timeout is not None:
            peer = peers.pgloader(url, dataset, made.path, stack.root, peer_timeout)
            # Cut short, its time for the file is estimated from its rate (about as many
            # rows to load as chute loaded: a little less than it would, in its favour).
            whole = peer["seconds"] if peer["finished"] else \
                peer["seconds"] * made.loaded / max(peer["rows"], 1)
            peer["whole_file_s"] = round(whole, 1)
            result["pgloader"] = peer
            result["pgloader_over_chute"] = round(whole / arrival.loaded_s, 2)
    return result


def small_files(root: Path, files: list[Generated], batch_size: int) -> dict[str, Any]:
    """Files dropped one after another, each waited for: the latency a user sees."""
    latencies: list[float] = []
    phases: dict[str, list[float]] = {}
    errors: list[str] = []
    with Stack(root, batch_size) as stack:
        servers = stack.servers()
        for index, made in enumerate(files):
            arrival = stack.drop(made.path, f"small-{index:03d}.csv")
            stack.watch([arrival], timeout=60, interval=0.002)
            latencies.append(arrival.loaded_s)
            for key, value in _phases(stack, arrival).items():
                phases.setdefault(key, []).append(value)
            errors += _check(arrival, made)
            time.sleep(0.05)  # let the last file's move to archive/ settle, as between users
        peak = stack.peak_rss_mb()
        restarted = _restarted(stack, servers)
    return {
        "files": len(files), "rows_each": files[0].rows,
        "median_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "phase_medians_ms": {k: round(statistics.median(v) * 1000, 1)
                             for k, v in phases.items() if not k.endswith("busy_s")},
        "peak_rss_mb": peak, "servers_restarted": restarted, "errors": errors,
    }


def scale_out(root: Path, files: list[Generated], batch_size: int, transformers: int,
              loaders: int) -> dict[str, Any]:
    """Several files dropped at once: rows/s from the first drop to the last load."""
    with Stack(root, batch_size, transformers, loaders) as stack:
        load = proc.load_average()
        servers = stack.servers()
        cpu_before = stack.cpu_seconds()
        arrivals = [stack.drop(made.path, f"part-{i}.csv") for i, made in enumerate(files)]
        total = sum(made.rows for made in files)
        stack.watch(arrivals, timeout=300 + total / 1000, interval=0.01)
        first = min(a.dropped_at for a in arrivals)
        seconds = max(a.dropped_at + a.loaded_s for a in arrivals) - first
        errors = [e for a, made in zip(arrivals, files, strict=True) for e in _check(a, made)]
        return {
            "transformers": transformers, "loaders": loaders, "files": len(files),
            "rows": total, "seconds": round(seconds, 3), "rows_per_s": round(total / seconds),
            "load_average_before": load,
            "cpu_s": _cpu_used(cpu_before, stack.cpu_seconds()),
            "peak_rss_mb": stack.peak_rss_mb(), "servers_restarted": _restarted(stack, servers),
            "errors": errors,
        }


def _restarted(stack: Stack, before: tuple[str, list[int]]) -> bool:
    """True when PostgreSQL or RabbitMQ restarted during the measurement (a shared machine's
    other users may do that); such a figure is kept but flagged."""
    try:
        return stack.servers() != before
    except Exception:  # noqa: BLE001 - the database is down right now: it restarted
        return True


def _percentile(values: list[float], percent: int) -> float:
    """Nearest-rank percentile: with 50 samples, p99 is the largest (no interpolation)."""
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]
