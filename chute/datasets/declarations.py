"""Datasets: which files are whose, which columns they carry, and where their rows go.

The datasets file (TOML, see docs/datasets.md) is read and checked once, at start, into
frozen objects that every stage works from: the watcher routes a file by its path, the
transformer cleans and types its values, the loader knows its table, the API serves its
rows. `people` is one such declaration, built in (BUILT_IN_PEOPLE, in the same TOML a
user would write); nothing downstream asks whether a dataset is people.

A file that cannot be used stops start-up with one line naming the file, the dataset and
the field (DatasetsError); never a traceback, never a half-applied schema.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from chute.datasets.types import ColumnType, Rules, column_type, make_rules
from chute.errors import DatasetsError

# The lineage columns every table has besides its declared ones (see tables.py).
LINEAGE = ("id", "file_seq", "line")
TAKES = ("first_word", "after_first_word")
PEOPLE_SERVED = ("first_name", "last_name", "age", "location")
INDEXED_TEXT_MAX = 500  # characters: the default max_length of a text filter column
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

BUILT_IN_PEOPLE = """
[datasets.people]
match   = ["*.csv"]
filters = ["location", "first_name", "last_name"]

[datasets.people.columns.first_name]
type = "text"
header = "fullname"
take = "first_word"
required = true
max_length = 500

[datasets.people.columns.last_name]
type = "text"
header = "fullname"
take = "after_first_word"
max_length = 500

[datasets.people.columns.age]
type = "smallint"
required = true
min = 0
max = 150

[datasets.people.columns.location]
type = "text"
required = true
max_length = 500
"""


@dataclass(frozen=True)
class Column:
    name: str
    header: str  # the CSV column it comes from, lower-cased and trimmed for matching
    rules: Rules
    required: bool
    nulls: frozenset[str]  # cleaned texts that mean "no value" ("" always does)
    take: str | None  # first_word / after_first_word of the header's value, or all of it
    filter: bool
    key: bool = False  # part of the dataset's natural key: a row without it is a reject

    @property
    def needs_value(self) -> bool:
        """A row without a value here is rejected: the column is required, or a key's.
        A key column is required by implication (a row without its key could replace
        nothing and be found by nothing), yet its table column keeps the declared
        nullability, so that declaring a key never changes a column's definition."""
        return self.required or self.key

    @property
    def empty_reason(self) -> str:
        return "is empty (a key column)" if self.key else "is empty"

    @property
    def type(self) -> ColumnType:
        return self.rules.type

    @property
    def label(self) -> str:
        """What a reject reason calls it: a value cut from a CSV field is that field's."""
        return self.header if self.take else self.name


@dataclass(frozen=True)
class RejectLimit:
    """`max_rejected`: a file with more rejects than this fails, and loads nothing. A
    count (`100`) or a share of the file's rows (`"2%"`)."""

    declared: str  # as written: 100 or 2%
    count: int | None = None
    percent: float | None = None

    def exceeded(self, rejected: int, total: int) -> bool:
        if self.count is not None:
            return rejected > self.count
        return rejected * 100 > (self.percent or 0) * total


