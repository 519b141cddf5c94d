"""Results as a markdown table (for people and the README) and as JSON (for machines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import keys


def _rows(n: int) -> str:
    return f"{n:,}"


def _rate(n: float) -> str:
    return f"{n / 1000:,.0f}k rows/s" if n >= 10_000 else f"{n:,.0f} rows/s"


def _rss(peaks: dict[str, float | None]) -> str:
    return ", ".join(f"{label} {mb:.0f}" for label, mb in peaks.items() if mb is not None)


def _restart_note(result: dict[str, Any]) -> str:
    return " (a server restarted meanwhile)" if result.get("servers_restarted") else ""


def _sum(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix + "-"))


# The targets of issue 14, checked on every run (reported, never failing the run).
MAX_OVER_SCHEMA_FLOOR = 1.5
MIN_PGLOADER_OVER_CHUTE = 2.0
MAX_WORKER_RSS_MB = 200
FLAT_RSS = 1.10  # a worker's peak at the largest size within 10% of its peak at the smallest


def _floor(r: dict[str, Any], name: str) -> str:
    floor = r["floors"][name]
    return f"{floor['seconds']:.1f} s ({_rate(floor['rows_per_s'])})"


def _peer(r: dict[str, Any]) -> str:
    peer = r["pgloader"]
    if peer["finished"]:
        return f"{peer['seconds']:.1f} s ({_rate(peer['rows_per_s'])}), {_rows(peer['rows'])} rows"
    return (f"stopped at {peer['seconds']:.0f} s with {_rows(peer['rows'])} rows "
            f"({_rate(peer['rows_per_s'])}): whole file ~{peer['whole_file_s']:.0f} s")


def _big_files(dataset: str, big: list[dict[str, Any]]) -> list[str]:
    lines = [f"| {dataset}: one file | " + " | ".join(
        f"{_rows(r['rows'])} rows ({r['bytes'] / 1e6:.0f} MB)" for r in big) + " |",
        "|---|" + "---|" * len(big)]

    def row(label: str, cell: Any, when: str | None = None) -> None:
        if when is None or all(when in r for r in big):
            lines.append(f"| {label} | " + " | ".join(cell(r) for r in big) + " |")

    streams = big[0]["loaders"]
    row("rows rejected", lambda r: _rows(r["rejects"]))
    row("chute drop -> loaded", lambda r: f"{r['drop_to_loaded_s']:.1f} s "
                                           f"({_rate(r['rows_per_s'])})")
    row("first row in the API", lambda r: f"{r['first_row_s']:.2f} s")
    row("of which: transform done", lambda r: f"{r['phases'].get('transformed_s', 0):.1f} s")
    row("loader busy (sum of COPY transactions)", lambda r: f"{r['loader_busy_s']:.1f} s")
    row(f"bare floor: COPY, same columns, no index ({streams} streams)",
        lambda r: _floor(r, "bare"), "floors")
    row(f"schema floor: COPY, identical table ({streams} streams)",
        lambda r: _floor(r, "schema"), "floors")
    row("chute time / schema floor time", lambda r: f"{r['chute_over_schema_floor']:.2f}x",
        "floors")
    row("chute time / bare floor time", lambda r: f"{r['chute_over_bare_floor']:.2f}x",
        "floors")
    row("pgloader (peer, typed columns)", _peer, "pgloader")
    row("pgloader time / chute time", lambda r: f"{r['pgloader_over_chute']:.2f}x", "pgloader")
    row("peak RSS, MiB", lambda r: _rss(r["peak_rss_mb"]))
    row("transformers + loaders", lambda r: f"{r['transformers']} + {r['loaders']}")
    row("CPU s: transformers / loaders / PG backends",
        lambda r: f"{_sum(r['cpu_s'], 'transformer'):.1f} / "
                  f"{_sum(r['cpu_s'], 'loader'):.1f} / "
                  f"{r['cpu_s'].get('postgres backends', 0):.1f}")
    row("load average before", lambda r: f"{r['load_average_before']:.2f}")
    row("a server restarted during the run", lambda r: "YES" if r.get("servers_restarted")
        else "no")
    unchecked = next((r["pgloader"]["unchecked"] for r in big if "pgloader" in r), None)
    if unchecked:
        lines += ["", f"pgloader does not check (it loads rows chute rejects): "
                      f"{', '.join(unchecked)}."]
    lines.append("")
    return lines


def _targets(big: list[dict[str, Any]]) -> list[str]:
    """One line per target: met or not, with the figures that decide it."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def target(label: str, measured: str, met: bool) -> None:
        lines.append(f"| {label} | {measured} | {'yes' if met else 'NO'} |")

    for r in big:
        where = f"{r.get('dataset', 'people')} {_rows(r['rows'])}"
        if "chute_over_schema_floor" in r:
            value = r["chute_over_schema_floor"]
            target(f"{where}: chute <= {MAX_OVER_SCHEMA_FLOOR}x schema floor", f"{value:.2f}x",
                   value <= MAX_OVER_SCHEMA_FLOOR)
        if "pgloader_over_chute" in r:
            value = r["pgloader_over_chute"]
            target(f"{where}: chute >= {MIN_PGLOADER_OVER_CHUTE:.0f}x faster than pgloader",
                   f"{value:.2f}x", value >= MIN_PGLOADER_OVER_CHUTE)
        peaks = {k: v for k, v in r["peak_rss_mb"].items() if v is not None}
        worst = max(peaks, key=peaks.__getitem__)
        target(f"{where}: every worker's peak RSS < {MAX_WORKER_RSS_MB} MiB",
               f"{worst} {peaks[worst]:.0f}", peaks[worst] < MAX_WORKER_RSS_MB)
    for dataset in dict.fromkeys(r.get("dataset", "people") for r in big):
        runs = sorted((r for r in big if r.get("dataset", "people") == dataset),
                      key=lambda r: r["rows"])
        if len(runs) < 2:
            continue
        # By service, the most any of its processes used: with two transformers, one
        # reads the file and the other idles, and which one does changes between runs.
        small, large = _by_service(runs[0]["peak_rss_mb"]), _by_service(runs[-1]["peak_rss_mb"])
        growth = {k: large[k] / small[k] for k in large if small.get(k) and large[k]}
        worst = max(growth, key=growth.__getitem__)
        target(f"{dataset}: peak RSS flat from {_rows(runs[0]['rows'])} to "
               f"{_rows(runs[-1]['rows'])} rows (within {FLAT_RSS - 1:.0%})",
               f"{worst} {small[worst]:.0f} -> {large[worst]:.0f}", growth[worst] <= FLAT_RSS)
    lines.append("")
    return lines


