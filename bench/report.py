"""Results as a markdown table (for people and the README) and as JSON (for machines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import keys


def _rows(n: int) -> str:
    return f"{n:,}"


def _rate(n: float) -> str:
    return f"{n / 1000:,.0f}k rows/s"


def _rss(peaks: dict[str, float | None]) -> str:
    return ", ".join(f"{label} {mb:.0f}" for label, mb in peaks.items() if mb is not None)


def _restart_note(result: dict[str, Any]) -> str:
    return " (a server restarted meanwhile)" if result.get("servers_restarted") else ""


def _sum(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix + "-"))


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = results["machine"]
    lines.append(f"chute benchmark, {results['date']}: {machine['nproc']} cores, "
                 f"{machine['memory_gib']} GiB, {machine['cpu_model']}; "
                 f"batch size {results['batch_size']}")
    lines.append("")
    big = results.get("big_files", [])
    if big:
        lines.append("| one file | " + " | ".join(_rows(r["rows"]) + " rows" for r in big) + " |")
        lines.append("|---|" + "---|" * len(big))

        def row(label: str, cell: Any) -> None:
            lines.append(f"| {label} | " + " | ".join(cell(r) for r in big) + " |")

        row("chute drop -> loaded", lambda r: f"{r['drop_to_loaded_s']:.1f} s "
                                               f"({_rate(r['rows_per_s'])})")
        row("first row in the API", lambda r: f"{r['first_row_s']:.2f} s")
        row("of which: transform done", lambda r: f"{r['phases'].get('transformed_s', 0):.1f} s")
        row("loader busy (sum of COPY transactions)", lambda r: f"{r['loader_busy_s']:.1f} s")
        if all("copy" in r for r in big):
            row("psql \\copy (floor)", lambda r: f"{r['copy']['seconds']:.1f} s "
                                                 f"({_rate(r['copy']['rows_per_s'])})")
            row("pgloader (peer)", lambda r: f"{r['pgloader']['seconds']:.1f} s "
                                              f"({_rate(r['pgloader']['rows_per_s'])})")
            row("chute time / \\copy time", lambda r: f"{r['chute_over_copy']:.1f}x")
            row("pgloader time / chute time", lambda r: f"{r['pgloader_over_chute']:.2f}x")
        row("peak RSS, MiB", lambda r: _rss(r["peak_rss_mb"]))
        row("transformers + loaders", lambda r: f"{r['transformers']} + {r['loaders']}")
        row("CPU s: transformers / loaders / PG backends",
            lambda r: f"{_sum(r['cpu_s'], 'transformer'):.1f} / "
                      f"{_sum(r['cpu_s'], 'loader'):.1f} / "
                      f"{r['cpu_s'].get('postgres backends', 0):.1f}")
        row("load average before", lambda r: f"{r['load_average_before']:.2f}")
        row("a server restarted during the run", lambda r: "YES" if r.get("servers_restarted")
            else "no")
        lines.append("")
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