@dataclass(frozen=True)
class Dataset:
    name: str
    table: str
    match: tuple[str, ...]
    columns: tuple[Column, ...]
    filters: tuple[str, ...]  # in the declared order, which is the filter index's
    key: tuple[str, ...]
    delimiter: str
    encoding: str
    # "snapshot" (each file is the whole current state; needs a key), or None.
    mode: str | None = None
    max_rejected: RejectLimit | None = None
    # Its declaration as canonical JSON (the checked TOML, columns in order): what
    # chute.declarations keeps, so a table's own declaration can be read back
    # (from_declaration) by an API that runs a newer one, and a rebuild says which.
    declaration: str = ""

    @property
    def declaration_hash(self) -> str:
        """Names this declaration in chute.declarations and in each file's history."""
        return hashlib.sha256(f"{self.name}\n{self.declaration}".encode()).hexdigest()[:16]

    @property
    def shape(self) -> str:
        """What the table holds of the declaration (columns, types, NOT NULL, key), as
        a hash: two declarations of one shape load the same COPY tuples into the same
        table; any other change needs a rebuild."""
        parts = [self.table, *(f"{c.name} {c.type.pg_type} {c.required}" for c in self.columns),
                 "key " + ",".join(self.key)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    @property
    def headers(self) -> tuple[str, ...]:
        """The CSV columns it reads, in the order of their first use."""
        return tuple(dict.fromkeys(c.header for c in self.columns))

    @property
    def required_headers(self) -> tuple[str, ...]:
        """The CSV columns a file must have: those of required and key columns."""
        return tuple(dict.fromkeys(c.header for c in self.columns if c.needs_value))

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def staged(self) -> bool:
        """A keyed dataset whose files are merged only once complete (a snapshot, or a
        reject limit): until then its batches wait in a staging table (db.stage_rows),
        so a file that fails replaces no row. An unkeyed dataset's rows go straight to
        the table; a failed file's are deleted (they were never served)."""
        return bool(self.key) and (self.mode == "snapshot" or self.max_rejected is not None)

    def matches(self, relative_path: str) -> bool:
        """A compressed file's path matches as it is or without its suffix
        (orders/2024-06.csv.gz matches orders/*.csv)."""
        plain = without_compression(relative_path)
        return any(_glob(pattern).fullmatch(relative_path) or _glob(pattern).fullmatch(plain)
                   for pattern in self.match)


# Suffixes of compressed files (any case). How a file is read is decided by its first
# bytes (chute/reading/streams.py); the suffix only drops out of the name it is matched by.
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd")


def without_compression(path: str) -> str:
    """The path less a compression suffix: orders/2024-06.csv.gz -> orders/2024-06.csv."""
    lower = path.lower()
    suffix = next((s for s in COMPRESSED_SUFFIXES if lower.endswith(s)), "")
    return path[:len(path) - len(suffix)]


def is_zip_name(name: str) -> bool:
    """A zip archive, by its name: taken apart into members, each matched on its own."""
    return name.lower().endswith(".zip")


@dataclass(frozen=True)
class Datasets:
    """Every dataset, in matching order; the source file, if any."""

    items: tuple[Dataset, ...]
    source: str

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.items)

    def __getitem__(self, name: str) -> Dataset:
        for dataset in self.items:
            if dataset.name == name:
                return dataset
        raise KeyError(name)

    def get(self, name: str) -> Dataset | None:
        return next((d for d in self.items if d.name == name), None)

    def for_path(self, relative_path: str) -> Dataset | None:
        """The first dataset whose `match` fits a path under inbox/ ("/"-separated)."""
        return next((d for d in self.items if d.matches(relative_path)), None)

    def no_match(self, relative_path: str) -> str:
        """Why a file no dataset matches is quarantined."""
        declared = "; ".join(f"{d.name}: {', '.join(d.match)}" for d in self.items)
        return f"no dataset matches {relative_path} (declared: {declared})"


# --- the file's shape, checked by msgspec (unknown keys and wrong kinds, with paths) ----

