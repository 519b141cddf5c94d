"""transform(): which files are quarantined and why, COPY text that reads back exactly,
counts that always add up, and memory that stays flat however long the file is."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import subprocess
import sys
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.datasets.declarations import load
from chute.errors import FileUnusable
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading import copyrows
from chute.reading.cleaning import Layout, clean_row
from chute.reading.csvstream import RAW_LIMIT
from chute.reading.rowids import row_uuid
from chute.reading.transform import MAX_BATCH_BYTES, open_records, transform

PEOPLE = load(None)["people"]
TYPES = tuple(column.type for column in PEOPLE.columns)
FILE_ID = "6f1c3c1e-0000-4000-8000-000000000001"
HEADER = b"fullname,age,location\n"
# Property tests use deadline=None: a busy machine must not fail them; speed is not tested.

Loaded = tuple[int, str, "str | None", int, str]  # line, first_name, last_name, age, location
Rejected = tuple[int, str, str]  # line, reason, raw


def run(data: bytes, batch_size: int = 3, max_batch_bytes: int = MAX_BATCH_BYTES,
        ) -> tuple[list[RowBatch], FileDone]:
    messages = list(transform(io.BytesIO(data), PEOPLE, FILE_ID, 7, _sha(data), batch_size,
                              max_batch_bytes))
    done = messages.pop()
    assert isinstance(done, FileDone)
    batches = [m for m in messages if isinstance(m, RowBatch)]
    assert len(batches) == len(messages)
    return batches, done


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def copy_text(body: bytes, columns: int) -> list[list[str | None]]:
    """Decode PostgreSQL COPY text format, accepting only the escapes transform writes.

    A backslash followed by anything else, an unescaped tab inside a value, a bare CR or
    the end-of-data marker would all be read differently by PostgreSQL: they fail here.
    """
    text = body.decode()
    assert text == "" or text.endswith("\n")
    rows: list[list[str | None]] = []
    for line in text.split("\n")[:-1]:
        assert "\r" not in line and line != "\\."
        fields: list[str | None] = []
        for field in line.split("\t"):
            if field == "\\N":
                fields.append(None)
                continue
            out, i = [], 0
            while i < len(field):
                if field[i] == "\\":
                    out.append(_UNESCAPE[field[i + 1]])  # KeyError/IndexError: a bad escape
                    i += 2
                else:
                    out.append(field[i])
                    i += 1
            fields.append("".join(out))
        assert len(fields) == columns
        rows.append(fields)
    return rows


def loaded(data: bytes, batches: list[RowBatch]) -> list[Loaded]:
    """Every loaded row, checking its id (from the content and line) and file_seq."""
    out = []
    for batch in batches:
        for row_id, first, last, age, location, seq, line in copyrows.read(batch.rows, TYPES):
            assert (row_id, seq) == (str(row_uuid(_sha(data), line)), 7)  # type: ignore[arg-type]
            out.append((line, first, last, age, location))  # type: ignore[arg-type]
    return out


def rejected(batches: list[RowBatch]) -> list[Rejected]:
    out = []
    for batch in batches:
        for file_id, line, reason, raw in copy_text(batch.rejects, 4):
            assert file_id == FILE_ID
            out.append((int(line), reason, raw))
    return out


# --- whole-file problems --------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("people.csv", HEADER)
    return buffer.getvalue()


XLSX = "not a text file: a zip archive (an Excel .xlsx workbook is one; export it as CSV UTF-8)"
UTF16 = "not UTF-8: the file is UTF-16 (save it as UTF-8)"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b" ", "whitespace only: no header and no rows"),
        (b"\n\r\n \t \n\n", "whitespace only: no header and no rows"),
        (b"\xef\xbb\xbf", "whitespace only: no header and no rows"),  # a BOM and nothing else
        (b"\xef\xbb\xbf\r\n\r\n", "whitespace only: no header and no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file: a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "not a text file: a JPEG image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not a text file: a PDF document"),
        (gzip.compress(gzip.compress(HEADER + b"Ann,1,Oslo\n")),
         "not a text file: gzip-compressed data inside compressed data"),
        (gzip.compress(b"\x89PNG\r\n\x1a\n..."), "not a text file: a PNG image"),
        (_zip(), XLSX),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00",
         "not a text file: an old Excel .xls workbook (export it as CSV UTF-8)"),
        ("fullname,age,location\n".encode("utf-16"), UTF16),  # with its BOM, little-endian
        ("fullname,age,location\n".encode("utf-16-be").join([b"\xfe\xff", b""]), UTF16),
        # Without a BOM, UTF-16 text is full of NUL bytes.
        ("fullname,age,location\n".encode("utf-16-le"),
         "not a text file: line 1 contains a NUL byte"),
        ("fullname,âge,location\nAnn,1,Oslo\n".encode("latin-1"),
         "not a text file: line 1 has bytes that are not UTF-8"),
        (b"\n\nfull\x00name,age,location\n", "not a text file: line 3 contains a NUL byte"),
        (b"fullname,age,location\x03\x04\n", "not a text file: line 1 has control characters"),
        (b'"fullname,age,location\nAnn,1,Oslo\n',
         "no header: line 1 cannot be read (malformed quoting: a quoted field is not closed "
         "by the end of the file)"),
        (b"fullname,age," + b"x" * (1 << 20) + b"\nAnn,1,Oslo\n",
         "no header: line 1 cannot be read (record longer than 1048576 bytes)"),
        (b"Ann Smith,42,Oslo\nBob,1,Rome\n", "no header: expected columns fullname, age, location"),
        (b"name,age,location\nAnn,1,Oslo\n", "missing required column: fullname"),
        (b"fullname\nAnn\n", "missing required columns: age, location"),
        (b"fullname,age,location,Age\nAnn,1,Oslo,2\n", "duplicate column: age"),
    ],
)
def test_unusable_file_is_refused_with_a_specific_reason(data: bytes, reason: str) -> None:
    messages = transform(io.BytesIO(data), PEOPLE, FILE_ID, 7, _sha(data), 10)
    with pytest.raises(FileUnusable) as info:
        next(messages)  # before any batch: nothing of the file is ever loaded
    assert str(info.value) == reason


@pytest.mark.parametrize(
    "data",
    [
        HEADER,
        HEADER.rstrip(b"\n"),  # no final line break
        b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"\r\n\r\n",
        b"\n\n Location ,AGE,FullName,notes\n \n",  # blank lines before and after
    ],
)
def test_header_without_rows_is_a_file_of_zero_rows(data: bytes) -> None:
    assert run(data) == ([], FileDone(file_id=FILE_ID, batches=0, rows_total=0))


def test_header_is_found_whatever_its_case_spaces_order_and_extras() -> None:
    layout, records = open_records(
        io.BytesIO(b"id, Location ,AGE,\tFullName\n1,Oslo,30,Ann\n"), PEOPLE)
    assert layout == Layout(PEOPLE, count=4, at=(3, 3, 2, 1))
    assert [r.fields for r in records] == [["1", "Oslo", "30", "Ann"]]


# --- rows: what is loaded, what is rejected, in COPY text -----------------------------------


def test_every_rule_end_to_end_in_copy_text() -> None:
    data = (
        "\ufeffFullName , age,LOCATION,extra\r\n"
        "  Ann   Mary  Smith , 25 ,  New   York ,x\r\n"  # 2
        "Cher,25.0,LA,\r\n"  # 3: one word
        '"Smith, John",30,"Paris, ""FR""",\r\n'  # 4: quoted commas and quotes
        '"Multi\r\nLine",40,"a\r\nb",\r\n'  # 5-7: line breaks inside quotes
        "\r\n"  # 8: blank
        "Bob,abc,Rome,\r\n"  # 9
        "Bob,151,Rome,\r\n"  # 10
        ",,,\r\n"  # 11
        "too,few\r\n"  # 12
        "Zoë,5,Köln,"  # 13: no final line break
    ).encode()

    batches, done = run(data, batch_size=4)

    assert loaded(data, batches) == [
        (2, "Ann", "Mary Smith", 25, "New York"),
        (3, "Cher", None, 25, "LA"),
        (4, "Smith,", "John", 30, 'Paris, "FR"'),
        (5, "Multi", "Line", 40, "a b"),
        (13, "Zoë", None, 5, "Köln"),
    ]
    assert rejected(batches) == [
        (9, 'age: "abc" is not a whole number', "Bob,abc,Rome,"),
        (10, 'age: "151" is out of range 0..150', "Bob,151,Rome,"),
        (11, "fullname: is empty; age: is empty; location: is empty", ",,,"),
        (12, "expected 4 fields, found 2", "too,few"),
    ]
    # Batches are cut every 4 records, loaded or rejected, in file order.
    assert [(b.batch_no, b.row_count, b.reject_count) for b in batches] == [
        (0, 4, 0), (1, 0, 4), (2, 1, 0)]
    assert done == FileDone(file_id=FILE_ID, batches=3, rows_total=9)


