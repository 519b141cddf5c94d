"""The transformer's fast path: plain lines parsed, cleaned and encoded as columns.

Per-row Python was the transformer's whole cost. Most lines of a real file are plain: a
whole record on one line, fields quoted or not, no backslash, no control or other
non-printable character, values written canonically that need at most their spaces
trimmed. A block of 1 MiB is classified with numpy, and its plain lines are split, cleaned
and typed with Arrow compute functions (coltypes.parse_column) and encoded as COPY tuples
(coltypes.encode_column), a column at a time, for any dataset's columns.

Every other line goes the slow way, exactly as if the whole file went that way: a window
of lines starting at it is read by csvstream.read_records, which says where its records
end (a quoted field may span lines; only the csv reader can say how far), and the records
are cleaned by cleaning.clean_row. The fast path starts again at the first record the
window did not finish. The tests check that both ways give byte-identical batches.

Memory stays bounded: a block, plus at most one record of up to the record limit carried
into the next block; the slow way's records are yielded one by one. When more than about
2 MiB would have to be carried (a line longer than that, or a record followed by that
much blank space), the rest of the file goes to csvstream, which holds no such run: the
output is the same, only slower.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.declarations import LINEAGE
from chute.datasets.types import ColumnType, encode_column, parse_column
from chute.datasets.types.arrays import BYTES, NOTHING, binary
from chute.reading.cleaning import Layout, reject_reason
from chute.reading.csvstream import RAW_LIMIT, Record, read_records, start_of_stream
from chute.reading.rowids import id_low

# Measured on a 1M-row file: 1 MiB blocks took the least CPU, and peak RSS grows with the
# block (about 40 MB over the imports at 1 MiB, 190 MB at 4 MiB).
BLOCK = 1 << 20
# Arrow's default allocator (mimalloc) keeps freed blocks' memory; the system allocator
# gives it back, which keeps the transformer's peak RSS flat and about 45 MB lower.
pa.set_memory_pool(pa.system_memory_pool())
_FIRST_WINDOW = 2  # lines; enough for a record on one line, doubled while a record runs on
_BLANK_BYTES = np.array([9, 11, 12, 28, 29, 30, 31, 32], dtype=np.uint8)
_SLOW_SHARE = 4  # a block with more than 1 line in 4 for the slow way goes that way whole


@dataclass(frozen=True)
class RowBlock:
    """The clean rows of one block's plain lines, as columns."""

    lines: np.ndarray  # int64
    values: tuple[pa.Array, ...]  # per declared column, typed (see coltypes)


@dataclass(frozen=True)
class Rows:
    """Rows start..stop of a block: clean rows of consecutive records."""

    block: RowBlock
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


