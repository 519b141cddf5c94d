"""Compressed files: recognised by their first bytes, read as the plain file would be,
and refused with a reason when damaged, cut short or over a limit."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.datasets.declarations import load_text, without_compression
from chute.errors import FileUnusable
from chute.reading.streams import DEFAULT_LIMITS, Limits, codec_of, problem_of, scan, text_stream
from chute.reading.transform import transform
from watcher.readiness import is_candidate


def zstd(data: bytes) -> bytes:
    out = pa.BufferOutputStream()
    with pa.CompressedOutputStream(out, "zstd") as stream:
        stream.write(data)
    return out.getvalue().to_pybytes()


COMPRESS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": zstd,
}
PEOPLE = load_text("", "test")["people"]

row = st.tuples(st.sampled_from(["Ann Smith", "Bob", "", '"Cy, Young"', "Zoë Ünal"]),
                st.sampled_from(["30", "x", "151", ""]),
                st.sampled_from(["Oslo", "", "São Paulo"]))


@st.composite
def people_files(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(row, max_size=40))
    return ("fullname,age,location\n" + "".join(",".join(r) + "\n" for r in rows)).encode()


def batches(data: bytes, batch_size: int = 7) -> list[object]:
    stream = io.BufferedReader(io.BytesIO(data))
    return list(transform(stream, PEOPLE, "f", 1, "ab" * 32, batch_size))


@pytest.mark.parametrize("codec", list(COMPRESS))
@settings(max_examples=25, deadline=None)
@given(data=people_files(), split=st.integers(0, 400))
def test_a_compressed_file_gives_the_plain_files_batches(codec: str, data: bytes,
                                                         split: int) -> None:
    """Same rows, same rejects with the same lines and raw text, same batches; also for
    a stream of several members (gzip) or frames (zstd), as `cat a.gz b.gz` makes."""
    compressed = COMPRESS[codec](data)
    assert codec_of(compressed) == codec
    assert batches(compressed) == batches(data)
    at = min(split, len(data))
    joined = COMPRESS[codec](data[:at]) + COMPRESS[codec](data[at:])
    assert batches(joined) == batches(data)


def test_the_first_bytes_decide_not_the_name() -> None:
    data = b"fullname,age,location\nAnn Smith,30,Oslo\n"
    assert codec_of(data) is None
    assert text_stream(io.BufferedReader(io.BytesIO(data)), DEFAULT_LIMITS).read() == data
    for codec, compress in COMPRESS.items():
        assert codec_of(compress(data)) == codec
        stream = text_stream(io.BytesIO(compress(data)), DEFAULT_LIMITS)  # no peek(): wrapped
        assert stream.read(1 << 20) == data


@pytest.mark.parametrize("codec", list(COMPRESS))
def test_a_stream_cut_short_is_refused_with_the_bytes_read(codec: str) -> None:
    data = b"fullname,age,location\n" + b"Ann Smith,30,Oslo\n" * 5000
    cut = COMPRESS[codec](data)[:-7]
    assert problem_of(io.BytesIO(cut), DEFAULT_LIMITS) == (
        f"{codec} data ends early after {len(cut):,} bytes")
    with pytest.raises(FileUnusable, match=f"{codec} data ends early"):
        batches(cut)


@pytest.mark.parametrize("codec", list(COMPRESS))
def test_a_damaged_stream_is_refused_naming_its_codec(codec: str) -> None:
    data = b"fullname,age,location\n" + b"".join(b"P%d Q,%d,R\n" % (i, i % 90)
                                                  for i in range(3000))
    damaged = bytearray(COMPRESS[codec](data))
    # In the middle of the stream; for zstd in its frame header, as a frame written
    # without a checksum (Arrow writes none) cannot show damage to its content.
    damaged[5 if codec == "zstd" else len(damaged) // 2] ^= 0xFF
    problem = problem_of(io.BytesIO(bytes(damaged)), DEFAULT_LIMITS)
    assert problem is not None
    assert problem.startswith((f"{codec} data is damaged (", f"{codec} data ends early"))


def test_a_file_expanding_past_the_ratio_or_the_size_limit_is_refused_with_figures() -> None:
    data = b"fullname,age,location\n" + b"Ann Smith,30,Oslo\n" * 200_000  # 3.6 MB
    packed = gzip.compress(data)
    ratio = Limits(max_bytes=1 << 40, max_ratio=50, ratio_from=1 << 20)
    problem = problem_of(io.BytesIO(packed), ratio)
    assert problem is not None and problem.startswith(
        "gzip data expands more than 50 times (CHUTE_MAX_COMPRESSION_RATIO): ")
    assert problem_of(io.BytesIO(packed), Limits(max_ratio=50)) is None  # below ratio_from
    size = Limits(max_bytes=2 << 20, max_ratio=1e9, ratio_from=1 << 40)
    problem = problem_of(io.BytesIO(packed), size)
    assert problem is not None and problem.startswith(
        "gzip data expands to more than 2.0 MiB (CHUTE_MAX_DECOMPRESSED_BYTES): ")
    assert problem_of(io.BytesIO(packed), DEFAULT_LIMITS) is None


def test_the_corpus_bomb_is_stopped_early(tmp_path: Path) -> None:
    """1.4 MB of zstd that is 16 GiB of rows: refused after about 64 MiB of text."""
    bomb = Path(__file__).parents[2] / "corpus" / "bomb.csv.zst"
    with bomb.open("rb") as raw:
        digest, problem = scan(raw, DEFAULT_LIMITS)
    assert digest == hashlib.sha256(bomb.read_bytes()).hexdigest()
    assert problem is not None and problem.startswith(
        "zstd data expands more than 200 times (CHUTE_MAX_COMPRESSION_RATIO)")


def test_scan_hashes_the_file_as_stored_and_says_what_is_wrong(tmp_path: Path) -> None:
    data = b"fullname,age,location\nAnn Smith,30,Oslo\n"
    for name, content, problem in (
            ("plain.csv", data, None), ("a.csv.gz", gzip.compress(data), None),
            ("cut.csv.xz", lzma.compress(data)[:-3], None)):
        path = tmp_path / name
        path.write_bytes(content)
        with path.open("rb") as raw:
            digest, found = scan(raw, DEFAULT_LIMITS)
        assert digest == hashlib.sha256(content).hexdigest()
        if name.startswith("cut"):
            assert found == f"xz data ends early after {len(content):,} bytes"
        else:
            assert found is problem


@pytest.mark.parametrize(("path", "plain"), [
    ("orders/2024-06.csv.gz", "orders/2024-06.csv"),
    ("a.CSV.GZ", "a.CSV"), ("a.csv.zst", "a.csv"), ("a.csv.zstd", "a.csv"),
    ("a.csv.bz2", "a.csv"), ("a.csv.xz", "a.csv"), ("a.csv.gzip", "a.csv"),
    ("a.csv", "a.csv"), ("a.gz.csv", "a.gz.csv"), ("a.tar", "a.tar"),
])
def test_a_name_is_matched_without_its_compression_suffix(path: str, plain: str) -> None:
    assert without_compression(path) == plain


def test_compressed_csv_names_are_candidates_and_match_their_dataset() -> None:
    assert is_candidate(Path("x/2024.csv.gz")) and is_candidate(Path("b.CSV.ZST"))
    assert not is_candidate(Path(".hidden.csv.gz")) and not is_candidate(Path("notes.txt.gz"))
    datasets = load_text('[datasets.orders]\nmatch = "orders/*.csv"\n'
                         '[datasets.orders.columns]\nn = { type = "integer" }\n', "test")
    assert datasets.for_path("orders/2024-06.csv.gz").name == "orders"  # type: ignore[union-attr]
    assert datasets.for_path("orders/2024-06.txt.gz") is None
