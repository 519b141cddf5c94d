"""The rows browser's inputs follow the API's parameter declarations: pure logic."""

from __future__ import annotations

from api.console.inputs import inputs, rows_query
from api.routes import RowsRoute
from chute.datasets.declarations import load
from harness import REPO

DATASETS = load(REPO / "examples" / "chute.toml")


def kinds(name: str) -> dict[str, tuple[str, str | None]]:
    route = RowsRoute.of(DATASETS[name])
    return {i.name: (i.kind, i.step) for i in inputs(route.query, {})}


def test_each_filter_gets_the_input_its_type_needs() -> None:
    readings = kinds("readings")
    assert readings["taken_on"] == ("date", None)
    assert readings["min_taken_at"] == ("datetime-local", "1")
    assert readings["min_temperature"] == ("number", "any")
    assert readings["min_humidity"] == ("number", "1")
    assert readings["sensor"] == ("text", None)
    orders = kinds("orders")
    assert orders["min_amount"] == ("number", "any")  # numeric: a decimal string
    assert orders["status"] == ("text", None)
    assert "limit" not in orders and "cursor" not in orders


def test_a_number_input_carries_the_types_limits() -> None:
    route = RowsRoute.of(DATASETS["readings"])
    humidity = next(i for i in inputs(route.query, {"min_humidity": "5"})
                    if i.name == "min_humidity")
    assert (humidity.low, humidity.high, humidity.value) == (-32768, 32767, "5")


def test_empty_fields_and_other_parameters_stay_away_from_the_api() -> None:
    route = RowsRoute.of(DATASETS["people"])
    given = {"min_age": "30", "location": "", "files_cursor": "abc", "cursor": "xyz",
             "limit": "5"}
    assert rows_query(route.query, given) == {"min_age": "30", "cursor": "xyz"}