def _by_service(peaks: dict[str, float | None]) -> dict[str, float]:
    """{"transformer-1": 85, "transformer-2": 148, ...} -> {"transformer": 148, ...}."""
    most: dict[str, float] = {}
    for label, peak in peaks.items():
        service = label.rsplit("-", 1)[0] if label.rsplit("-", 1)[-1].isdigit() else label
        most[service] = max(most.get(service, 0.0), peak or 0.0)
    return most


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = results["machine"]
    lines.append(f"chute benchmark, {results['date']}: {machine['nproc']} cores, "
                 f"{machine['memory_gib']} GiB, {machine['cpu_model']}; "
                 f"batch size {results['batch_size']}")
    lines.append("")
    big = results.get("big_files", [])
    for dataset in dict.fromkeys(r.get("dataset", "people") for r in big):
        lines += _big_files(dataset, [r for r in big if r.get("dataset", "people") == dataset])
    if big:
        lines += _targets(big)
    small = results.get("small_files")
    if small:
        lines.append(f"| {small['files']} files of {small['rows_each']} rows, one after another "
                     "| median | p99 | max |")
        lines.append("|---|---|---|---|")
        lines.append(f"| drop -> loaded{_restart_note(small)} | {small['median_ms']:.0f} ms "
                     f"| {small['p99_ms']:.0f} ms | {small['max_ms']:.0f} ms |")
        phases = small["phase_medians_ms"]
        lines.append("| median phases (after drop) | " + ", ".join(
            f"{k.removesuffix('_s')} {v:.0f} ms" for k, v in phases.items()) + " | | |")
        lines.append("")
    scale = results.get("scale_out", [])
    if scale:
        lines.append("| files at once | transformers + loaders | seconds | rows/s "
                     "| peak RSS, MiB |")
        lines.append("|---|---|---|---|---|")
        for r in scale:
            lines.append(f"| {r['files']} x {_rows(r['rows'] // r['files'])} | "
                         f"{r['transformers']} + {r['loaders']} | {r['seconds']:.1f} | "
                         f"{_rate(r['rows_per_s'])}{_restart_note(r)} | {_rss(r['peak_rss_mb'])} |")
        lines.append("")
    sweep = results.get("batch_sweep", [])
    if sweep:
        lines.append("| batch size | drop -> loaded | rows/s | transformer / loader peak MiB |")
        lines.append("|---|---|---|---|")
        for r in sweep:
            peaks = r["peak_rss_mb"]
            lines.append(f"| {_rows(r['batch_size'])} | {r['drop_to_loaded_s']:.1f} s | "
                         f"{_rate(r['rows_per_s'])} | {peaks.get('transformer-1', 0):.0f} / "
                         f"{peaks.get('loader-1', 0):.0f} |")
        lines.append("")
    if results.get("keyed"):
        lines.append(keys.markdown({**results["keyed"], "errors": []}))
        lines.append("")
    if results["errors"]:
        lines.append("WRONG RESULTS: " + "; ".join(results["errors"]))
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
