"""Binary COPY tuples: what a row encodes to is what PostgreSQL reads back (the pipeline
tests load them into the real server; here, the encoding against its reader)."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chute.datasets.declarations import load
from chute.datasets.types import FAMILIES, Rules, column_type, encode, parse
from chute.reading import copyrows

TYPES = tuple(column.type for column in load(None)["people"].columns)

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=40)


@given(first=TEXT, last=st.none() | TEXT, age=st.integers(0, 150), location=TEXT,
       seq=st.integers(1, 2**62), line=st.integers(1, 2**47))
def test_a_row_reads_back_as_written(first: str, last: str | None, age: int, location: str,
                                     seq: int, line: int) -> None:
    row_id = uuid.uuid4()
    data = copyrows.row(row_id.bytes, (first, last, age, location), TYPES, seq, line)
    assert copyrows.read(data + data, TYPES) == [(str(row_id), first, last, age, location, seq,
                                           line)] * 2


def test_a_stream_has_the_format_header_and_trailer() -> None:
    stream = copyrows.wrap(b"")
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00") and stream.endswith(b"\xff\xff")
    assert len(stream) == 19 + 2


# Per registered family: a value of each type reads back as parse() gave it (numeric as
# its binary form, which tools compare as it is).
READ_BACK = [("smallint", "-7"), ("integer", "7"), ("bigint", "-9223372036854775808"),
             ("text", "José"), ("numeric(5,2)", "1.5"), ("numeric", "-0.0001"),
             ("double", "2.5"), ("boolean", "t"), ("date", "2024-02-29"),
             ("timestamp", "2024-02-29 13:45:00.5"), ("timestamptz", "2024-02-29 13:45+02:00"),
             ("time", "23:59:59.000001"), ("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")]


def test_every_registered_family_is_read_back() -> None:
    assert {column_type(declared).kind for declared, _ in READ_BACK} == {
        family.kind for family in FAMILIES}


@pytest.mark.parametrize(("declared", "text"), READ_BACK)
def test_a_value_of_each_type_reads_back_as_parsed(declared: str, text: str) -> None:
    kind = column_type(declared)
    value = parse(text, Rules(kind))
    data = copyrows.row(bytes(16), (value, None), (kind, kind), 3, 4)
    expected = encode(value, kind)[4:] if kind.kind == "numeric" else value
    assert copyrows.read(data, (kind, kind)) == [(str(uuid.UUID(int=0)), expected, None, 3, 4)]
