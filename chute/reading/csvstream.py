"""Turn a CSV byte stream into records with line numbers and raw text, in bounded memory.

Parsing is done by the stdlib csv module (C, RFC 4180 quoting, strict). It is fed physical
lines by _Lines, which reads fixed-size blocks, decodes and splits a whole block at once (per
line Python work is what limits throughput), and notes in `pending` the lines the current
record has consumed: csv pulls a line only when it needs one, so the lines pulled since the
previous record are exactly this record's lines, which gives its start line and raw text.

Lines reach csv without their "\n": a line break only matters inside a quoted field, and
then _Lines puts it back in front of the next line. That keeps the common path a plain split.

A record that cannot be read is yielded with its error rather than stopping the file, so the
caller can store it as a reject and carry on.
"""

import csv
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

RAW_LIMIT = 4096  # chars of raw text kept per record; enough to see what went wrong
NOT_UTF8 = "bytes that are not UTF-8"
HAS_NUL = "contains a NUL byte"  # PostgreSQL text cannot hold NUL

UNCLOSED = "a quoted field is not closed by the end of the file"
# csv's messages, in words for the person who has to fix the file; any other csv message
# is kept as it is.
_CSV_REASONS = {
    "unexpected end of data": UNCLOSED,
    "DELIMITER expected after '\"'":
        "text after a closing quote (write a quote inside a field as \"\")",
    "new-line character seen in unquoted field": "a carriage return in an unquoted field",
}

_BLOCK = 1 << 16  # read size; capped at the record limit, see _Lines
_RAW_BYTES = RAW_LIMIT * 4  # bytes that always decode to at least RAW_LIMIT chars
_BOM = b"\xef\xbb\xbf"
_new = tuple.__new__  # builds a Record without the Python-level NamedTuple __new__ (per row)

_Read = Callable[[int], bytes]


class Record(NamedTuple):
    line: int  # 1-based physical line where the record starts (header is usually line 1)
    fields: list[str] | None  # None when error is set
    raw: str  # text as in the file, trailing line break removed, cut to RAW_LIMIT chars + "…"
    error: str | None  # why the record could not be read, or None


def read_records(stream: BinaryIO, max_record_bytes: int = 1 << 20,
                 first_line: int = 1, at_start: bool = True,
                 delimiter: str = ",") -> Iterator[Record]:
    """Yield every non-blank record of a UTF-8 CSV stream (opened 'rb'), header included.

    A record's size is its bytes excluding its final line break; one larger than
    max_record_bytes is yielded as an error and reading resumes at the next physical line.
    A stream that starts further into a file, at a record boundary, says so with
    at_start=False (a BOM there is data) and the line number it starts at.
    """
    # The limit is process-wide; only ever raise it, so that our record limit is the one that
    # applies (a field is never longer than its record) and other csv users are unaffected.
    if csv.field_size_limit() < max_record_bytes + 2:
        csv.field_size_limit(max_record_bytes + 2)
    source = _Lines(stream.read, max_record_bytes, at_start)
    pending = source.pending
    trouble = source.trouble
    # strict=True: an unclosed quote at end of file, or text after a closing quote, becomes an
    # error. Non-strict csv guesses instead: it returns a half-read record at EOF with no
    # error and glues `"ab"c` into `abc`; a reject a person can fix beats a silent guess.
    reader = csv.reader(source, strict=True, delimiter=delimiter)
    done = first_line - 1  # physical lines consumed before the current record
    while True:
        try:
            for fields in reader:
                if len(pending) == 1:  # pop() both takes the line and empties the list
                    text = pending.pop()
                    start = done = done + 1
                else:  # a record over several lines (pending may be compacted, see _emit)
                    text = "\n".join(pending)
                    start = done + 1
                    done += text.count("\n") + 1
                    pending.clear()
                if trouble:
                    error = trouble[-1]  # a too-long record always ends with that error
                    trouble.clear()
                    yield _new(Record, (start, None, _display(text), error))
                elif len(fields) < 2 and not text.strip():
                    continue  # blank line: csv gives [] or one whitespace field
                else:
                    raw = text.rstrip("\r")
                    if len(raw) > RAW_LIMIT:
                        raw = raw[:RAW_LIMIT] + "…"
                    yield _new(Record, (start, fields, raw, None))
            return
        except csv.Error as exc:
            # csv drops the rest of the failing line and resets itself on the next call, so
            # the same reader carries on at the next physical line.
            reason = str(exc).split(" - ")[0]  # drop csv's hint aimed at programmers
            if reason.endswith(" expected after '\"'"):  # names the delimiter
                reason = "DELIMITER expected after '\"'"
            reason = _CSV_REASONS.get(reason, reason)
            error = trouble[-1] if trouble else f"malformed quoting: {reason}"
        text = "\n".join(pending)
        start = done + 1
        done += text.count("\n") + 1 if pending else 0
        raw = _display(text)
        pending.clear()
        trouble.clear()
        yield _new(Record, (start, None, raw, error))