class _ColumnSpec(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    header: str | None = None
    required: bool = False
    nulls: list[str] | None = None
    min: Any = None
    max: Any = None
    max_length: int | None = None
    values: list[str] | None = None
    pattern: str | None = None
    format: str | None = None
    timezone: str | None = None
    take: str | None = None


class _DatasetSpec(msgspec.Struct, forbid_unknown_fields=True):
    match: list[str] | str
    columns: dict[str, Any]  # each a _ColumnSpec once _parse has checked it
    table: str | None = None
    key: list[str] = []
    filters: list[str] = []
    nulls: list[str] | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    mode: str | None = None
    max_rejected: int | str | None = None


# Fields added after the first declarations were stored: left out of the canonical text
# while unset, so that a declaration that does not use them keeps its hash.
_LATER_FIELDS = ("mode", "max_rejected")


class _FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    datasets: dict[str, dict[str, Any]] = {}


def load(path: Path | None, people_table: str = "people") -> Datasets:
    """The datasets of `path` (None: the built-in people alone), checked.

    `people_table` is CHUTE_TABLE: the built-in people's table, unless redeclared.
    """
    if path is None:
        return load_text("", "built-in", people_table)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetsError(f"{path}: cannot be read ({e})") from None
    return load_text(text, str(path), people_table)


def load_text(text: str, source: str, people_table: str = "people") -> Datasets:
    """The datasets a TOML text declares (`source` names it in errors), people included."""
    declared = _parse(text, source)
    people = _parse(BUILT_IN_PEOPLE, "built-in")["people"]
    specs = dict(declared)
    if "people" not in specs:
        specs["people"] = msgspec.structs.replace(people, table=people_table)
    datasets = tuple(_dataset(name, spec, source) for name, spec in specs.items())
    kept = {c.name for c in datasets[list(specs).index("people")].columns}
    if not set(PEOPLE_SERVED) <= kept:
        raise DatasetsError(f"{source}: datasets.people: a redeclared people must keep the "
                            f"columns {', '.join(PEOPLE_SERVED)} (/people and "
                            "/read/first-chunk serve them); name your dataset otherwise")
    tables: dict[str, str] = {}
    for dataset in datasets:
        if dataset.table in tables:
            first, second = tables[dataset.table], dataset.name
            if second not in declared:  # the built-in people: the user's line is the other
                raise DatasetsError(
                    f"{source}: datasets.{first}.table: {dataset.table!r} is the built-in "
                    "people dataset's table (choose another, or redeclare people)")
            raise DatasetsError(f"{source}: datasets.{second}.table: {dataset.table!r} "
                                f"is also the table of dataset {first!r}")
        tables[dataset.table] = dataset.name
    return Datasets(datasets, source)


def _parse(text: str, source: str) -> dict[str, _DatasetSpec]:
    """The file's datasets, each checked for its shape; errors name the path."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DatasetsError(f"{source}: not valid TOML: {e}") from None
    datasets = _convert(data, _FileSpec, source, "").datasets
    specs = {}
    for name, raw in datasets.items():
        where = f"datasets.{name}"
        spec = _convert(raw, _DatasetSpec, source, where)
        # One at a time, so that an error names the column (msgspec says "[...]").
        columns = {column: _convert(value, _ColumnSpec, source, f"{where}.columns.{column}")
                   for column, value in spec.columns.items()}
        specs[name] = msgspec.structs.replace(spec, columns=columns)
    return specs


def _convert(data: Any, kind: type[Any], source: str, where: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as e:
        # msgspec says "... - at `$.match`": name the whole path first.
        message, _, inner = str(e).partition(" - at `$")
        path = where + inner.rstrip("`")
        raise DatasetsError(f"{source}: {path.lstrip('.') + ': ' if path else ''}{message}"
                            ) from None


def _dataset(name: str, spec: _DatasetSpec, source: str) -> Dataset:
    where = f"{source}: datasets.{name}"

    def fail(field: str, message: str) -> DatasetsError:
        return DatasetsError(f"{where}.{field}: {message}")

    if not IDENTIFIER.fullmatch(name):
        raise DatasetsError(f"{where}: a dataset's name must be a lower-case identifier "
                            "(letters, digits, '_')")
    table = spec.table or name
    if not IDENTIFIER.fullmatch(table):
        raise fail("table", f"{table!r} is not a lower-case SQL identifier")
    match = (spec.match,) if isinstance(spec.match, str) else tuple(spec.match)
    if not match:
        raise fail("match", "needs at least one pattern")
    for pattern in match:
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
            raise fail("match", f"{pattern!r} must be a path relative to inbox/")
        try:
            _glob(pattern)
        except re.error as e:
            raise fail("match", f"{pattern!r} does not compile ({e})") from None
    if not spec.columns:
        raise fail("columns", "declares no column")
    if len(spec.delimiter) != 1 or spec.delimiter in '"\r\n':
        raise fail("delimiter", f"{spec.delimiter!r} must be one character, not a quote "
                                "or a line break")
    try:
        encoding = codecs.lookup(spec.encoding).name
    except LookupError:
        raise fail("encoding", f"unknown encoding {spec.encoding!r}") from None
    if encoding in ("utf-16", "utf-32") or encoding.startswith(("utf-16", "utf-32")):
        raise fail("encoding", f"{spec.encoding!r} is not supported (an ASCII-compatible "
                               "encoding is: utf-8, latin-1, cp1252, ...)")
    for field, names in (("filters", spec.filters), ("key", spec.key)):
        for column in names:
            if column not in spec.columns:
                raise fail(field, f"{column!r} is not a column of the dataset")
        if len(set(names)) != len(names):
            raise fail(field, "names a column twice")
    columns = tuple(
        _column(column, column_spec, spec, column in spec.filters, column in spec.key,
                f"{where}.columns.{column}")
        for column, column_spec in spec.columns.items())
    if spec.mode is not None and spec.mode != "snapshot":
        raise fail("mode", f'{spec.mode!r}: the one mode is "snapshot" (leave it out for '
                           "files that add and update rows)")
    if spec.mode == "snapshot" and not spec.key:
        raise fail("mode", 'a "snapshot" needs a key: the rows whose keys a snapshot does '
                           "not hold are removed")
    canonical = msgspec.to_builtins(msgspec.structs.replace(spec, table=table))
    for field in _LATER_FIELDS:
        if canonical.get(field) is None:
            canonical.pop(field, None)
    return Dataset(name=name, table=table, match=match, columns=columns,
                   filters=tuple(spec.filters), key=tuple(spec.key),
                   delimiter=spec.delimiter, encoding=encoding, mode=spec.mode,
                   max_rejected=_reject_limit(spec.max_rejected, fail),
                   declaration=msgspec.json.encode(canonical).decode())


_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


def _reject_limit(value: int | str | None, fail: Callable[[str, str], DatasetsError]
                  ) -> RejectLimit | None:
    if value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise fail("max_rejected", f"{value!r}: a count of rows (100) or a share (\"2%\")")
    if isinstance(value, int):
        return RejectLimit(str(value), count=value)
    match = _PERCENT.fullmatch(value.strip())
    if match is None or float(match[1]) > 100:
        raise fail("max_rejected", f"{value!r}: a count of rows (100) or a share (\"2%\")")
    return RejectLimit(value.strip(), percent=float(match[1]))


def from_declaration(name: str, text: str) -> Dataset:
    """A dataset from its stored declaration (Dataset.declaration)."""
    spec = _convert(msgspec.json.decode(text), _DatasetSpec, "stored declaration",
                    f"datasets.{name}")
    columns = {column: _convert(value, _ColumnSpec, "stored declaration",
                                f"datasets.{name}.columns.{column}")
               for column, value in spec.columns.items()}
    return _dataset(name, msgspec.structs.replace(spec, columns=columns), "stored declaration")


def _column(name: str, spec: _ColumnSpec, dataset: _DatasetSpec, is_filter: bool,
            is_key: bool, where: str) -> Column:
    def fail(field: str, message: str) -> DatasetsError:
        return DatasetsError(f"{where}.{field}: {message}")

    if not IDENTIFIER.fullmatch(name):
        raise DatasetsError(f"{where}: a column's name must be a lower-case SQL identifier")
    if name in LINEAGE:
        raise DatasetsError(f"{where}: {name!r} is reserved (every table has "
                            f"{', '.join(LINEAGE)} for lineage)")
    try:
        kind = column_type(spec.type)
    except ValueError as e:
        raise fail("type", str(e)) from None
    if spec.take is not None:
        if spec.take not in TAKES:
            raise fail("take", f"{spec.take!r} must be one of {', '.join(TAKES)}")
        if kind.name != "text":
            raise fail("take", "applies to text columns only")
    header = (spec.header if spec.header is not None else name).strip().lower()
    if not header:
        raise fail("header", "is empty")
    max_length = spec.max_length
    if (is_filter or is_key) and kind.name == "text" and max_length is None:
        # An index entry holds at most about 2700 bytes: a longer value would fail its
        # whole batch, so it is a reject instead (500 characters of up to 4 bytes fit).
        # A key column is indexed too (its unique index, see tables.py).
        max_length = INDEXED_TEXT_MAX
    try:
        rules = make_rules(kind, min=spec.min, max=spec.max, max_length=max_length,
                           values=tuple(spec.values) if spec.values is not None else None,
                           pattern=spec.pattern, format=spec.format,
                           timezone=spec.timezone or "UTC")
    except ValueError as e:
        # make_rules names the rule: "min: ...".
        field, _, message = str(e).partition(": ")
        raise fail(field, message) from None
    nulls = spec.nulls if spec.nulls is not None else dataset.nulls or []
    return Column(name=name, header=header, rules=rules, required=spec.required,
                  nulls=frozenset(" ".join(n.split()) for n in nulls) | {""},
                  take=spec.take, filter=is_filter, key=is_key)


@cache
def _glob(pattern: str) -> re.Pattern[str]:
    """A glob on a "/"-separated path: `*` and `?` stay within a folder, `**/` spans any
    number of folders, `[...]` is a character class; case is ignored, as for `.csv`."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise re.error("an unclosed [")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE)