def test_raw_text_with_copy_special_characters_round_trips() -> None:
    # Backslashes, tabs, CRs, line breaks, the end-of-data marker and \N: each written in
    # COPY text so that PostgreSQL stores exactly what the file held.
    data = (
        HEADER
        + b"\\.\n"  # 2: the end-of-data marker alone on a line
        + b"\\N,\\N,\\N\n"  # 3
        + b'"a\tb",x\\y,"c\r\n\\.\r\n"\n'  # 4-6
        + b"C:\\Users\\ann,1\\,Oslo\\\n"  # 7
        + b"tab\there,\t7\t,x,\\t\n"  # 8
    )

    batches, done = run(data)

    assert rejected(batches) == [
        (2, "expected 3 fields, found 1", "\\."),
        (3, 'age: "\\\\N" is not a whole number', "\\N,\\N,\\N"),
        (4, 'age: "x\\\\y" is not a whole number', '"a\tb",x\\y,"c\r\n\\.\r\n"'),
        (7, 'age: "1\\\\" is not a whole number', "C:\\Users\\ann,1\\,Oslo\\"),
        (8, "expected 3 fields, found 4", "tab\there,\t7\t,x,\\t"),
    ]
    assert done.rows_total == 5


def test_backslashes_in_values_load_exactly() -> None:
    data = HEADER + b"C:\\Users\\ann \\N,7,\\\\server\\share\n\\.,8,\\N\n"

    batches, _done = run(data)

    assert loaded(data, batches) == [
        (2, "C:\\Users\\ann", "\\N", 7, "\\\\server\\share"),
        (3, "\\.", None, 8, "\\N"),
    ]


