"""A file's bytes before they are CSV: hashed as they are read, and decompressed.

A compressed file is recognised by its first bytes, whatever its name says, and read as
a stream in bounded memory:
- gzip, any number of members: python-isal's igzip (Intel's ISA-L), about 4x the
  standard library's gzip and 3x Arrow's here (docs/benchmarks.md);
- zstd, any number of frames: Arrow's CompressedInputStream (pyarrow is a dependency
  already; unlike the zstandard package's stream reader, it notices a stream cut short);
- bzip2 and xz: the standard library's bz2 and lzma.

Limits keep a decompression bomb (a small file that expands to many GiB) from filling
the disk: past `max_bytes` of text, or past `max_ratio` times its compressed size once
it has given `ratio_from` bytes, the file is unusable. `scan` finds any such problem, and
any damage, in one pass before a row of the file is sent: a compressed file never loads
half of itself.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa
from isal import igzip, igzip_lib

from chute.errors import FileUnusable

if TYPE_CHECKING:
    from chute.runtime.config import Config

# Codec name -> its magic bytes (RFC 1952, bzip2, the xz and zstd formats).
MAGIC = {"gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00",
         "zstd": b"\x28\xb5\x2f\xfd"}
HEAD_BYTES = max(len(magic) for magic in MAGIC.values())
READ_SIZE = 1 << 20
# What each library raises for bytes that are not a valid stream (a truncated one raises
# EOFError, or Arrow's OSError "Truncated compressed stream").
_DAMAGED = (igzip.BadGzipFile, igzip_lib.IsalError, lzma.LZMAError, OSError, ValueError)


@dataclass(frozen=True)
class Limits:
    """How far a compressed file may expand (settings CHUTE_MAX_DECOMPRESSED_BYTES and
    CHUTE_MAX_COMPRESSION_RATIO)."""

    max_bytes: int = 8 << 30
    max_ratio: float = 200.0
    ratio_from: int = 64 << 20  # small files of repeated lines compress very well

    @classmethod
    def of(cls, config: Config) -> Limits:
        return cls(config.max_decompressed_bytes, config.max_compression_ratio)


DEFAULT_LIMITS = Limits()


def codec_of(head: bytes) -> str | None:
    """The compression whose magic bytes start `head`, or None for anything else."""
    return next((name for name, magic in MAGIC.items() if head.startswith(magic)), None)


class HashingReader(io.RawIOBase):
    """Reads a file and hashes every byte on the way: whoever reads a claimed or archived
    file knows, at the end, whether it is the bytes recorded."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.digest.update(memoryview(buffer)[:count])
        return count


class _Counting(io.RawIOBase):
    """A stream that counts the bytes read from it: the compressed size so far."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)


class Decompressing:
    """The text of a compressed stream, read(n) at a time; FileUnusable with the reason
    when the stream is damaged, ends early, or goes over a limit."""

    def __init__(self, raw: BinaryIO, codec: str, limits: Limits) -> None:
        self.codec = codec
        self.limits = limits
        self.size = 0  # bytes of text given so far
        self._source = _Counting(raw)
        if codec == "gzip":
            self._stream: BinaryIO = igzip.IGzipFile(fileobj=self._source, mode="rb")
        elif codec == "zstd":
            self._stream = pa.CompressedInputStream(pa.PythonFile(self._source, mode="r"),
                                                    "zstd")
        elif codec == "bzip2":
            self._stream = bz2.BZ2File(self._source)
        else:
            self._stream = lzma.LZMAFile(self._source)

    def read(self, size: int = READ_SIZE) -> bytes:
        try:
            data = self._stream.read(size)
        except EOFError:
            raise self._ends_early() from None
        except _DAMAGED as e:
            if "truncated" in str(e).lower():
                raise self._ends_early() from None
            raise FileUnusable(f"{self.codec} data is damaged ({e})") from None
        self.size += len(data)
        self._check_limits()
        return data

    def _ends_early(self) -> FileUnusable:
        """Named by the bytes of the file read: all of them, as the stream is cut short."""
        return FileUnusable(f"{self.codec} data ends early after {self._source.count:,} "
                            "bytes")

    def _check_limits(self) -> None:
        limits, packed = self.limits, max(self._source.count, 1)
        if self.size > limits.max_bytes:
            raise FileUnusable(
                f"{self.codec} data expands to more than {_size(limits.max_bytes)} "
                f"(CHUTE_MAX_DECOMPRESSED_BYTES): {_size(packed)} read gave "
                f"{_size(self.size)} so far")
        if self.size > limits.ratio_from and self.size > limits.max_ratio * packed:
            raise FileUnusable(
                f"{self.codec} data expands more than {limits.max_ratio:g} times "
                f"(CHUTE_MAX_COMPRESSION_RATIO): {_size(packed)} read gave "
                f"{_size(self.size)} so far")


def text_stream(stream: BinaryIO, limits: Limits) -> BinaryIO:
    """`stream` as text: decompressed when its first bytes say it is compressed."""
    if not hasattr(stream, "peek"):  # an S3 object's body, say
        stream = io.BufferedReader(_Counting(stream), buffer_size=1 << 16)  # type: ignore[assignment]
    codec = codec_of(stream.peek(HEAD_BYTES)[:HEAD_BYTES])  # type: ignore[attr-defined]
    return stream if codec is None else Decompressing(stream, codec, limits)  # type: ignore[return-value]


def problem_of(stream: BinaryIO, limits: Limits) -> str | None:
    """Why a compressed stream cannot be read (damaged, cut short, over a limit), read to
    its end; None for a sound one, or one that is not compressed (read no further)."""
    text = text_stream(stream, limits)
    if not isinstance(text, Decompressing):
        return None
    try:
        while text.read(READ_SIZE):
            pass
    except FileUnusable as e:
        return str(e)
    return None


def scan(raw: BinaryIO, limits: Limits) -> tuple[str, str | None]:
    """One pass over a file from its start: its sha256, and why it cannot be read when
    it is compressed (damaged, cut short, over a limit), or None. A plain file is only
    hashed, at the speed of hashlib."""
    codec = codec_of(raw.read(HEAD_BYTES))
    raw.seek(0)
    if codec is None:
        return hashlib.file_digest(raw, "sha256").hexdigest(), None  # type: ignore[arg-type]
    hashing = HashingReader(raw)
    buffered = io.BufferedReader(hashing, buffer_size=1 << 16)
    problem = problem_of(buffered, limits)  # type: ignore[arg-type]
    while buffered.read(READ_SIZE):  # the hash covers the whole file
        pass
    return hashing.digest.hexdigest(), problem


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:,} bytes"
