"""A file's bytes -> RowBatch messages and a closing FileDone: the transformer's core.

Pure apart from reading the stream it is given, so the workers and any other runner
(a test, a Lambda handler) share it. Batches are cut by record count at a batch size
fixed per file, so handling a file again produces exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from chute.cleaning import Columns, HeaderError, clean_row, find_columns
from chute.csvstream import Record, read_records
from chute.messages import FileDone, RowBatch
from chute.rowids import row_id_factory

# COPY text format: these characters must be escaped inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class FileUnusable(Exception):
    """The file cannot be used as a whole (it is quarantined); str(e) is the reason."""


def open_records(stream: BinaryIO) -> tuple[Columns, Iterator[Record]]:
    """Read the header; raise FileUnusable when the file has no usable one."""
    records = read_records(stream)
    header = next(records, None)
    if header is None:
        raise FileUnusable("empty file: no header and no rows")
    if header.error:
        raise FileUnusable(f"not a text file: line {header.line} {header.error}")
    try:
        return find_columns(header.fields or []), records
    except HeaderError as e:
        raise FileUnusable(str(e)) from None


def transform(
    stream: BinaryIO, file_id: str, file_seq: int, sha256: str, batch_size: int
) -> Iterator[RowBatch | FileDone]:
    """Yield the file's batches, then its FileDone. Raises FileUnusable before any batch."""
    columns, records = open_records(stream)
    row_id = row_id_factory(sha256)
    seq = str(file_seq)
    escape = _COPY_ESCAPES
    rows: list[str] = []
    rejects: list[str] = []
    batch_no = 0
    total = 0

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
            rejects.append(
                f"{file_id}\t{line}\t{result.translate(escape)}\t{record.raw.translate(escape)}\n"
            )
        else:
            first, last, age, location = result
            # Cleaned names hold no tab, newline or CR (whitespace is collapsed): only
            # backslashes need escaping.
            last_text = "\\N" if last is None else last.replace("\\", "\\\\")
            rows.append(
                f"{row_id(line)}\t{first.replace(chr(92), chr(92) * 2)}\t{last_text}\t{age}\t"
                f"{location.replace(chr(92), chr(92) * 2)}\t{seq}\t{line}\n"
            )
        if len(rows) + len(rejects) >= batch_size:
            yield cut()
            batch_no += 1
            rows.clear()
            rejects.clear()
    if rows or rejects:
        yield cut()
        batch_no += 1
    yield FileDone(file_id=file_id, batches=batch_no, rows_total=total)