class _Lines:
    """Iterable of physical lines (without "\\n") for csv.reader, read in bounded memory.

    Problems are reported out of band: the reason is appended to `trouble` before the line is
    handed over, so it belongs to the record csv is building. A record over the limit is
    ended early by handing csv a line that closes it, so csv's buffers stay within the limit
    and the next physical line starts a fresh record.
    """

    __slots__ = ("read", "limit", "at_start", "too_long", "pending", "trouble", "used")

    def __init__(self, read: _Read, limit: int, at_start: bool) -> None:
        self.read = read
        self.at_start = at_start
        self.limit = limit
        self.too_long = f"record longer than {limit} bytes"
        self.pending: list[str] = []  # lines of the current record; the reader clears it
        self.trouble: list[str] = []  # reasons the current record is bad; the reader clears it
        self.used = 0  # bytes of a record continuing over several lines, counted so far

    def __iter__(self) -> Iterator[str]:
        read = self.read
        limit = self.limit
        pending = self.pending
        append = pending.append
        # Blocks no bigger than the limit mean that, in `carry + chunk`, only the first line
        # (the one carry belongs to) can be over the limit, so only it needs checking.
        block = max(1, min(_BLOCK, limit))
        carry = b""  # start of a line whose end has not been read yet
        chunk = start_of_stream(read, block) if self.at_start else read(block)
        while chunk or carry:
            if chunk:
                data = carry + chunk
                end = data.rfind(b"\n")
                if end < 0:
                    if len(data) > limit + 1:  # too long whatever follows: skip, don't buffer
                        carry = b""
                        chunk = _skip_line(read, block) or read(block)
                        yield from self._reject(data, True)
                    else:
                        carry = data
                        chunk = read(block)
                    continue
                body, carry = data[:end], data[end + 1 :]
            else:  # end of file: a last line without a line break
                body, carry = carry, b""
            chunk = read(block)
            first = body.find(b"\n")
            if first < 0:
                first = len(body)
            if first > limit and first - body.endswith(b"\r", 0, first) > limit:
                yield from self._reject(body[:first], False)
                if first == len(body):
                    continue
                body = body[first + 1 :]
            if b"\0" in body:  # one scan per block spares a check per record
                yield from self._careful(body)
                continue
            try:
                lines = body.decode().split("\n")
            except UnicodeDecodeError:
                yield from self._careful(body)
                continue
            for line in lines:
                if pending:
                    yield from self._emit(line)
                else:
                    append(line)
                    yield line

    def _emit(self, line: str) -> Iterator[str]:
        """Hand over a line off the fast path, enforcing the limit on multi-line records."""
        pending = self.pending
        if not pending:
            pending.append(line)
            yield line
            return
        # csv wants another line for the same record, so it is inside a quoted field.
        if len(pending) == 1:
            self.used = _size(pending[0])
        if self.used + 1 + _size(line.rstrip("\r")) > self.limit:
            pending.append(line)
            self.trouble.append(self.too_long)
            yield '"'  # closes the quoted field and so the record; the line is not parsed
        else:
            self.used += 1 + _size(line)
            pending.append(line)
            if len(pending) > 256:
                # Many short lines cost far more as separate str objects than their bytes;
                # join them, keeping at least two entries so it still reads as multi-line.
                pending[:-1] = ["\n".join(pending[:-1])]
            yield "\n" + line  # the line break is inside the quoted field: give it back

    def _careful(self, body: bytes) -> Iterator[str]:
        """A block with bad bytes or a NUL: find those lines and flag only their records."""
        trouble = self.trouble
        for piece in body.split(b"\n"):
            if b"\0" in piece:
                trouble.append(HAS_NUL)
            try:
                line = piece.decode()
            except UnicodeDecodeError:
                # surrogateescape keeps the bytes so quotes still parse and raw can show them.
                line = piece.decode("utf-8", "surrogateescape")
                trouble.append(NOT_UTF8)
            yield from self._emit(line)

    def _reject(self, data: bytes, cut: bool) -> Iterator[str]:
        """Hand over a line over the limit: keep its start for raw, let csv end the record."""
        text = data[:_RAW_BYTES].decode("utf-8", "surrogateescape")
        if cut or len(data) > _RAW_BYTES:
            text += "…"
        self.pending.append(text)
        self.trouble.append(self.too_long)
        # Inside a quoted field '"' ends the record; at a record start "" is an empty record.
        yield '"' if len(self.pending) > 1 else ""


def start_of_stream(read: _Read, block: int) -> bytes:
    """First block of the stream with a UTF-8 BOM removed (Excel writes one)."""
    head = read(block)
    while head and len(head) < 3 and _BOM.startswith(head):  # a short read split the BOM
        more = read(3 - len(head))
        if not more:
            break
        head += more
    if head.startswith(_BOM):
        return head[3:] or read(block)  # b"" would read as end of file
    return head


def _skip_line(read: _Read, block: int) -> bytes:
    """Discard the rest of the current line block by block; return what follows it.

    What follows comes from a single read, so it keeps the invariant that no line in it
    is longer than a block.
    """
    while chunk := read(block):
        end = chunk.find(b"\n")
        if end >= 0:
            return chunk[end + 1 :]
    return b""


def _size(line: str) -> int:
    """Bytes of a line as it was in the file (bad bytes are kept as surrogate escapes)."""
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogateescape"))


def _display(text: str) -> str:
    """Raw text for a reject: bad bytes as U+FFFD, NUL as U+2400, at most RAW_LIMIT chars."""
    text = text.rstrip("\r")
    cut = len(text) > RAW_LIMIT
    if cut:
        text = text[:RAW_LIMIT]
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = text.replace("\0", "\u2400")
    return text + "…" if cut else text
