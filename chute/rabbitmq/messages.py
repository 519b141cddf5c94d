"""The messages that travel through RabbitMQ, with a schema version.

FileArrived refers to a file, as an S3 event does; it never carries the content.
RowBatch carries rows already in PostgreSQL's binary COPY format (see copyrows), so the
loader hands them to COPY without re-encoding a single row. FileDone closes a file with its totals.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import msgspec

from chute.errors import MessageDecodeError

# 4: a RowBatch may close its file (batches_total, rows_total), so most files need no
# FileDone; 3: FileArrived and RowBatch name their dataset (2 was people alone); 2: RowBatch
# rows are binary COPY tuples (1 had COPY text). A message of an unknown version is refused
# and dead-lettered, never loaded the wrong way: a loader of version 3 refuses a closing
# batch it would load without completing its file.
SCHEMA_VERSION = 4
# Versions still read: a version 3 message means the same in version 4 (nothing closes).
READ_VERSIONS = frozenset({3, SCHEMA_VERSION})


class _JsonMessage:
    """A message whose body is its fields as a JSON object."""

    KIND: ClassVar[str]
    file_id: str

    def encode(self) -> tuple[dict[str, Any], bytes]:
        return _headers(self.KIND, self.file_id), json.dumps(asdict(self)).encode()  # type: ignore[call-overload]

    @classmethod
    def decode(cls, headers: dict[str, Any] | None, body: bytes) -> Self:
        """Typed: a field of the wrong type (a size as text, a seq as a float) fails
        here, and its message goes to the dead-letter queue at once, rather than round
        the retries to fail later in a handler."""
        _check_kind(cls.KIND, headers)
        try:
            return msgspec.json.decode(body, type=cls, strict=True)
        except msgspec.DecodeError as e:  # ValidationError included
            raise MessageDecodeError(f"bad {cls.KIND} body: {e}") from None


@dataclass(frozen=True)
class FileArrived(_JsonMessage):
    KIND: ClassVar[str] = "file.arrived"
    file_id: str
    seq: int
    name: str
    path: str  # relative to the data directory
    sha256: str  # as registered (chute.files): the bytes the transformer must find
    size: int  # as registered, in bytes
    dataset: str  # its rows' dataset, chosen by the watcher from the path
    archive: bool = False  # a zip archive, to take apart into members (dataset "")


@dataclass(frozen=True)
class RangeTask(_JsonMessage):
    """One range of a file's plan (chute.reading.ranges), for any transformer to read:
    the file as its FileArrived said, the range as the ledger holds it, and the file's
    totals, which the batch closing the file carries."""

    KIND: ClassVar[str] = "file.range"
    file_id: str
    seq: int
    name: str
    path: str
    sha256: str
    size: int
    dataset: str
    batch_size: int
    data_start: int  # where the header ends
    range_no: int
    byte_start: int
    byte_end: int
    first_line: int
    records: int
    first_batch: int
    range_sha256: str
    batches_total: int
    rows_total: int


@dataclass(frozen=True)
class RetryRequested(_JsonMessage):
    """The console's request to put a quarantined or failed file through again
    (api/console/actions.py). The watcher carries it out (watcher/control.py): it owns
    the data folder and writes the ledger, which the API's read-only role cannot."""

    KIND: ClassVar[str] = "control.retry"
    file_id: str
    requested_at: str  # ISO 8601, when the console sent it: the worker's log line says it


@dataclass(frozen=True)
class CommandRequested(_JsonMessage):
    """The console's request to run `chute replay FILE_ID` or `chute rebuild DATASET`.
    Either may take minutes, more than the watcher may spend in its thread (its inbox and
    its broker connection wait there), so the watcher starts the command as a process of
    its own and logs how it ended (watcher/control.py)."""

    KIND: ClassVar[str] = "control.command"
    command: str  # one of COMMANDS
    file_id: str  # the file to replay; "" for a rebuild
    dataset: str  # the dataset to rebuild, or the replayed file's
    requested_at: str  # ISO 8601, when the console sent it

    COMMANDS: ClassVar[tuple[str, ...]] = ("replay", "rebuild")

    @property
    def argv(self) -> list[str]:
        """The chute command's arguments, as a person would type them."""
        if self.command == "replay":
            return ["replay", self.file_id]
        if self.command == "rebuild":
            return ["rebuild", self.dataset]
        raise MessageDecodeError(f"no console command {self.command!r}")


