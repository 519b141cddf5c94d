"""One large file cut into ranges that several transformers read at once.

A plan is made in one pass over the file's bytes, before any range is handed out, and
depends on nothing but those bytes, the file's batch size and the range size: the same
file gives the same plan at every attempt, whatever the number of workers.

Record boundaries come from quote parity, as the Polars streaming reader and
timescaledb-parallel-copy find them: a line break ends a record when the quotes before
it are even. That holds only while every quote is where RFC 4180 puts one, so the pass
also checks each quote: an opening quote (even count before it) must start a field (after
a delimiter or a line break), a closing quote must end one (before a delimiter, a line
break or another quote, the doubled quote of an escape). With those, the csv module that
reads each range (csvstream, strict) is in a quoted field exactly when the parity says so.
Anything else (a quote inside an unquoted field, a carriage return not before a line
break, an unbalanced quote, a record over the record limit) leaves the file to one
transformer, as does a file too small to be worth cutting. Range starts are never guessed
(DuckDB's way, whose users keep finding rows missing or doubled).

Ranges are cut only at batch boundaries, every `batch_size` data records, so each range's
batches are numbered from where the file's would be and are byte for byte the batches one
transformer cuts. One transformer also cuts a batch early when it reaches
transform.MAX_BATCH_BYTES; a file whose batches could come near that (long records) is not
planned, and a range that meets it anyway is refused when read (see transformer/ranges.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

_BLOCK = 1 << 20  # numpy holds several arrays of 8 bytes per byte of a block
_BOM = b"\xef\xbb\xbf"
# Bytes str.strip() removes (ASCII): a line of only these is blank, and both the fast path
# and csvstream skip it. Bytes >= 0x80 may be Unicode whitespace: such lines are decoded.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_HIGH = np.zeros(256, dtype=bool)
_HIGH[128:] = True
_NOT_SOLID = _WHITESPACE | _HIGH
_TAIL_BYTES = 4096  # a record begun in an earlier block is kept this far, to tell if blank
# A batch's encoded size is bounded by its raw bytes, doubled (a column taken twice from
# one field, a reject's raw text beside its reason), plus this per record and column
# (lengths, fixed-size values, lineage): planned only when that stays below the cut.
_PER_RECORD = 64
_PER_COLUMN = 20


@dataclass(frozen=True)
class Range:
    range_no: int
    byte_start: int
    byte_end: int
    first_line: int  # physical line number of byte_start
    records: int  # data records (blank lines excluded)
    first_batch: int  # batch_no of its first batch
    sha256: str  # of bytes byte_start..byte_end, checked by the transformer reading it


@dataclass(frozen=True)
class Plan:
    ranges: tuple[Range, ...]
    records: int  # the file's data records
    batches: int  # the file's batches

    @property
    def data_start(self) -> int:
        """Where the header ends: bytes before it are read for the header alone."""
        return self.ranges[0].byte_start


def plan(stream: BinaryIO, size: int, batch_size: int, range_bytes: int, delimiter: str,
         columns: int, max_batch_bytes: int, max_record_bytes: int = 1 << 20) -> Plan | str:
    """The file's plan, or why it is read by one transformer (a sentence)."""
    if size < 2 * range_bytes:
        return f"smaller than two ranges ({size} bytes, ranges of {range_bytes})"
    if len(delimiter.encode()) != 1 or delimiter == '"':
        return f"a delimiter the planning pass does not know ({delimiter!r})"
    planner = _Planner(batch_size, range_bytes, ord(delimiter), columns, max_batch_bytes,
                       max_record_bytes)
    chunk = stream.read(_BLOCK)
    if chunk.startswith(_BOM):
        planner.skip_bom()
    offset = 0
    while chunk:
        following = stream.read(_BLOCK)
        problem = planner.block(chunk, offset, following[:1], final=not following)
        if problem:
            return problem
        offset += len(chunk)
        chunk = following
    return planner.finish(offset)


def _solid(segment: np.ndarray, delimiter: int) -> bool:
    """Whether bytes hold one that str.strip() keeps (ASCII; see _blank for the rest)."""
    return bool((~_NOT_SOLID[segment] | (segment == delimiter)).any())


def _blank(tail: bytes, data: bytes, start: int, end: int) -> bool:
    """Whether a record without ASCII text (`tail`, the part read in earlier blocks, then
    data[start:end]) is blank to csvstream: str.strip() leaves nothing of it."""
    return not (tail + data[start:end]).decode("utf-8", "replace").strip()


