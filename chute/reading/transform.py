"""A file's bytes -> RowBatch messages and a closing FileDone: the transformer's core.

Pure apart from reading the stream it is given, so the workers and any other runner
(a test, a Lambda handler) share it. Batches are cut by record count at a batch size
fixed per file (and by size, for rows of extreme length), so handling a file again
produces exactly the same batches.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import numpy as np

from chute.datasets.declarations import Dataset
from chute.errors import FileUnusable, HeaderError
from chute.rabbitmq.messages import FileDone, RowBatch
from chute.reading import copyrows
from chute.reading.cleaning import Layout, clean_row, find_columns
from chute.reading.columnar import Rows, Scanner, row_tuples
from chute.reading.csvstream import HAS_NUL, NOT_UTF8, Record, read_records
from chute.reading.rowids import id_high, id_low
from chute.reading.streams import DEFAULT_LIMITS, Limits, text_stream

# COPY text format: these characters must be escaped inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


# A batch's size in bytes (rows' COPY tuples and rejects' COPY text): a message stays far
# below RabbitMQ's largest (128 MiB by default) whatever the batch size and however long
# the rows and the raw text of rejects are. A refused publish would be retried for ever.
MAX_BATCH_BYTES = 8 << 20

# Files smaller than this are read row by row: the columnar path costs about 4 ms to set
# up per file (pyarrow calls per column) and wins only from about 300 rows (~9 KB of
# people) up. Measured on 100-row files: 4.4 ms columnar, 1.6 ms row by row. Both ways
# give the same bytes and the same batches, so the choice is free.
COLUMNAR_FROM_BYTES = 8 << 10


# Signatures of files that are often dropped by mistake where a CSV belongs; named in the
# reason, so the person who dropped one knows what to send instead.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "not a text file: a PNG image"),
    (b"\xff\xd8\xff", "not a text file: a JPEG image"),
    (b"%PDF-", "not a text file: a PDF document"),
    (b"\x1f\x8b", "not a text file: gzip-compressed data inside compressed data"),
    (b"PK\x03\x04", "not a text file: a zip archive (an Excel .xlsx workbook is one; "
                     "export it as CSV UTF-8)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "not a text file: an old Excel .xls workbook "
                                         "(export it as CSV UTF-8)"),
    (b"\xff\xfe", "not UTF-8: the file is UTF-16 (save it as UTF-8)"),
    (b"\xfe\xff", "not UTF-8: the file is UTF-16 (save it as UTF-8)"),
)
_SIGNATURE_BYTES = max(len(magic) for magic, _ in _SIGNATURES)
# Control characters that no header holds; those that are whitespace (\t, \v, \f, \x1c-\x1f)
# are trimmed from names like spaces instead.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f]")
# How a header line that csvstream could not read is described, by its error.
_UNREADABLE_HEADER = {
    NOT_UTF8: "not a text file: line {line} has bytes that are not UTF-8",
    HAS_NUL: "not a text file: line {line} contains a NUL byte",
}


class _Opening:
    """The file's stream, noting its first bytes and whether it had any at all."""

    def __init__(self, stream: BinaryIO) -> None:
        self._read = stream.read
        self.head = b""  # the first _SIGNATURE_BYTES bytes, once read

    def read(self, size: int) -> bytes:
        data = self._read(size)
        if len(self.head) < _SIGNATURE_BYTES:
            self.head += data[: _SIGNATURE_BYTES - len(self.head)]
        return data