def test_hostile_bytes_are_rejected_row_by_row() -> None:
    data = (
        HEADER
        + "Zoë,30,Köln\n".encode("latin-1")  # 2: a latin-1 row in a UTF-8 file
        + b"Ann\x00,1,Oslo\n"  # 3
        + b"Bob," + b"9" * 300_000 + b",Rome\n"  # 4: a field of hundreds of kilobytes
        + b"Cy,1," + b"x" * 300_000 + b"\n"  # 5
        + b"Di," + b"y" * (1 << 20) + b",Rome\n"  # 6: a line over the record limit
        + b"Ed,2,Oslo"  # 7: no final line break
    )

    batches, done = run(data)

    assert loaded(data, batches) == [(7, "Ed", None, 2, "Oslo")]
    assert rejected(batches) == [
        (2, "bytes that are not UTF-8", "Zo\ufffd,30,K\ufffdln"),
        (3, "contains a NUL byte", "Ann\u2400,1,Oslo"),
        (4, 'age: "' + "9" * 40 + '…" is out of range 0..150',
         "Bob," + "9" * (RAW_LIMIT - 4) + "…"),
        (5, "location: is longer than 500 characters", "Cy,1," + "x" * (RAW_LIMIT - 5) + "…"),
        (6, "record longer than 1048576 bytes", "Di," + "y" * (RAW_LIMIT - 3) + "…"),
    ]
    assert done.rows_total == 6


def test_batches_are_also_cut_by_size() -> None:
    # Rejects of ~4 kB of raw text each: with a budget of 10,000 bytes, a batch holds
    # three of them however large the batch size, so no message can outgrow the broker.
    data = HEADER + b"".join(b"Name %d,%d,%s\n" % (i, 200 + i, b"x" * 5000) for i in range(7))

    batches, done = run(data, batch_size=1000, max_batch_bytes=10_000)

    assert [(b.batch_no, b.reject_count) for b in batches] == [(0, 3), (1, 3), (2, 1)]
    assert all(len(b.rejects) < 10_000 + 4200 for b in batches)
    assert [line for line, _, _ in rejected(batches)] == list(range(2, 9))
    assert done == FileDone(file_id=FILE_ID, batches=3, rows_total=7)


def test_the_same_bytes_give_the_same_batches() -> None:
    data = HEADER + b"".join(b"Name %d,%d,Town\n" % (i, i % 200) for i in range(50))
    assert run(data, batch_size=7) == run(data, batch_size=7)


