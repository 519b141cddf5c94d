"""The columnar fast path gives exactly the batches of the row-by-row reference path.

The reference is the same transform with columnar=False: every record read by csvstream
and cleaned by clean_row. Files are built from the pieces that split the two ways (quotes,
line breaks inside quotes, CRLF, blank lines, bad UTF-8, non-printable characters, ages
to parse, values to trim, wrong field counts), and read with tiny blocks so that records
cross block boundaries.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.datasets.declarations import Dataset, load, load_text
from chute.datasets.types import FAMILIES
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading import columnar
from chute.reading.cleaning import find_columns
from chute.reading.transform import transform

PEOPLE = load(None)["people"]
FILE_ID = "00000000-0000-4000-8000-000000000001"

WORDS = ["Ann", "José", "Zoë", "O'Brien", "van der Berg", "Ünal", "李", "😀", "a", ""]
NOISE = ["", " ", "  ", "\t", "\u00a0", "\u2028", "\\", ",", '"', "\r", "\x00", "\x1f",
         "\ufeff", "\u200b"]
AGES = ["0", "7", "42", "150", "151", "-1", " 30 ", "30.0", "007", "abc", "", "1e3"]


@st.composite
def values(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(WORDS + NOISE), min_size=0, max_size=4))
    return "".join(parts)


def quote(value: str, force: bool) -> str:
    if force or any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def lines(draw: st.DrawFn, count: int) -> bytes:
    kind = draw(st.sampled_from(["row"] * 8 + ["blank", "spaces", "short", "long",
                                                "raw", "bad_utf8", "multiline"]))
    if kind == "blank":
        return b""
    if kind == "spaces":
        return b"   "
    if kind == "bad_utf8":
        return b"Ann \xff,3,Oslo"
    if kind == "raw":  # quoting a csv reader must refuse or read oddly
        return draw(st.sampled_from([b'"a"b,1,c', b'a"b,1,c', b'"a,1,c', b' "a",1,c',
                                     b'"a" ,1,c', b'"",1,""']))
    fields = [draw(values()) for _ in range(count)]
    fields[draw(st.integers(0, count - 1))] = draw(st.sampled_from(AGES))
    if kind == "short":
        fields = fields[:-1]
    elif kind == "long":
        fields.append("extra")
    elif kind == "multiline":
        fields[0] = fields[0] + "\n" + draw(values())
    text = ",".join(quote(f, draw(st.booleans())) for f in fields)
    return text.encode("utf-8", "surrogateescape")


@st.composite
def files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from([["fullname", "age", "location"],
                                   ["location", "fullname", "age"],
                                   ["age", "x", "fullname", "location"]]))
    body = draw(st.lists(lines(len(header)), min_size=0, max_size=40))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = newline.join([",".join(header).encode()] + body)
    if draw(st.booleans()):
        data += newline
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data


def run(data: bytes, fast: bool, batch_size: int, max_chars: int
        ) -> list[RowBatch | FileDone]:
    sha = hashlib.sha256(data).hexdigest()
    return list(transform(io.BytesIO(data), PEOPLE, FILE_ID, 3, sha, batch_size, max_chars,
                          columnar=fast))


@settings(max_examples=400, deadline=None)
@given(data=files(), block=st.sampled_from([8, 32, 100, 1 << 20]),
       batch_size=st.integers(1, 12), max_chars=st.sampled_from([60, 300, 1 << 23]))
def test_fast_path_gives_the_reference_batches(data: bytes, block: int, batch_size: int,
                                               max_chars: int) -> None:
    saved = columnar.BLOCK
    columnar.BLOCK = block
    try:
        assert run(data, True, batch_size, max_chars) == run(data, False, batch_size,
                                                              max_chars)
    finally:
        columnar.BLOCK = saved


def test_most_rows_of_a_plain_file_take_the_fast_path() -> None:
    """Guards the point of the fast path: quoted fields and trimmed values stay in it."""
    rows = [b'Ann Lee,30,"Austin, TX"', b"  Bo   Ek ,7,Malm\xc3\xb6", b'"Ek, Bo",150,Brno']
    data = b"fullname,age,location\n" + b"\n".join(rows * 100) + b"\n"
    scanner = columnar.Scanner(io.BytesIO(data))
    items = iter(scanner)
    header = next(items)
    scanner.use_columns(find_columns(header.fields or [], PEOPLE))
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["Rows"]
    assert run(data, True, 1000, 1 << 23) == run(data, False, 1000, 1 << 23)


@pytest.mark.parametrize("block", [8, 64, 1 << 20])
def test_a_record_longer_than_any_block_is_read_the_slow_way(block: int) -> None:
    saved = columnar.BLOCK
    columnar.BLOCK = block
    try:
        long_line = b"x" * (3 * block + 10) + b",1,Oslo"
        data = b"fullname,age,location\nAnn,1,Oslo\n" + long_line + b"\nBo,2,Rome\n"
        assert run(data, True, 10, 1 << 23) == run(data, False, 10, 1 << 23)
    finally:
        columnar.BLOCK = saved


@pytest.mark.parametrize("line", [b"Ann Lee,25.0,Oslo", b"Ann\tLee,25,Oslo", b"   ",
                                  b'"Ann\nLee",25,Oslo'])
def test_lines_the_fast_path_refuses_are_read_in_a_few_csv_readers_not_one_each(
        monkeypatch: pytest.MonkeyPatch, line: bytes) -> None:
    """A file whose every line goes the slow way must cost about what the reference does:
    the block (or a run of such lines) goes to one csv reader, not a window per line."""
    calls = []
    real = columnar.read_records

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(columnar, "read_records", counting)
    data = b"fullname,age,location\n" + (line + b"\n") * 2000
    assert run(data, True, 100, 1 << 23) == run(data, False, 100, 1 << 23)
    assert len(calls) < 20  # a window that finds no record end doubles: log2(2000) = 11


# --- every type and rule: the fast path gives the reference batches ----------------------

TYPED = """
[datasets.typed]
match = ["typed/*.csv"]
nulls = ["NA"]
filters = ["code"]

