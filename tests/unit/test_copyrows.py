"""Binary COPY tuples: what a row encodes to is what PostgreSQL reads back (the pipeline
tests load them into the real server; here, the encoding against its reader)."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from chute import copyrows
from chute.datasets import load

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
