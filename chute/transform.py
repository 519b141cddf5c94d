"""A file's bytes -> RowBatch messages and a closing FileDone: the transformer's core.

Pure apart from reading the stream it is given, so the workers and any other runner
(a test, a Lambda handler) share it. Batches are cut by record count at a batch size
fixed per file (and by size, for rows of extreme length), so handling a file again
produces exactly the same batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from chute.cleaning import Columns, HeaderError, clean_row, find_columns
from chute.csvstream import HAS_NUL, NOT_UTF8, Record, read_records
from chute.messages import FileDone, RowBatch
from chute.rowids import row_id_factory

# COPY text format: these characters must be escaped inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


# A batch's COPY text, in characters: at most 4 bytes each, so a message stays far below
# RabbitMQ's largest (128 MiB by default) whatever the batch size and however long the
# rows and the raw text of rejects are. A refused publish would be retried for ever.
MAX_BATCH_CHARS = 8 << 20


class FileUnusable(Exception):
    """The file cannot be used as a whole (it is quarantined); str(e) is the reason."""


# Signatures of files that are often dropped by mistake where a CSV belongs; named in the
# reason, so the person who dropped one knows what to send instead.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "not a text file: a PNG image"),
    (b"\xff\xd8\xff", "not a text file: a JPEG image"),
    (b"%PDF-", "not a text file: a PDF document"),
    (b"\x1f\x8b", "not a text file: gzip-compressed data (decompress it first)"),
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


def open_records(stream: BinaryIO) -> tuple[Columns, Iterator[Record]]:
    """Read the header; raise FileUnusable, with a specific reason, when there is none.

    The reasons, checked in this order: no bytes at all; only whitespace; a known binary
    format or UTF-16; a first record that is not text or cannot be read; then the header's
    columns (no header at all, missing or duplicate columns, see find_columns).
    """
    opening = _Opening(stream)
    records = read_records(opening)  # type: ignore[arg-type]  # only read() is used
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
        return find_columns(fields), records
    except HeaderError as e:
        raise FileUnusable(str(e)) from None


def transform(
    stream: BinaryIO, file_id: str, file_seq: int, sha256: str, batch_size: int,
    max_batch_chars: int = MAX_BATCH_CHARS,
) -> Iterator[RowBatch | FileDone]:
    """Yield the file's batches, then its FileDone. Raises FileUnusable before any batch.

    A batch ends after `batch_size` records, or earlier once its COPY text reaches
    `max_batch_chars`: both depend only on the file's bytes, so the cut is the same at
    every attempt.
    """
    columns, records = open_records(stream)
    row_id = row_id_factory(sha256)
    seq = str(file_seq)
    escape = _COPY_ESCAPES
    rows: list[str] = []
    rejects: list[str] = []
    batch_no = 0
    total = 0
    chars = 0

    def cut() -> RowBatch:
        return RowBatch(
            file_id=file_id,
            batch_no=batch_no,
            row_count=len(rows),
            reject_count=len(rejects),
            rows="".join(rows).encode(),
            rejects="".join(rejects).encode(),
        )

    for record in records:
        total += 1
        line = record.line
        result = record.error or clean_row(record.fields or [], columns)
        if type(result) is str:
            reason, raw = result.translate(escape), record.raw.translate(escape)
            text = f"{file_id}\t{line}\t{reason}\t{raw}\n"
            rejects.append(text)
        else:
            first, last, age, location = result
            # Cleaned names hold no tab, newline or CR (whitespace is collapsed): only
            # backslashes need escaping.
            last_text = "\\N" if last is None else last.replace("\\", "\\\\")
            first_text = first.replace("\\", "\\\\")
            location_text = location.replace("\\", "\\\\")
            text = (
                f"{row_id(line)}\t{first_text}\t{last_text}\t{age}\t"
                f"{location_text}\t{seq}\t{line}\n"
            )
            rows.append(text)
        chars += len(text)
        if len(rows) + len(rejects) >= batch_size or chars >= max_batch_chars:
            yield cut()
            batch_no += 1
            rows.clear()
            rejects.clear()
            chars = 0
    if rows or rejects:
        yield cut()
        batch_no += 1
    yield FileDone(file_id=file_id, batches=batch_no, rows_total=total)