class _Planner:
    """The pass's state between blocks."""

    def __init__(self, batch_size: int, range_bytes: int, delimiter: int, columns: int,
                 max_batch_bytes: int, max_record_bytes: int) -> None:
        self.batch_size = batch_size
        self.range_bytes = range_bytes
        self.delimiter = delimiter
        self.batch_budget = max_batch_bytes - batch_size * (_PER_RECORD + _PER_COLUMN * columns)
        self.max_record_bytes = max_record_bytes
        self.quotes = 0  # quotes before the block
        self.lines = 0  # line breaks before the block
        self.previous = 10  # the byte before the block: a line break before the file
        self.record_start = 0  # where the record being read starts
        self.record_solid = 0  # its bytes that are not whitespace, so far
        self.record_high = False  # whether it has bytes >= 0x80, so far
        self.tail = b""  # its bytes, while they may all be whitespace (see _blank)
        self.data_start: int | None = None  # after the header
        self.records = 0  # data records so far
        self.batch_start = 0  # where the batch being read starts
        self.batches_too_large = False
        self.ranges: list[Range] = []
        self.range_start = 0
        self.range_line = 1
        self.hash = hashlib.sha256()  # of the range being read, up to `hashed`
        self.hashed = 0

    def skip_bom(self) -> None:
        self.record_start = len(_BOM)

    def block(self, data: bytes, offset: int, following: bytes, final: bool) -> str | None:
        view = np.frombuffer(data, dtype=np.uint8)
        bom = offset == 0 and self.record_start
        if bom:  # no part of the header's first field: read as spaces
            view = view.copy()
            view[:bom] = 32
        after = following[0] if following else 10  # the end of the file: a line break
        size = len(view)

        def next_byte(positions: np.ndarray) -> np.ndarray:
            return np.where(positions + 1 < size, view[np.minimum(positions + 1, size - 1)],
                            after)

        carriage = np.flatnonzero(view == 13)
        if len(carriage) and (next_byte(carriage) != 10).any():
            return "a carriage return not followed by a line break"
        quotes = np.flatnonzero(view == 34)
        if len(quotes):
            previous = np.where(quotes > 0, view[np.maximum(quotes - 1, 0)], self.previous)
            if bom:
                previous[quotes == bom] = 10  # a quote right after the BOM starts a field
            opening = (np.arange(len(quotes)) + self.quotes) % 2 == 0
            if not (np.isin(previous[opening], (self.delimiter, 10, 34)).all()
                    and np.isin(next_byte(quotes[~opening]),
                                (self.delimiter, 13, 10, 34)).all()):
                return "a quote inside a field (not where RFC 4180 puts quotes)"
        breaks = np.flatnonzero(view == 10)
        ends = breaks[(np.searchsorted(quotes, breaks) + self.quotes) % 2 == 0]
        # Each record's span in the block: the first one may have begun in earlier blocks.
        starts = np.concatenate(([self.record_start - offset], ends[:-1] + 1))[:len(ends)]
        if len(ends) and int((ends - starts).max()) > self.max_record_bytes:
            return f"a record longer than {self.max_record_bytes} bytes"
        # Printable ASCII or the delimiter: not whitespace. (Control characters are not
        # whitespace either; the records that may be blank are checked byte by byte.)
        solid = ((view > 32) & (view < 127)) | (view == self.delimiter)
        blank = self._blank_records(data, view, solid, starts, ends)
        # Lines up to and including each record's line break.
        lines_to = self.lines + np.searchsorted(breaks, ends, side="right")
        counted = ~blank
        if self.data_start is None and counted.any():  # the header is the first record
            header = int(np.argmax(counted))
            self._begin(offset + int(ends[header]) + 1, int(lines_to[header]) + 1)
            counted[:header + 1] = False
        if self.data_start is not None:
            self._cut(data, offset, ends, counted, lines_to)
        self.quotes += len(quotes)
        self.lines += len(breaks)
        self.previous = int(view[-1])
        last = int(ends[-1]) + 1 if len(ends) else 0
        rest = view[last:]
        if len(ends):
            self.record_start = offset + last
            self.record_solid, self.record_high, self.tail = 0, False, b""
        self.record_solid += int(_solid(rest, self.delimiter))
        self.record_high = self.record_high or bool(_HIGH[rest].any())
        self.tail += data[last:] if not self.record_solid else b""
        if self.record_solid or len(self.tail) > _TAIL_BYTES:
            self.tail = b"\x00"  # not blank (and no longer worth keeping)
        if final and not self.record_solid and self.record_high:  # a last line, blank?
            self.record_high = not _blank(self.tail, b"", 0, 0)
        if offset + len(data) - self.record_start > self.max_record_bytes:
            return f"a record longer than {self.max_record_bytes} bytes"
        if final and self.quotes % 2:
            return "an unbalanced quote: a quoted field is not closed by the end of the file"
        self._hash(data, offset, offset + len(data))
        return None

    def _blank_records(self, data: bytes, view: np.ndarray, solid: np.ndarray,
                       starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Which records are blank (csvstream skips them): no byte but whitespace. Only
        records that start with whitespace or a byte >= 0x80 (or began in an earlier
        block) can be; those are looked at whole."""
        blank = np.zeros(len(ends), dtype=bool)
        if not len(ends):
            return blank
        clipped = np.maximum(starts, 0)
        maybe = (ends == clipped) | ~solid[np.minimum(clipped, len(view) - 1)]
        maybe[0] |= starts[0] < 0
        candidates = np.flatnonzero(maybe)
        if not len(candidates):
            return blank
        # Whether each candidate holds a solid byte: one reduceat over their spans.
        spans = np.stack((clipped[candidates], ends[candidates]), axis=1).ravel()
        has_solid = np.logical_or.reduceat(solid, spans)[::2] & (ends[candidates] >
                                                                   clipped[candidates])
        if starts[0] < 0:
            has_solid[candidates == 0] |= bool(self.record_solid)
        for k in np.flatnonzero(~has_solid):
            i = int(candidates[k])
            segment = view[clipped[i]:ends[i]]
            if _solid(segment, self.delimiter):
                continue
            high = bool(_HIGH[segment].any()) or (starts[i] < 0 and self.record_high)
            blank[i] = not high or _blank(self.tail if starts[i] < 0 else b"", data,
                                          int(clipped[i]), int(ends[i]))
        return blank

    def _begin(self, data_start: int, first_line: int) -> None:
        self.data_start = self.range_start = self.batch_start = self.hashed = data_start
        self.range_line = first_line

    def _cut(self, data: bytes, offset: int, ends: np.ndarray, counted: np.ndarray,
             lines_to: np.ndarray) -> None:
        """Count the block's data records: a batch ends every batch_size, and a range at
        the first batch end past range_bytes from its start."""
        total = np.cumsum(counted) + self.records  # data records up to each record
        for i in np.flatnonzero(counted & (total % self.batch_size == 0)):
            end = offset + int(ends[i]) + 1
            if 2 * (end - self.batch_start) > self.batch_budget:
                self.batches_too_large = True
            self.batch_start = end
            if end - self.range_start >= self.range_bytes:
                self._hash(data, offset, end)
                self._close(end, int(total[i]), int(lines_to[i]) + 1)
        if len(total):
            self.records = int(total[-1])

    def _hash(self, data: bytes, offset: int, upto: int) -> None:
        if self.data_start is not None and upto > self.hashed:
            self.hash.update(data[self.hashed - offset:upto - offset])
            self.hashed = upto

    def _close(self, end: int, records_to: int, next_line: int) -> None:
        before = sum(r.records for r in self.ranges)
        self.ranges.append(Range(len(self.ranges), self.range_start, end, self.range_line,
                                 records_to - before, before // self.batch_size,
                                 self.hash.hexdigest()))
        self.range_start, self.range_line = end, next_line
        self.hash = hashlib.sha256()

    def finish(self, size: int) -> Plan | str:
        if self.data_start is None:
            return "no header"
        if self.batches_too_large or 2 * (size - self.batch_start) > self.batch_budget:
            return "records too long to cut batches ahead (they could reach the batch limit)"
        if size > self.record_start and (self.record_solid or self.record_high):
            self.records += 1  # a last line without a line break
        if size > self.range_start:
            self._close(size, self.records, self.lines + 1)
        if len(self.ranges) < 2:
            return "one range only"
        return Plan(tuple(self.ranges), self.records, -(-self.records // self.batch_size))
