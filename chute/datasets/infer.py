"""`chute infer FILE`: a dataset declaration guessed from a CSV file, for a person to edit.

Column names come from the header (lower case, anything but letters and digits turned
into "_"); each column gets the narrowest type every value of the sample parses as, by
the very parser that loads them (coltypes.parse), so a clean file loads with no reject
under the declaration printed; `required` where the sample has no empty value. Values
that exports write for "nothing" (NA, NULL, \\N, ...) become the dataset's `nulls`.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from chute.datasets.declarations import LINEAGE, without_compression
from chute.datasets.types import FAMILIES, Invalid, column_type, make_rules, parse
from chute.errors import FileUnusable
from chute.reading.archives import entries
from chute.reading.cleaning import clean_text
from chute.reading.csvstream import Record, read_records
from chute.reading.streams import DEFAULT_LIMITS, text_stream

SAMPLE_ROWS = 100_000  # enough to see a column's range; the whole file if smaller
NULL_MARKERS = ("NA", "N/A", "NULL", "null", "None", "\\N", "nan", "NaN")
DELIMITERS = ",;\t|"


def infer(path: Path, sample_rows: int = SAMPLE_ROWS) -> str:
    """The declaration, as TOML text; raises ValueError when the file has no header, or
    is compressed and cannot be read. A compressed file is read as its text."""
    source = _first_member(path) if zipfile.is_zipfile(path) else None
    try:
        with _opened(path, source) as f:
            head = f.read(1 << 16)
        delimiter = _delimiter(head)
        with _opened(path, source) as f:
            records = read_records(f, delimiter=delimiter)
            header = next(records, None)
            if header is None or not header.fields:
                raise ValueError(f"{path}: no header to read column names from")
            rows = [r.fields for r in _first(records, sample_rows) if r.fields is not None]
    except FileUnusable as e:
        raise ValueError(f"{path}: {e}") from None
    # A zip archive's first CSV member is named as its arrival would be.
    shown = path.name if source is None else f"{path.name}/{source}"
    names = column_names(header.fields)
    nulls = sorted({(row[i] or "").strip() for row in rows for i in range(len(row))}
                   & set(NULL_MARKERS))
    dataset = _dataset_name(path)
    lines = [
        f"# Guessed by `chute infer` from {shown} ({len(rows):,} rows read): check",
        "# the types, mark the columns to filter on, and save it as chute.toml (or point",
        "# CHUTE_DATASETS at it). Files in inbox/" + dataset + "/ then load as this dataset.",
        f"[datasets.{dataset}]",
        f'match = ["{dataset}/*.csv"]',
    ]
    if delimiter != ",":
        lines.append(f"delimiter = {_toml(delimiter)}")
    if nulls:
        lines.append("nulls = [" + ", ".join(_toml(n) for n in ["", *nulls]) + "]")
    lines += ["", f"[datasets.{dataset}.columns]"]
    for index, (name, original) in enumerate(zip(names, header.fields, strict=True)):
        values = [row[index] for row in rows if index < len(row)]
        kind, required = _column(values, set(nulls) | {""})
        spec = [f"type = {_toml(kind)}"]
        if original.strip().lower() != name:
            spec.append(f"header = {_toml(original.strip())}")
        if required:
            spec.append("required = true")
        lines.append(f"{name} = {{ {', '.join(spec)} }}")
    return "\n".join(lines) + "\n"


def _first_member(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        for entry in entries(archive, path.name, lambda _name: False):
            if entry.member:
                return entry.name
    raise ValueError(f"{path}: a zip archive without a CSV file")


@contextmanager
def _opened(path: Path, member: str | None) -> Iterator[BinaryIO]:
    """The file's text (decompressed), or that of a zip archive's member."""
    with path.open("rb") as f:
        if member is None:
            yield text_stream(f, DEFAULT_LIMITS)
            return
        with zipfile.ZipFile(f) as archive, archive.open(member) as opened:
            yield text_stream(opened, DEFAULT_LIMITS)  # type: ignore[arg-type]


def column_names(header: list[str]) -> list[str]:
    """SQL identifiers for the header's names, each distinct and none a lineage column."""
    names: list[str] = []
    for index, original in enumerate(header):
        name = re.sub(r"[^a-z0-9]+", "_", original.strip().lower()).strip("_")[:60]
        if not name:
            name = f"column_{index + 1}"
        if name[0].isdigit():
            name = f"c_{name}"
        if name in LINEAGE:
            name = f"{name}_"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def _column(values: list[str], nulls: set[str]) -> tuple[str, bool]:
    present = [v for v in (clean_text(v, True) for v in values) if v not in nulls]
    required = bool(values) and len(present) == len(values)
    if not present:
        return "text", False
    trimmed = [v.strip() for v in values if clean_text(v, True) not in nulls]
    # The families' guesses in the registry's order, narrowest first: the first that every
    # value parses as wins.
    for family in FAMILIES:
        if family.unlikely is not None and family.unlikely(trimmed):
            continue
        for kind in family.guesses:
            rules = make_rules(column_type(kind))
            if all(not isinstance(parse(v, rules), Invalid) for v in trimmed):
                return kind, required
    return "text", required


def _delimiter(head: bytes) -> str:
    """The delimiter of the first lines, among the usual ones; "," when in doubt."""
    lines = head.decode("utf-8", "replace").splitlines()[:20]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _dataset_name(path: Path) -> str:
    """The file's name without dates, numbers and extension: orders-2024-06.csv -> orders."""
    stem = re.sub(r"[^a-z]+", "_", Path(without_compression(path.name)).stem.lower()).strip("_")
    return stem or "data"


def _first(records: Iterable[Record], count: int) -> Iterator[Record]:
    for index, record in enumerate(records):
        if index >= count:
            return
        yield record


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)