class Scanner:
    """A file's records in order, as Record (slow path) or Rows (fast path).

    The header is read before any column is known: iterate, take the first Record, and
    call use_columns() before asking for the next item; until then every line goes the
    slow way. Without use_columns() the whole file is read the slow way.
    """

    def __init__(self, stream: BinaryIO, max_record_bytes: int = 1 << 20,
                 delimiter: str = ",", first_line: int = 1, at_start: bool = True) -> None:
        """A stream that starts further into a file, at a record boundary (a range of
        chute.reading.ranges), says so with at_start=False and the line it starts at."""
        self._read = stream.read
        self._limit = max_record_bytes
        self._delimiter = delimiter
        self._first_line = first_line
        self._at_start = at_start
        self._columns: Layout | None = None

    def use_columns(self, layout: Layout) -> None:
        self._columns = layout

    def __iter__(self) -> Iterator[Record | Rows]:
        data = start_of_stream(self._read, BLOCK) if self._at_start else self._read(BLOCK)
        line = self._first_line  # physical line number of data's first byte
        final = not data
        need_more = True
        while True:
            if need_more and not final:
                chunk = self._read(BLOCK)
                final = not chunk
                data += chunk
                if len(data) > 2 * BLOCK + self._limit:
                    # A line, or a run of lines, beyond anything a record can be: the
                    # slow way reads the rest of the file in bounded memory.
                    yield from read_records(_Prefixed(data, self._read), self._limit, line,
                                            False, self._delimiter)
                    return
            end = len(data) if final else data.rfind(b"\n") + 1
            if end == 0:
                if final:
                    return
                need_more = True
                continue
            # _block returns how much it left unread: a record that may go on in the
            # next block, or, once the header is read, the rest to classify again.
            left = yield from self._block(data[:end], line, final)
            done = end - left
            line += data.count(b"\n", 0, done)
            data = data[done:]
            if final and not data:
                return
            need_more = done == 0 or len(data) < BLOCK

    def _block(self, data: bytes, first_line: int, final: bool
               ) -> Generator[Record | Rows, None, int]:
        """Yield the records of data (whole lines from a record boundary); return the
        number of trailing bytes left unread because a record may go on past them, or
        because the header was just read and the rest must be classified again."""
        view = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(view == 10)
        if not len(ends) or ends[-1] != len(data) - 1:
            ends = np.append(ends, len(data))  # a last line without a line break
        starts = np.concatenate(([0], ends[:-1] + 1))
        count = len(ends)
        cleaned = None
        rejected: dict[int, tuple[str, str]] = {}  # line index -> (raw, reason)
        before_header = self._columns is None  # (the consumer sets it while we yield)
        if before_header:  # every line goes the slow way
            plain = np.zeros(count, dtype=bool)
            blank = np.zeros(count, dtype=bool)
        else:
            plain, blank, quoted = _plain_lines(data, view, starts, ends, self._columns,
                                                self._limit)
            if _mostly_slow(plain, blank):
                plain[:] = False
            if plain.any():
                cleaned = _clean(data, ends, plain, quoted, first_line, self._columns)
                plain[plain] = cleaned.valid  # rows the fast rules cannot settle go slow
                if _mostly_slow(plain, blank):
                    plain[:], cleaned = False, None
                else:  # but those it could give a reason for (most bad rows) are said here
                    rejected = {at: (raw, reason) for at, raw, reason in cleaned.rejects}
        plain_before = np.concatenate(([0], np.cumsum(plain)))  # index into cleaned.rows
        plain_at = np.flatnonzero(plain)
        at = 0  # first line not yet yielded
        for odd in np.flatnonzero(~plain & ~blank):
            if odd < at:
                continue  # a window already read it
            if cleaned is not None and plain_before[odd] > plain_before[at]:
                yield Rows(cleaned.rows, int(plain_before[at]), int(plain_before[odd]))
            said = rejected.get(int(odd))
            if said is not None:
                yield Record(first_line + int(odd), None, said[0], said[1])
                at = int(odd) + 1
                continue
            # The window takes the whole run of lines the fast path left, and the plain
            # line after it, whose record start ends the run's last record.
            next_plain = plain_at[np.searchsorted(plain_at, odd):][:1]
            run = int(next_plain[0]) - odd + 1 if len(next_plain) else count - odd
            window = _FIRST_WINDOW if before_header else max(_FIRST_WINDOW, run)
            while True:
                stop = min(odd + window, count)
                piece = io.BytesIO(data[starts[odd]:ends[stop - 1] + 1])
                last_ends_block = stop == count and final
                # Every record but the window's last is complete: yield each once the
                # next one starts, so a long run costs no memory.
                held, seen = None, 0
                for record in read_records(piece, self._limit, first_line + int(odd), False,
                                           self._delimiter):
                    if held is not None:
                        yield held
                    held, seen = record, seen + 1
                if last_ends_block:
                    if held is not None:
                        yield held
                    return 0
                if seen >= 2:
                    assert held is not None
                    at = held.line - first_line
                    break
                if stop == count:
                    return len(data) - int(starts[odd])  # a record may go on: next block
                window *= 2
            if before_header:
                return len(data) - int(starts[at])
        if cleaned is not None and plain_before[count] > plain_before[at]:
            yield Rows(cleaned.rows, int(plain_before[at]), int(plain_before[count]))
        return 0


