"""Header and row rules: which columns of a file a dataset uses, and what a clean row is.

Pure functions with no I/O, so the rules can be tested exhaustively and reused by any stage.
This is the row-by-row reference: the columnar fast path (columnar.py) must give the same
result for every row it settles, and sends every row it cannot settle here. A bad row is
returned as a reason string rather than raised, because a bad row is expected data to
store as a reject, not a failure of the program.

Per value, in this order: text is trimmed, and a text column's whitespace runs collapsed
to one space (other types are only trimmed, so a reason quotes what the file holds); a
null marker (or nothing at all) is no value, which a required or key column refuses; a text
column's `take` cuts its word; then the type and its rules decide (coltypes.parse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from chute.datasets.declarations import Dataset
from chute.datasets.types import Invalid, Rules, parse
from chute.errors import HeaderError


@dataclass(frozen=True)
class Layout:
    """Where a dataset's columns are in one file's header."""

    dataset: Dataset
    count: int  # number of header fields; every data record must have exactly this many
    at: tuple[int | None, ...]  # per declared column: its header field, None if absent
    # Per declared column, what clean_row needs of it, looked up once per file instead
    # of once per value (the row-by-row path runs for every small file).
    plan: tuple[_Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", tuple(
            _Step(at, column.type.name == "text", column.nulls, column.needs_value,
                  column.empty_reason, column.rules, column.take, column.label)
            for column, at in zip(self.dataset.columns, self.at, strict=True)))

    @property
    def used(self) -> tuple[int, ...]:
        """The header fields some column reads, each once."""
        return tuple(dict.fromkeys(i for i in self.at if i is not None))


def find_columns(header: list[str], dataset: Dataset) -> Layout:
    """Locate the dataset's columns; names match ignoring case and surrounding whitespace.

    Extra columns are allowed (and ignored) so that exports with more data still load. A
    duplicate is an error rather than "first wins", since silently picking one could load
    the wrong data; it is reported before missing columns because it is found while
    scanning. A missing optional column loads as NULL.
    """
    wanted = set(dataset.headers)
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        if key in wanted:
            if key in found:
                raise HeaderError(f"duplicate column: {key}")
            found[key] = index
    required = dataset.required_headers
    missing = [name for name in required if name not in found]
    if not found:
        # Most likely the file starts with data, not a header; say so instead of listing all.
        raise HeaderError("no header: expected columns "
                          + ", ".join(required or dataset.headers))
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise HeaderError(f"missing required column{plural}: " + ", ".join(missing))
    return Layout(dataset, len(header), tuple(found.get(c.header) for c in dataset.columns))


def clean_text(text: str, collapse: bool) -> str:
    """Trim, and for text collapse runs of whitespace to one space, as
    " ".join(text.split()) does. Most values are already clean, and checking is about
    three times cheaper than the split and join: isprintable() is False for every
    whitespace character but " " (the tests check all of Unicode), so a printable value
    without "  " has nothing to collapse."""
    text = text.strip()
    if collapse and ("  " in text or not text.isprintable()):
        return " ".join(text.split())
    return text


class _Step(NamedTuple):
    """One column's part of clean_row (see Column)."""

    at: int | None
    collapse: bool  # a text column: whitespace runs become one space
    nulls: frozenset[str]
    needs_value: bool
    empty_reason: str
    rules: Rules
    take: str | None
    label: str


def clean_row(fields: list[str], layout: Layout) -> tuple[object, ...] | str:
    """The row's values in the dataset's column order, or a reason naming every bad field
    (each once, in column order).

    Never raises for any list of strings, so one odd row cannot stop a file.
    """
    if len(fields) != layout.count:
        # Fields are located by position; with the wrong count they may be shifted, so no
        # field-level checks are meaningful.
        return f"expected {layout.count} fields, found {len(fields)}"
    values: list[object] = []
    problems: list[str] = []
    for step in layout.plan:
        result = _clean_field(None if step.at is None else fields[step.at], step)
        if type(result) is Invalid:
            reason = f"{step.label}: {result.reason}"  # type: ignore[attr-defined]
            if reason not in problems:  # two columns cut from one field: say it once
                problems.append(reason)
        else:
            values.append(result)
    return "; ".join(problems) if problems else tuple(values)


def reject_reason(fields: dict[int, str], layout: Layout, unsettled: list[int]) -> str | None:
    """clean_row's reason for a row of the right field count whose columns other than
    `unsettled` (indexes into the dataset's columns) are known to be valid, from the
    fields those columns read (`fields`, by header index); None when they are all valid
    too, so that the row has no reason and clean_row must give its values."""
    problems: list[str] = []
    for index in unsettled:
        step = layout.plan[index]
        result = _clean_field(None if step.at is None else fields[step.at], step)
        if type(result) is Invalid:
            reason = f"{step.label}: {result.reason}"  # type: ignore[attr-defined]
            if reason not in problems:
                problems.append(reason)
    return "; ".join(problems) if problems else None


def _clean_field(field: str | None, step: _Step) -> object:
    """One column's value from its field, or Invalid."""
    text = None if field is None else clean_text(field, step.collapse)
    if text is None or text in step.nulls:
        return Invalid(step.empty_reason) if step.needs_value else None
    # Rules on text apply to the field as the file holds it, before a word is taken.
    result = parse(text, step.rules)
    if step.take is not None and type(result) is str:  # the column takes one word
        first, _, rest = result.partition(" ")
        result = first if step.take == "first_word" else (rest or None)
        if result is None and step.needs_value:
            result = Invalid("has no word after the first")
    return result
