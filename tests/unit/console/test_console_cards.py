"""The overview's cards from query rows: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

from api.console.cards import MINUTES, build_cards, per_minute, sparkline
from api.console.slow import Declaration, SlowFigures
from chute.datasets.declarations import load

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def live(**parts: object) -> dict[str, object]:
    return {"last": {}, "waiting": [], "today": {}, "throughput": [], **parts}


def test_rows_per_minute_put_the_current_minute_last_and_ignore_other_datasets() -> None:
    rows = [{"dataset": "people", "minutes_ago": 0, "rows": 5},
            {"dataset": "people", "minutes_ago": 59, "rows": 7},
            {"dataset": "orders", "minutes_ago": 1, "rows": 100},
            {"dataset": "people", "minutes_ago": 60, "rows": 9}]  # a batch of the boundary

    counts = per_minute(rows, "people")

    assert len(counts) == MINUTES
    assert counts[-1] == 5 and counts[0] == 7 and sum(counts) == 12


def test_bars_scale_to_the_busiest_minute_and_keep_small_minutes_visible() -> None:
    assert sparkline([0, 0]) == ""
    assert sparkline([100, 0, 1, 50], height=36) == "M0 36h3v-36h-3zM8 36h3v-1h-3zM12 36h3v-18h-3z"


def test_a_card_counts_waiting_files_by_stage_and_says_why_it_needs_a_look() -> None:
    datasets = load(None)
    figures = SlowFigures({"people": 42}, {"people": Declaration("matches", "matches")}, 0)
    waiting = [{"dataset": "people", "stage": "received", "files": 2},
               {"dataset": "people", "stage": "loading", "files": 1},
               {"dataset": "other", "stage": "received", "files": 9}]
    today = {"people": {"files": 4, "failed": 1, "quarantined": 0, "rejected": 5,
                        "rows": 200}}
    last = {"people": {"file_id": "f", "name": "x.csv", "state": "loaded",
                       "received_at": NOW, "error": None}}
    tables = {"people": {"rebuild_id": None, "declaration": datasets["people"]
                         .declaration_hash}}

    [card] = build_cards(datasets, live(waiting=waiting, today=today, last=last), figures,
                         tables)

    assert card.rows == 42 and card.files_today == 4
    assert card.waiting == {"received": 2, "transforming": 0, "loading": 1}
    assert card.rejected_share == 0.025
    assert card.last is not None and card.last.name == "x.csv"
    assert card.concerns == ["1 failed today"] and not card.healthy


def test_a_dataset_with_nothing_yet_is_healthy_and_has_no_share() -> None:
    datasets = load(None)
    figures = SlowFigures({}, {}, None)
    last = {"people": {"file_id": None, "name": None, "state": None, "received_at": None,
                       "error": None}}  # the LEFT JOIN's empty side

    [card] = build_cards(datasets, live(last=last), figures, {})

    assert card.rows == 0 and card.last is None and card.rejected_share is None
    assert card.healthy and not card.held


def test_a_table_holding_another_declaration_waits_for_a_rebuild() -> None:
    datasets = load(None)
    figures = SlowFigures({}, {"people": Declaration("refused", "refused: column age")}, None)
    tables = {"people": {"rebuild_id": None, "declaration": "0123456789abcdef"}}

    [card] = build_cards(datasets, live(), figures, tables)

    assert card.held
    assert card.concerns == ["new files wait for a rebuild", "declaration refused"]
