"""A file cut into ranges gives, range by range, the very batches one transformer cuts.

The plan (chute.reading.ranges) is checked against the reference, transform() over the
whole file: the batches of all ranges, in order, must be byte for byte its batches, and
each range must hold the records the plan says. A file the plan cannot cut safely must
be refused, never cut wrong.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generate import generate
from bench.generate_wide import generate as generate_wide
from chute.datasets.declarations import Dataset, load
from chute.rabbitmq.messages import RowBatch
from chute.reading import ranges
from chute.reading.ranges import Plan, plan
from chute.reading.transform import MAX_BATCH_BYTES, open_records, transform, transform_range

PEOPLE = load(None)["people"]
WIDE = load(Path(__file__).resolve().parents[3] / "bench" / "wide.toml")["wide"]
FILE_ID = "00000000-0000-4000-8000-000000000002"

NAMES = ["Ann Lee", "José Ñu", "O'Brien", "  Bo  Ek ", "李 小", "", " ", "\u00a0", "x\ty"]
AGES = ["0", "42", "151", "-1", " 30 ", "30.0", "abc", ""]


def single(data: bytes, dataset: Dataset, batch_size: int) -> list[RowBatch]:
    sha = hashlib.sha256(data).hexdigest()
    out = transform(io.BytesIO(data), dataset, FILE_ID, 5, sha, batch_size)
    return [m for m in out if isinstance(m, RowBatch)]


def by_ranges(data: bytes, dataset: Dataset, batch_size: int, cut: Plan) -> list[RowBatch]:
    sha = hashlib.sha256(data).hexdigest()
    layout, _records = open_records(io.BytesIO(data[:cut.data_start]), dataset)
    batches = []
    for part in cut.ranges:
        piece = data[part.byte_start:part.byte_end]
        assert hashlib.sha256(piece).hexdigest() == part.sha256
        got, records = transform_range(io.BytesIO(piece), layout, FILE_ID, 5, sha,
                                       batch_size, part.first_line, part.first_batch)
        assert records == part.records, (part, data)
        assert [b.batch_no for b in got] == list(range(part.first_batch,
                                                       part.first_batch + len(got)))
        batches += got
    return batches


def planned(data: bytes, dataset: Dataset, batch_size: int, range_bytes: int) -> Plan | str:
    return plan(io.BytesIO(data), len(data), batch_size, range_bytes, dataset.delimiter,
                len(dataset.columns), MAX_BATCH_BYTES)


@pytest.mark.parametrize(("make", "dataset"), [(generate, PEOPLE), (generate_wide, WIDE)])
def test_a_generated_file_in_ranges_gives_one_transformers_batches(
        tmp_path: Path, make, dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "file.csv"
    make(path, 30_000)  # quoted commas and line breaks, blank lines, bad rows
    data = path.read_bytes()
    monkeypatch.setattr(ranges, "_BLOCK", 100_003)  # records across blocks
    cut = planned(data, dataset, 1000, 200_000)
    assert isinstance(cut, Plan), cut
    assert len(cut.ranges) >= 4
    assert cut.ranges[0].byte_start == data.index(b"\n") + 1
    assert [r.byte_start for r in cut.ranges[1:]] == [r.byte_end for r in cut.ranges[:-1]]
    assert cut.ranges[-1].byte_end == len(data)
    reference = single(data, dataset, 1000)
    assert by_ranges(data, dataset, 1000, cut) == reference
    assert cut.records == sum(b.row_count + b.reject_count for b in reference)
    assert cut.batches == len(reference)


def test_the_plan_does_not_depend_on_the_block_it_is_read_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "people.csv"
    generate(path, 20_000)
    data = path.read_bytes()
    plans = []
    for block in (4099, 65_536, 16 << 20):
        monkeypatch.setattr(ranges, "_BLOCK", block)
        plans.append(planned(data, PEOPLE, 500, 60_000))
    assert plans[0] == plans[1] == plans[2]


@st.composite
def records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["row"] * 6 + ["blank", "spaces", "multiline", "short",
                                               "doubled", "crlf", "control"]))
    if kind == "blank":
        return b""
    if kind == "control":  # not whitespace: a record (a reject), never a blank line
        return draw(st.sampled_from([b"\x01", b" \x02 ", b"\x1b\xc2\xa0"]))
    if kind == "spaces":
        return draw(st.sampled_from([b"  ", b"\t", b"\xc2\xa0", b" \xe2\x80\x83 "]))
    name = draw(st.sampled_from(NAMES))
    age = draw(st.sampled_from(AGES))
    place = draw(st.sampled_from(["Oslo", "Austin, TX", 'the "Hub"', "Malmö", ""]))
    fields = [name, age, place]
    if kind == "multiline":
        fields[0] += "\nsecond line"
    if kind == "short":
        fields = fields[:2]
    if kind == "doubled":
        fields[2] = '""'
    quoted = [f'"{f.replace(chr(34), chr(34) * 2)}"' if any(c in f for c in ',"\n')
              or draw(st.booleans()) else f for f in fields]
    line = ",".join(quoted).encode()
    return line + b"\r" if kind == "crlf" else line


@settings(max_examples=300, deadline=None)
@given(body=st.lists(records(), min_size=0, max_size=60), bom=st.booleans(),
       end=st.booleans(), batch_size=st.integers(1, 7), range_bytes=st.integers(8, 200),
       block=st.sampled_from([5, 17, 64, 1 << 20]))
def test_any_plan_gives_one_transformers_batches(body: list[bytes], bom: bool, end: bool,
                                                 batch_size: int, range_bytes: int,
                                                 block: int) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join([b"fullname,age,location", *body])
    if end:
        data += b"\n"
    saved = ranges._BLOCK
    ranges._BLOCK = block
    try:
        cut = planned(data, PEOPLE, batch_size, range_bytes)
    finally:
        ranges._BLOCK = saved
    if isinstance(cut, str):
        return  # read whole: always safe
    assert by_ranges(data, PEOPLE, batch_size, cut) == single(data, PEOPLE, batch_size)


@pytest.mark.parametrize(("line", "reason"), [
    (b'Ann "Bo" Lee,30,Oslo', "a quote inside a field"),
    (b'"Ann" Lee,30,Oslo', "a quote inside a field"),
    (b'Ann,30,Oslo\rBo,31,Rome', "a carriage return"),
    (b'"Ann,30,Oslo', "an unbalanced quote"),
])
def test_a_file_the_pass_cannot_cut_safely_is_read_whole(line: bytes, reason: str) -> None:
    rows = [b"Ann Lee,%d,Oslo" % i for i in range(400)]
    rows.insert(200, line)
    data = b"fullname,age,location\n" + b"\n".join(rows) + b"\n"
    cut = planned(data, PEOPLE, 10, 512)
    assert isinstance(cut, str) and cut.startswith(reason), cut


def test_a_small_file_or_long_records_are_read_whole() -> None:
    data = b"fullname,age,location\n" + b"Ann Lee,30,Oslo\n" * 100
    assert planned(data, PEOPLE, 10, len(data)).startswith("smaller than two ranges")
    long = b"fullname,age,location\n" + (b"A" * 2000 + b",30,Oslo\n") * 2000
    cut = plan(io.BytesIO(long), len(long), 5000, 1000, ",", 4, MAX_BATCH_BYTES)
    assert isinstance(cut, str) and cut.startswith("records too long"), cut
