"""The overview's cards: one per dataset, built from the queries' rows. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.console.slow import Declaration, SlowFigures
from chute.datasets.declarations import Datasets

MINUTES = 60  # the throughput chart's span
STAGES = ("received", "transforming", "loading")


@dataclass(frozen=True)
class Arrival:
    file_id: str
    name: str
    state: str
    received_at: datetime
    error: str | None


@dataclass(frozen=True)
class Rebuild:
    files_done: int
    files_total: int | None
    started_at: datetime


@dataclass(frozen=True)
class Card:
    name: str
    table: str
    rows: int
    files_today: int
    failed_today: int
    quarantined_today: int
    rejected_today: int
    rows_today: int
    last: Arrival | None
    waiting: dict[str, int]
    per_minute: tuple[int, ...]  # rows loaded, oldest minute first, the current one last
    declaration: Declaration | None
    held: bool  # its table holds an earlier declaration: new files wait for a rebuild
    rebuild: Rebuild | None

    @property
    def rejected_share(self) -> float | None:
        """Of today's rows read, the share rejected; None before any."""
        return self.rejected_today / self.rows_today if self.rows_today else None

    @property
    def rows_last_hour(self) -> int:
        return sum(self.per_minute)

    @property
    def busiest_minute(self) -> int:
        return max(self.per_minute, default=0)

    @property
    def concerns(self) -> list[str]:
        """What a person should look at, in words; none: the dataset is healthy."""
        found = []
        if self.failed_today:
            found.append(f"{self.failed_today:,} failed today")
        if self.quarantined_today:
            found.append(f"{self.quarantined_today:,} quarantined today")
        if self.held:
            found.append("new files wait for a rebuild")
        if self.declaration is not None and self.declaration.state != "matches":
            found.append(f"declaration {self.declaration.state}")
        return found

    @property
    def healthy(self) -> bool:
        return not self.concerns


def per_minute(rows: Sequence[Mapping[str, Any]], dataset: str) -> tuple[int, ...]:
    """THROUGHPUT's rows of one dataset as MINUTES counts, the oldest minute first."""
    counts = [0] * MINUTES
    for row in rows:
        ago = row["minutes_ago"]
        if row["dataset"] == dataset and 0 <= ago < MINUTES:
            counts[MINUTES - 1 - ago] += row["rows"]
    return tuple(counts)


def build_cards(datasets: Datasets, live: Mapping[str, Any], slow: SlowFigures,
                tables: Mapping[str, Mapping[str, Any]]) -> list[Card]:
    cards = []
    for dataset in datasets:
        name = dataset.name
        waiting = dict.fromkeys(STAGES, 0)
        for row in live["waiting"]:
            if row["dataset"] == name:
                waiting[row["stage"]] += row["files"]
        today = live["today"].get(name)
        last = live["last"].get(name)
        table = tables.get(name)
        rebuild = None
        if table is not None and table["rebuild_id"] is not None:
            rebuild = Rebuild(table["files_done"], table["files_total"], table["started_at"])
        cards.append(Card(
            name=name, table=dataset.table, rows=slow.rows.get(name, 0),
            files_today=today["files"] if today else 0,
            failed_today=today["failed"] if today else 0,
            quarantined_today=today["quarantined"] if today else 0,
            rejected_today=today["rejected"] if today else 0,
            rows_today=today["rows"] if today else 0,
            last=(Arrival(last["file_id"], last["name"], last["state"], last["received_at"],
                          last["error"]) if last and last["file_id"] else None),
            waiting=waiting, per_minute=per_minute(live["throughput"], name),
            declaration=slow.declarations.get(name),
            held=(table is not None and rebuild is None
                  and table["declaration"] != dataset.declaration_hash),
            rebuild=rebuild,
        ))
    return cards


def sparkline(counts: Sequence[int], height: int = 36) -> str:
    """The chart as one SVG path (100 cards of 60 bars each must render fast): each
    minute a bar 3 px wide and 1 px apart, scaled to the busiest minute; a minute with
    any rows gets at least 1 px. Empty when nothing was loaded."""
    top = max(counts, default=0)
    if not top:
        return ""
    return "".join(f"M{i * 4} {height}h3v-{max(1, round(n * height / top))}h-3z"
                   for i, n in enumerate(counts) if n)