[datasets.typed.columns]
code   = { type = "text", required = true, values = ["a", "b", "c d"] }
tag    = { type = "text", pattern = "[a-z]+-[0-9]", max_length = 5 }
small  = { type = "smallint", min = -5, max = 300 }
big    = { type = "bigint" }
amount = { type = "numeric(8,2)", min = 0 }
free   = { type = "numeric" }
ratio  = { type = "double", max = 1e6 }
flag   = { type = "boolean" }
day    = { type = "date", min = "2000-01-01" }
stamp  = { type = "timestamp" }
moment = { type = "timestamptz", timezone = "Europe/Oslo" }
local  = { type = "timestamp", format = "%d/%m/%Y %H:%M" }
ident  = { type = "uuid" }
opens  = { type = "time", max = "20:00" }
"""
TYPED_VALUES = {
    "code": ["a", "b", " c  d ", "e", "", "NA"],
    "tag": ["ab-1", "x-9", "abc-12", "AB-1", "", "NA", "é-1"],
    "small": ["0", "-5", "300", "301", "25.0", " 7 ", "+3", "x", "", "32768"],
    "big": ["9223372036854775807", "-9223372036854775808", "9223372036854775808", "12",
            "1e3", ""],
    "amount": ["0", "1.5", "19.99", "3.145", "-0.01", "999999.99", "1000000", ".5", "1e2",
               "x", ""],
    "free": ["1", "-2.50", "0.000001", "1e-3", "123456789012345678901234567890.5", "NaN",
             ""],
    "ratio": ["0.5", "-1e300", "1e6", "1000001", "nan", "inf", "1e400", "1e-400", "3.", ""],
    "flag": ["true", "F", "yes", "N", "1", "0", "maybe", "", "NA"],
    "day": ["2024-02-29", "2023-02-29", "2000-01-01", "1999-12-31", "2024-13-01",
            "20240101", ""],
    "stamp": ["2024-01-01 10:00:00", "2024-01-01T10:00", "2024-01-01 24:00",
              "2024-01-01 10:00:00.123456", "2024-01-01 10:00:00+02:00", "2024-01-01", ""],
    "moment": ["2024-03-31 02:30:00", "2024-10-27 02:30:00", "2024-06-01T12:00:00Z",
               "2024-06-01 12:00:00+02:00", "2024-06-01 12:00:00-0330", "2024-06-01 25:00",
               ""],
    "local": ["01/06/2024 09:15", "31/06/2024 09:15", "1/6/2024 9:15", "2024-06-01", ""],
    "ident": ["6f1c3c1e-0000-4000-8000-00000000a001", "6F1C3C1E00004000800000000000A002",
              "{6f1c3c1e-0000-4000-8000-00000000a003}", "6f1c3c1e", ""],
    "opens": ["08:30", "08:30:00", "9:05", "20:00:00.000001", "24:00", "07:15:30.25", ""],
}


@st.composite
def typed_files(draw: st.DrawFn, names: tuple[str, ...] = tuple(TYPED_VALUES)) -> bytes:
    rows = [",".join(names)]
    for _ in range(draw(st.integers(0, 25))):
        fields = [draw(st.sampled_from(TYPED_VALUES[name])) for name in names]
        if draw(st.integers(0, 9)) == 0:  # padding: trimmed, and text collapsed
            at = draw(st.integers(0, len(fields) - 1))
            fields[at] = "  " + fields[at] + " "
        rows.append(",".join(quote(f, draw(st.booleans())) for f in fields))
    data = "\n".join(rows).encode() + b"\n"
    if len(rows) > 1 and draw(st.booleans()):  # a line that is not UTF-8
        data = data.replace(b"\n", b"\xff\n", 2).replace(b"\xff\n", b"\n", 1)
    return data


@settings(max_examples=150, deadline=None)
@given(data=typed_files(), block=st.sampled_from([64, 512, 1 << 20]),
       batch_size=st.integers(1, 12))
def test_fast_path_gives_the_reference_batches_for_every_type(
        data: bytes, block: int, batch_size: int) -> None:
    _assert_both_paths_agree(_typed(), data, block, batch_size)


# Per family registered in coltypes (ColumnType.kind): its columns of TYPED, with `code`
# (required, with values) beside them so that rows also fail for another column's reason.
FAMILY_COLUMNS = {family.kind: tuple(
    name for name in TYPED_VALUES
    if name == "code" or load_text(TYPED, "test")["typed"].column(name).type.kind == family.kind)
    for family in FAMILIES}


def test_every_registered_family_has_typed_columns() -> None:
    """A new type needs its columns in TYPED (and TYPED_VALUES) to be checked here."""
    assert all(len(names) > 1 for names in FAMILY_COLUMNS.values()), FAMILY_COLUMNS


@pytest.mark.parametrize("family", list(FAMILY_COLUMNS))
@settings(max_examples=60, deadline=None)
@given(data=st.data(), block=st.sampled_from([64, 512, 1 << 20]),
       batch_size=st.integers(1, 12))
def test_fast_path_gives_the_reference_batches_family_by_family(
        family: str, data: st.DataObject, block: int, batch_size: int) -> None:
    names = FAMILY_COLUMNS[family]
    _assert_both_paths_agree(_typed(names), data.draw(typed_files(names)), block,
                             batch_size)


def _assert_both_paths_agree(dataset: Dataset, data: bytes, block: int, batch_size: int
                             ) -> None:
    saved = columnar.BLOCK
    columnar.BLOCK = block
    try:
        sha = hashlib.sha256(data).hexdigest()
        fast = list(transform(io.BytesIO(data), dataset, FILE_ID, 3, sha, batch_size))
        slow = list(transform(io.BytesIO(data), dataset, FILE_ID, 3, sha, batch_size,
                              columnar=False))
        assert fast == slow
    finally:
        columnar.BLOCK = saved


def test_canonical_values_of_every_type_take_the_fast_path() -> None:
    row = ("a,ab-1,7,12,19.99,1.5,0.5,true,2024-02-29,2024-01-01 10:00:00,"
           "2024-06-01T12:00:00Z,01/06/2024 09:15,6f1c3c1e-0000-4000-8000-00000000a001,08:30")
    data = (",".join(TYPED_VALUES) + "\n" + "\n".join([row] * 50) + "\n").encode()
    scanner = columnar.Scanner(io.BytesIO(data))
    items = iter(scanner)
    header = next(items)
    scanner.use_columns(find_columns(header.fields or [], _typed()))
    assert [type(item).__name__ for item in items] == ["Rows"]


def _typed(names: tuple[str, ...] = tuple(TYPED_VALUES)) -> Dataset:
    """The typed dataset, or only the named columns of it."""
    head, columns = TYPED.split("[datasets.typed.columns]\n")
    kept = [line for line in columns.splitlines() if line.split("=")[0].strip() in names]
    return load_text(head + "[datasets.typed.columns]\n" + "\n".join(kept) + "\n",
                     "test")["typed"]


@pytest.mark.parametrize("make", ["people", "wide"])
def test_a_generated_file_gives_the_reference_batches(tmp_path, make: str) -> None:
    """Every type and rule, with the generators' bad rows (3% for wide, whose reasons the
    fast path gives from the bad fields alone): byte for byte the row path's batches."""
    from pathlib import Path

    from bench.generate import generate
    from bench.generate_wide import generate as generate_wide

    path = tmp_path / "file.csv"
    (generate if make == "people" else generate_wide)(path, 20_000)
    dataset = PEOPLE if make == "people" else load(
        Path(__file__).resolve().parents[3] / "bench" / "wide.toml")["wide"]
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    fast, slow = (list(transform(io.BytesIO(data), dataset, FILE_ID, 3, sha, 1000,
                                 columnar=columnar_path)) for columnar_path in (True, False))
    assert fast == slow
    assert sum(m.reject_count for m in fast if isinstance(m, RowBatch)) > 10