# --- properties -----------------------------------------------------------------------------


_headers = st.sampled_from([b"", HEADER, b"\xef\xbb\xbfAge,location,x,fullname\r\n"])


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300), _headers, st.integers(1, 5))
def test_any_bytes_give_a_verdict_and_counts_that_add_up(
    body: bytes, header: bytes, batch_size: int
) -> None:
    data = header + body
    try:
        batches, done = run(data, batch_size)
    except FileUnusable as e:
        assert str(e) and "\n" not in str(e)
        return
    rows, rejects = loaded(data, batches), rejected(batches)
    assert sum(b.row_count for b in batches) == len(rows)
    assert sum(b.reject_count for b in batches) == len(rejects)
    assert len(rows) + len(rejects) == done.rows_total  # every record loaded or rejected
    lines = sorted(line for line, *_ in rows + rejects)
    assert lines == sorted(set(lines))  # each record once
    assert [b.batch_no for b in batches] == list(range(done.batches))
    assert all(b.row_count + b.reject_count == batch_size for b in batches[:-1])
    assert all(len(raw) <= RAW_LIMIT + 1 and reason for _, reason, raw in rejects)


# NUL makes a reject of its own; csv.writer leaves a lone CR unquoted, which no reader takes.
_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"))


@settings(deadline=None, max_examples=200)
@given(st.lists(st.lists(_text, min_size=3, max_size=3), max_size=8),
       st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_any_text_round_trips_through_quoting_cleaning_and_copy(
    rows: list[list[str]], quoting: int
) -> None:
    """What csv.writer writes comes out as clean_row says, or as a reject with its raw."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator="\n")
    writer.writerow(["fullname", "age", "location"])
    expected_rows: list[Loaded] = []
    expected_rejects: list[Rejected] = []
    line = 2
    for row in rows:
        start = out.tell()
        writer.writerow(row)
        written = out.getvalue()[start:]
        result = clean_row(row, Layout(PEOPLE, 3, (0, 0, 1, 2)))
        if isinstance(result, str):
            raw = written[:-1]
            expected_rejects.append(
                (line, result, raw[:RAW_LIMIT] + "…" if len(raw) > RAW_LIMIT else raw))
        else:
            expected_rows.append((line, *result))
        line += written.count("\n")
    data = out.getvalue().encode()

    batches, done = run(data)

    assert loaded(data, batches) == expected_rows
    assert rejected(batches) == expected_rejects
    assert done.rows_total == len(expected_rows) + len(expected_rejects)


# --- memory ---------------------------------------------------------------------------------

# Runs in a fresh interpreter, so its peak resident size is transform's alone. The stream
# repeats one block of 1000 rows (some rejected) without ever holding more than that block.
_MEASURE = r"""
import io, resource, sys
from chute.rabbitmq.messages import FileDone
from chute.datasets.declarations import load
from chute.reading.transform import transform

block = b"".join(b"Person%d Some Name,%d,Town %d\n" % (i, i % 160, i % 97) for i in range(1000))
block += b"Bad,abc,Town\n"

class Generated(io.RawIOBase):
    def __init__(self, blocks):
        self.left, self.view, self.at = blocks, memoryview(b"fullname,age,location\n"), 0
    def readable(self):
        return True
    def readinto(self, buffer):
        if self.at == len(self.view):
            if not self.left:
                return 0
            self.left, self.view, self.at = self.left - 1, memoryview(block), 0
        n = min(len(buffer), len(self.view) - self.at)
        buffer[:n] = self.view[self.at:self.at + n]
        self.at += n
        return n

blocks = int(sys.argv[1])
stream = io.BufferedReader(Generated(blocks), 1 << 16)
for message in transform(stream, load(None)["people"], "f", 1, "ab" * 32, 1000):
    pass
assert message == FileDone("f", message.batches, blocks * 1001), message
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def _peak_kib(blocks: int) -> int:
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(blocks)], check=True,
                            capture_output=True, text=True, timeout=600)
    return int(result.stdout)


def test_memory_stays_flat_from_a_hundred_thousand_to_a_million_rows() -> None:
    small = _peak_kib(100)  # 100,100 records
    large = _peak_kib(1000)  # 1,001,000 records
    # Holding the rows would cost ~100 bytes each: ~90 MB more for the large file. Flat
    # means within the noise of the allocator, a few MB.
    assert large - small < 8 * 1024, (small, large)