class _Prefixed:
    """A stream that gives `head` first, then the rest of another stream."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._rest = read

    def read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest(size)


def _mostly_slow(plain: np.ndarray, blank: np.ndarray) -> bool:
    """Whether a block is better read the slow way as a whole: when most of its lines go
    that way anyway (a file whose every age reads "25.0", or every line has a tab), one
    csv reader over the block is cheaper than a window for each run of them."""
    return int(np.count_nonzero(~plain & ~blank)) * _SLOW_SHARE > len(plain)


@dataclass(frozen=True)
class _Cleaned:
    rows: RowBlock  # the rows of the plain lines that passed, in order
    valid: np.ndarray  # per plain line: whether it passed
    # Plain lines that failed with a reason the fast path could give: (index of the line
    # in the block, raw text, reason), as csvstream and clean_row would give them.
    rejects: list[tuple[int, str, str]]



def _plain_lines(data: bytes, view: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 layout: Layout, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which lines the fast path can take, which are blank (skipped by both ways), and
    which hold a quote."""
    count = len(ends)
    delimiter = ord(layout.dataset.delimiter)
    crlf = (ends > starts) & (view[np.maximum(ends - 1, 0)] == 13)
    text_ends = ends - crlf
    # Blank: nothing but ASCII whitespace other than CR (what str.strip() removes), which
    # the csv reader gives as one whitespace field and both ways skip.
    blank = _blank_lines(view, starts, text_ends)
    odd = np.zeros(count, dtype=bool)
    # Backslashes and control characters (but a tab that separates fields); a CR only
    # counts outside a final CRLF.
    special = (view == 92) | (view == 127) | ((view < 32) & (view != 10) & (view != delimiter))
    special[ends[crlf] - 1] = False
    odd[np.searchsorted(ends, np.flatnonzero(special))] = True
    odd |= ends - starts > limit
    if (view >= 128).any():
        odd |= _not_printable_utf8(data, view, starts, ends, text_ends)
    # The number of fields: counted here for lines without quotes (delimiters), checked
    # by _fields' pattern for the others.
    quoted = np.zeros(count, dtype=bool)
    quoted[np.searchsorted(ends, np.flatnonzero(view == 34))] = True
    if delimiter < 32:  # a tab inside quotes would be a value's whitespace: go slow
        odd |= quoted
    separators = np.bincount(np.searchsorted(ends, np.flatnonzero(view == delimiter)),
                             minlength=count)
    odd |= ~quoted & (separators != layout.count - 1)
    return ~odd & ~blank, blank, quoted


_BLANK = np.zeros(256, dtype=bool)
_BLANK[_BLANK_BYTES] = True


def _blank_lines(view: np.ndarray, starts: np.ndarray, text_ends: np.ndarray) -> np.ndarray:
    """Lines of nothing but blank bytes. Only a line that is empty or starts with one
    can be: those alone are looked at whole, with one reduceat over their spans."""
    blank = starts == text_ends
    first = view[np.minimum(starts, len(view) - 1)]
    maybe = np.flatnonzero(~blank & _BLANK[first])
    if len(maybe):
        solid = np.append(~_BLANK[view], False)  # a line may end with the data
        spans = np.stack((starts[maybe], text_ends[maybe]), axis=1).ravel()
        blank[maybe] = ~np.logical_or.reduceat(solid, spans)[::2]
    return blank


def _not_printable_utf8(data: bytes, view: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                        text_ends: np.ndarray) -> np.ndarray:
    """Lines that are not UTF-8 or hold a character Python's isprintable() refuses (which
    includes every whitespace character but the space): cleaning treats those specially.

    ASCII ones are found by the caller; here only the other characters are checked. In
    valid UTF-8 the bytes of those characters are exactly the bytes >= 0x80, so those
    bytes alone decode to them, and one isprintable() covers a whole block.
    """
    bad = np.zeros(len(ends), dtype=bool)
    wide = view >= 128
    try:
        data.decode()
        if view[wide].tobytes().decode().isprintable():
            return bad
    except UnicodeDecodeError:
        pass
    for i in np.unique(np.searchsorted(ends, np.flatnonzero(wide))):
        try:
            bad[i] = not data[starts[i]:text_ends[i]].decode().isprintable()
        except UnicodeDecodeError:
            bad[i] = True
    return bad


