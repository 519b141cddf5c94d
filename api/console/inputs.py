"""The rows browser's form: one input per filter parameter of /datasets/NAME/rows,
typed by the same declarations the OpenAPI document is built from (api/params.py), so
the browser's picker offers what the API accepts: a date picker for a date, a number
for a number, true/false for a boolean. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from api import params

PAGING = ("limit", "cursor")


@dataclass(frozen=True)
class Input:
    name: str
    label: str
    kind: str  # the <input> type, or "select" for a boolean
    step: str | None = None
    low: int | None = None
    high: int | None = None
    value: str = ""


def inputs(query: params.Query, given: Mapping[str, str]) -> list[Input]:
    found = []
    for param in query.params:
        if param.name in PAGING:
            continue
        schema = param.schema()
        kind, step, low, high = "text", None, None, None
        json_format = getattr(getattr(param, "type", None), "json_format", None)
        if schema["type"] == "integer":
            kind, step, low, high = "number", "1", schema.get("minimum"), schema.get("maximum")
        elif schema["type"] == "number" or json_format == "decimal":
            kind, step = "number", "any"
        elif schema["type"] == "boolean":
            kind = "select"
        elif json_format == "date":
            kind = "date"
        elif json_format == "date-time":
            kind, step = "datetime-local", "1"
        found.append(Input(param.name, param.description, kind, step, low, high,
                           given.get(param.name, "")))
    return found


def rows_query(query: params.Query, given: Mapping[str, str]) -> dict[str, str]:
    """The API's parameters among a console page's: the filters given a value, and the
    cursor. An empty field means "any" here (the API refuses `COL=`, so it is left out)."""
    known = {p.name for p in query.params} - {"limit"}
    return {name: value for name, value in given.items() if name in known and value != ""}