@dataclass(frozen=True)
class FileDone(_JsonMessage):
    KIND: ClassVar[str] = "file.done"
    file_id: str
    batches: int  # how many RowBatch messages the file produced
    rows_total: int  # data records, blank lines excluded


@dataclass(frozen=True)
class RowBatch:
    """Rows and rejects of one slice of a file.

    `rows` is binary COPY tuples for the dataset's table (id, its columns, file_seq,
    line; see copyrows); `rejects` is COPY text for (file_id, line, reason, raw).
    The file's last batch may carry the file's totals (what a FileDone says): then it
    closes the file in its own transaction, and a file of one batch is one message.
    """

    KIND: ClassVar[str] = "row.batch"
    file_id: str
    dataset: str
    batch_no: int
    row_count: int
    reject_count: int
    rows: bytes
    rejects: bytes
    batches_total: int | None = None  # set on a last batch that closes its file
    rows_total: int | None = None

    @property
    def done(self) -> FileDone | None:
        """The FileDone this batch stands for, if it closes its file."""
        if self.batches_total is None or self.rows_total is None:
            return None
        return FileDone(self.file_id, self.batches_total, self.rows_total)

    def encode(self) -> tuple[dict[str, Any], bytes]:
        headers = _headers(self.KIND, self.file_id) | {
            "dataset": self.dataset,
            "batch_no": self.batch_no,
            "row_count": self.row_count,
            "reject_count": self.reject_count,
            "rows_bytes": len(self.rows),
        }
        if self.done is not None:
            headers |= {"batches_total": self.batches_total, "rows_total": self.rows_total}
        return headers, self.rows + self.rejects

    @classmethod
    def decode(cls, headers: dict[str, Any] | None, body: bytes) -> RowBatch:
        """Typed, as _JsonMessage.decode: each header must have its type, not one that
        int() or str() would turn into it."""
        _check_kind(cls.KIND, headers)
        assert headers is not None
        try:
            fields = msgspec.convert(headers, type=_BatchHeaders, strict=True)
        except msgspec.ValidationError as e:
            raise MessageDecodeError(f"bad {cls.KIND} headers: {e}") from None
        if not 0 <= fields.rows_bytes <= len(body):
            raise MessageDecodeError(f"bad {cls.KIND} headers: rows_bytes {fields.rows_bytes} "
                                     f"outside a body of {len(body)} bytes")
        return cls(file_id=fields.file_id, dataset=fields.dataset, batch_no=fields.batch_no,
                   row_count=fields.row_count, reject_count=fields.reject_count,
                   rows=body[:fields.rows_bytes], rejects=body[fields.rows_bytes:],
                   batches_total=fields.batches_total, rows_total=fields.rows_total)


class _BatchHeaders(msgspec.Struct, frozen=True):
    """The headers a RowBatch is read from (kind and v are checked first; others, such
    as x-death, are the broker's)."""

    file_id: str
    dataset: str
    batch_no: int
    row_count: int
    reject_count: int
    rows_bytes: int
    batches_total: int | None = None
    rows_total: int | None = None


def kind_of(headers: dict[str, Any] | None) -> str | None:
    return (headers or {}).get("kind")


def _headers(kind: str, file_id: str) -> dict[str, Any]:
    # Every message names its file in the headers, so a dead-lettered one can always be
    # traced to its file without decoding the body.
    return {"kind": kind, "v": SCHEMA_VERSION, "file_id": file_id}


def _check_kind(kind: str, headers: dict[str, Any] | None) -> None:
    headers = headers or {}
    if headers.get("kind") != kind:
        raise MessageDecodeError(f"expected a {kind} message, got {headers.get('kind')!r}")
    if headers.get("v") not in READ_VERSIONS:
        raise MessageDecodeError(f"unsupported {kind} schema version {headers.get('v')!r}")