def _clean(data: bytes, ends: np.ndarray, plain: np.ndarray, quoted: np.ndarray,
           first_line: int, layout: Layout) -> _Cleaned:
    """cleaning.clean_row's rules for plain lines, a column at a time.

    Lines are split into fields by _fields. Plain lines hold no whitespace but spaces, so
    trimming and collapsing is about spaces only. A quoted line _fields' pattern refuses,
    or a row the fast rules cannot settle (a reject, or a value that needs the row
    path's parsing), is marked not valid: the slow way reads it and gives a reject its
    reason.
    """
    chosen = np.flatnonzero(plain)
    offsets = np.minimum(np.concatenate(([0], ends + 1)), len(data)).astype(np.int64)
    all_lines = pa.LargeStringArray.from_buffers(
        len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    lines = pc.utf8_rtrim(all_lines.take(pa.array(chosen)), characters="\r\n")
    fields = _fields(lines, quoted[chosen], layout)
    texts: dict[tuple[int, bool], pa.Array] = {}  # (field, collapsed?) -> its clean text
    valid = np.ones(len(chosen), dtype=bool)
    values = []
    settled_by_column = []  # per column: the lines whose value it settled
    for column, at in zip(layout.dataset.columns, layout.at, strict=True):
        collapse = column.type.name == "text"
        if at is None:
            text = pa.nulls(len(chosen), pa.large_string())
        else:
            text = texts.get((at, collapse))
            if text is None:
                text = texts[at, collapse] = (_collapse(fields[at]) if collapse
                                              else pc.utf8_trim(fields[at], " "))
        # A null marker (or an empty value) is no value; the nulls of a line _fields'
        # pattern refused are not, but that line is not valid anyway.
        marked = pc.is_in(text, value_set=pa.array(sorted(column.nulls), pa.large_string()))
        text = pc.if_else(marked, pa.scalar(None, pa.large_string()), text)
        typed, settled = parse_column(text, column.rules)
        if column.needs_value:
            settled = settled & ~pc.fill_null(marked, True).to_numpy(zero_copy_only=False)
        if column.take is not None:
            words = pc.split_pattern(typed, " ", max_splits=1)
            typed = pc.list_element(words, 0) if column.take == "first_word" else \
                _second(words)
            if column.needs_value:
                settled = settled & pc.is_valid(typed).to_numpy(zero_copy_only=False)
        valid &= settled
        settled_by_column.append(settled)
        values.append(typed)
    keep = pa.array(valid)
    rows = RowBlock(lines=chosen[valid] + first_line,
                    values=tuple(v.filter(keep) for v in values))
    return _Cleaned(rows, valid, _rejects(chosen, lines, fields, valid, settled_by_column,
                                          layout))


def _rejects(chosen: np.ndarray, lines: pa.Array, fields: dict[int, pa.Array],
             valid: np.ndarray, settled_by_column: list[np.ndarray], layout: Layout
             ) -> list[tuple[int, str, str]]:
    """The reasons of plain lines that failed, from the row path's rules applied to their
    unsettled columns alone (cleaning.reject_reason): a few bad values cost a Python
    call for each bad field, not the whole row read again by csv and clean_row. A line
    whose fields _fields' pattern refused, or whose unsettled values turn out valid,
    gets no reason here: it goes the slow way."""
    failed = np.flatnonzero(~valid)
    if not len(failed):
        return []
    # A quoted line _fields' pattern refused has every field null: one field tells.
    matched = fields[layout.used[0]].take(pa.array(failed)).is_valid()
    failed = failed[matched.to_numpy(zero_copy_only=False)]
    if not len(failed):
        return []
    unsettled = ~np.stack(settled_by_column)[:, failed]  # column x failed line
    texts: list[dict[int, str]] = [{} for _ in failed]  # the fields each line needs
    for column, at in enumerate(layout.at):
        lines_of = np.flatnonzero(unsettled[column])
        if at is None or not len(lines_of):
            continue
        for k, text in zip(lines_of.tolist(), fields[at].take(pa.array(failed[lines_of]))
                           .to_pylist(), strict=True):
            texts[k][at] = text
    raws = lines.take(pa.array(failed)).to_pylist()
    found = []
    for k, line in enumerate(failed.tolist()):
        columns = np.flatnonzero(unsettled[:, k]).tolist()
        reason = reject_reason(texts[k], layout, columns)
        if reason is not None:
            raw = raws[k]
            if len(raw) > RAW_LIMIT:
                raw = raw[:RAW_LIMIT] + "…"
            found.append((int(chosen[line]), raw, reason))
    return found


def _second(words: pa.Array) -> pa.Array:
    """The second element of each list, null where a list has one (a single word)."""
    two = pc.equal(pc.list_value_length(words), 2)
    # list_element fails on a list too short: give one-word lists a second element first.
    padded = pc.if_else(two, words, pa.scalar(["", ""], words.type))
    return pc.if_else(two, pc.list_element(padded, 1), pa.scalar(None, pa.large_string()))


def _fields(lines: pa.Array, quoted: np.ndarray, layout: Layout) -> dict[int, pa.Array]:
    """The fields the dataset uses, by header index; null where a quoted line is not a
    record of exactly the header's fields. Lines without quotes (their delimiters were
    counted) are split at the delimiter; the others, about one in five in real exports,
    are matched by the slower pattern."""
    used = layout.used
    delimiter = layout.dataset.delimiter
    if not quoted.any():
        split = pc.split_pattern(lines, delimiter)
        return {i: pc.list_element(split, i) for i in used}
    plain_at, quoted_at = np.flatnonzero(~quoted), np.flatnonzero(quoted)
    split = pc.split_pattern(lines.take(pa.array(plain_at)), delimiter)
    matched = pc.extract_regex(lines.take(pa.array(quoted_at)), _record_pattern(layout))
    # Both kinds back in their lines' order.
    order = pa.array(np.argsort(np.concatenate((plain_at, quoted_at)), kind="stable"))
    return {i: pa.concat_arrays([pc.list_element(split, i),
                                 _unquote(pc.struct_field(matched, f"f{i}"))]).take(order)
            for i in used}


def _record_pattern(layout: Layout) -> str:
    """A regular expression (RE2) for a record of the header's fields, naming ours."""
    used = set(layout.used)
    separator = re.escape(layout.dataset.delimiter)
    fields = []
    for index in range(layout.count):
        group = f"?P<f{index}>" if index in used else "?:"
        fields.append(f'({group}"(?:[^"]|"")*"|[^"{separator}]*)')
    return "^" + separator.join(fields) + "$"


def _unquote(values: pa.Array) -> pa.Array:
    quoted = pc.starts_with(values, '"')
    inner = pc.replace_substring(pc.utf8_slice_codeunits(values, 1, -1), '""', '"')
    return pc.if_else(quoted, inner, values)


def _collapse(values: pa.Array) -> pa.Array:
    """Trim spaces and collapse runs of them; few values have runs, so only those go
    through the regular expression."""
    values = pc.utf8_trim(values, " ")
    runs = pc.fill_null(pc.match_substring(values, "  "), False)
    if not pc.any(runs).as_py():
        return values
    collapsed = pc.replace_substring_regex(values.filter(runs), "  +", " ")
    return pc.replace_with_mask(values, runs, collapsed)


def row_tuples(rows: RowBlock, types: tuple[ColumnType, ...], id_high: int, file_seq: int
               ) -> tuple[bytes, np.ndarray]:
    """The rows as binary COPY tuples (see copyrows.row, which makes the same bytes one
    row at a time), and where each row starts in them (with the end as a last entry).

    A tuple is its fixed-size parts (field count, id, file_seq, line: numpy structured
    arrays, filled a field at a time) joined by Arrow with each column's fields, which
    coltypes encodes a column at a time.
    """
    count = len(rows.lines)
    head = np.empty(count, dtype=[("fields", ">i2"), ("id_length", ">i4"), ("id_high", ">u8"),
                                  ("id_low", ">u8")])
    head["fields"] = len(types) + len(LINEAGE)
    head["id_length"] = 16
    head["id_high"] = id_high
    head["id_low"] = rows.lines.astype(np.uint64) | np.uint64(id_low(0))
    tail = np.empty(count, dtype=[("seq_length", ">i4"), ("seq", ">i8"),
                                  ("line_length", ">i4"), ("line", ">i8")])
    tail["seq_length"] = 8
    tail["seq"] = file_seq
    tail["line_length"] = 8
    tail["line"] = rows.lines
    columns = [encode_column(values, kind).cast(BYTES)
               for values, kind in zip(rows.values, types, strict=True)]
    tuples = pc.binary_join_element_wise(binary(head), *columns, binary(tail), NOTHING)
    offsets = np.frombuffer(tuples.buffers()[1], dtype=np.int64)[
        tuples.offset:tuples.offset + count + 1]
    data = tuples.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]
    return data, offsets - offsets[0]