def open_records(stream: BinaryIO, dataset: Dataset, columnar: bool = True,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[Layout, Iterator[Record | Rows]]:
    """Read the header; raise FileUnusable, with a specific reason, when there is none.

    The records come as Rows where the columnar fast path could read them, unless
    `columnar` is False: then every record is a Record (the reference the tests compare
    the fast path with, record for record).

    The reasons, checked in this order: no bytes at all; only whitespace; a known binary
    format or UTF-16; a first record that is not text or cannot be read; then the header's
    columns (no header at all, missing or duplicate columns, see find_columns).
    """
    opening = _Opening(text_stream(stream, limits))
    source = opening if dataset.encoding == "utf-8" else _Transcoded(opening, dataset.encoding)
    delimiter = dataset.delimiter
    scanner = Scanner(source, delimiter=delimiter)  # type: ignore[arg-type]  # only read()
    records = (iter(scanner) if columnar  # type: ignore[arg-type]
               else read_records(source, delimiter=delimiter))  # type: ignore[arg-type]
    header = next(records, None)
    if header is None:
        raise FileUnusable("empty file (0 bytes)" if not opening.head
                           else "whitespace only: no header and no rows")
    for magic, reason in _SIGNATURES:
        if opening.head.startswith(magic):
            raise FileUnusable(reason)
    if header.error:
        unreadable = _UNREADABLE_HEADER.get(
            header.error, f"no header: line {{line}} cannot be read ({header.error})")
        raise FileUnusable(unreadable.format(line=header.line))
    fields = header.fields or []
    if any(_CONTROL.search(name) for name in fields):
        raise FileUnusable(f"not a text file: line {header.line} has control characters")
    try:
        layout = find_columns(fields, dataset)
    except HeaderError as e:
        raise FileUnusable(str(e)) from None
    if columnar:
        scanner.use_columns(layout)
    return layout, records


def transform(
    stream: BinaryIO, dataset: Dataset, file_id: str, file_seq: int, sha256: str,
    batch_size: int, max_batch_bytes: int = MAX_BATCH_BYTES, columnar: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[RowBatch | FileDone]:
    """Yield the file's batches, then its FileDone. Raises FileUnusable before any batch,
    or, for a compressed stream found damaged or over `limits` on the way, later: callers
    that must not load half a file check it first with streams.scan.

    A batch ends after `batch_size` records, or earlier once it holds `max_batch_bytes`:
    both depend only on the file's bytes, so the cut is the same at every attempt, and
    the same whichever way (columnar or row by row) a row was read.
    """
    layout, records = open_records(stream, dataset, columnar, limits)
    batches = _Batches(file_id, dataset.name, batch_size, max_batch_bytes)
    yield from _cut(records, layout, file_seq, sha256, batches)
    if batches.row_count or batches.rejects:
        yield batches.cut()
    yield FileDone(file_id=file_id, batches=batches.batch_no, rows_total=batches.records)


def transform_range(stream: BinaryIO, layout: Layout, file_id: str, file_seq: int,
                    sha256: str, batch_size: int, first_line: int, first_batch: int,
                    max_batch_bytes: int = MAX_BATCH_BYTES) -> tuple[list[RowBatch], int]:
    """The batches of one range of a file (chute.reading.ranges): `stream` holds its
    bytes alone, from a record boundary at `first_line`; they are numbered from
    `first_batch`, and are the very batches `transform` cuts there. Returns them with the
    number of records read, which the caller checks against the plan."""
    scanner = Scanner(stream, delimiter=layout.dataset.delimiter,  # type: ignore[arg-type]
                      first_line=first_line, at_start=False)
    scanner.use_columns(layout)
    batches = _Batches(file_id, layout.dataset.name, batch_size, max_batch_bytes, first_batch)
    cut = list(_cut(iter(scanner), layout, file_seq, sha256, batches))
    if batches.row_count or batches.rejects:
        cut.append(batches.cut())
    return cut, batches.records


def _cut(records: Iterator[Record | Rows], layout: Layout, file_seq: int, sha256: str,
         batches: _Batches) -> Iterator[RowBatch]:
    """Clean, encode and batch records; the batch being filled is left in `batches`."""
    types = tuple(column.type for column in layout.dataset.columns)
    high = id_high(sha256)
    id_start = high.to_bytes(8, "big")
    escape = _COPY_ESCAPES
    file_id = batches.file_id
    block, tuples = None, None  # the latest block of columnar rows, encoded once

    for record in records:
        if type(record) is Rows:
            if record.block is not block:
                block = record.block
                tuples = _Tuples(*row_tuples(block, types, high, file_seq))
            batches.records += len(record)
            yield from batches.add_rows(tuples, record.start, record.stop)
            continue
        assert isinstance(record, Record)
        batches.records += 1
        line = record.line
        result = record.error or clean_row(record.fields or [], layout)
        if type(result) is str:
            reason, raw = result.translate(escape), record.raw.translate(escape)
            text = f"{file_id}\t{line}\t{reason}\t{raw}\n".encode()
            batches.rejects.append(text)
        else:
            row_id = id_start + id_low(line).to_bytes(8, "big")
            text = copyrows.row(row_id, result, types, file_seq, line)
            batches.rows.append(text)
            batches.row_count += 1
        batches.size += len(text)
        if batches.full():
            yield batches.cut()


class _Transcoded:
    """A stream in another ASCII-compatible encoding, read as UTF-8: the rest of the
    pipeline knows one encoding. Bytes the encoding cannot map are replaced (U+FFFD), so
    nothing stops the file; a single-byte encoding such as latin-1 maps them all."""

    def __init__(self, raw: _Opening, encoding: str) -> None:
        self._read = raw.read
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._done = False

    def read(self, size: int) -> bytes:
        while not self._done:
            data = self._read(size)
            self._done = not data
            text = self._decoder.decode(data, final=self._done)
            if text:
                return text.encode()
        return b""


class _Batches:
    """The batch being filled, and where to cut it (see transform)."""

    def __init__(self, file_id: str, dataset: str, batch_size: int, max_bytes: int,
                 batch_no: int = 0) -> None:
        self.file_id = file_id
        self.dataset = dataset
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.batch_no = batch_no
        self.records = 0  # records read, rejects included
        self.rows: list[bytes] = []  # COPY tuples of rows, in pieces
        self.row_count = 0
        self.rejects: list[bytes] = []  # COPY text of rejects, a line each
        self.size = 0  # bytes

    def full(self) -> bool:
        return (self.row_count + len(self.rejects) >= self.batch_size
                or self.size >= self.max_bytes)

    def cut(self) -> RowBatch:
        batch = RowBatch(
            file_id=self.file_id,
            dataset=self.dataset,
            batch_no=self.batch_no,
            row_count=self.row_count,
            reject_count=len(self.rejects),
            rows=b"".join(self.rows),
            rejects=b"".join(self.rejects),
        )
        self.batch_no += 1
        self.rows.clear()
        self.row_count = 0
        self.rejects.clear()
        self.size = 0
        return batch

    def add_rows(self, tuples: _Tuples, start: int, stop: int) -> Iterator[RowBatch]:
        """Add rows start..stop, cutting where adding them one by one would."""
        ends = tuples.starts
        while start < stop:
            # The batch is full after row k once its records or bytes reach their limit:
            # take the rows up to the first such k, or all of them.
            by_count = start + self.batch_size - self.row_count - len(self.rejects)
            by_size = int(np.searchsorted(
                ends, ends[start] + self.max_bytes - self.size, side="left"))
            end = min(by_count, by_size, stop)
            self.rows.append(tuples.data[ends[start]:ends[end]])
            self.row_count += end - start
            self.size += int(ends[end] - ends[start])
            start = end
            if self.full():
                yield self.cut()


class _Tuples(NamedTuple):
    data: bytes  # a block's rows as COPY tuples
    starts: np.ndarray  # where each row starts, and the end as a last entry
