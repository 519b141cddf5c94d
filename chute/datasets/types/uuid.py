"""uuid: 32 hex digits, any case, optionally in braces, with an optional hyphen after any
group of four (PostgreSQL's uuid_in). Value: uuid.UUID; in Arrow, the uuid extension type.
"""

from __future__ import annotations

import re
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.arrays import byte_matrix, bytes_of, fixed, to_numpy
from chute.datasets.types.rules import ColumnType, Family, Invalid, Rules, quote

_UUID = re.compile(r"(\{)?((?:[0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4})(?(1)\})")


def declare(name: str) -> ColumnType | None:
    if name != "uuid":
        return None
    return ColumnType("uuid", "uuid", False, "string", "uuid", "uuid", pa.uuid(), UUID)


def parse(text: str, rules: Rules) -> uuid.UUID | Invalid:
    match = _UUID.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a uuid")
    return uuid.UUID(hex=match[2].replace("-", ""))


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    """Canonical (8-4-4-4-12) and plain (32 hex digits) spellings: the hyphens are
    checked at their places and removed, leaving 32 characters a row, one matrix."""
    lengths = to_numpy(pc.binary_length(texts), 0)
    ok = (lengths == 36) | (lengths == 32)
    raw = np.zeros((len(texts), 16), dtype=np.uint8)
    if ok.any():
        view, starts, _ = bytes_of(texts)
        dashed = lengths == 36
        for at in (8, 13, 18, 23):
            ok[dashed] &= view[starts[dashed] + at] == ord("-")
        digits = pc.replace_substring(texts.filter(pa.array(ok)), "-", "")
        view, starts, lengths = bytes_of(digits)
        # Exactly four hyphens, at their places, leave 32 characters.
        settled = lengths == 32
        chars = byte_matrix(view, starts, 32) if settled.all() else \
            np.zeros((len(starts), 32), dtype=np.uint8)
        if not settled.all():
            chars[settled] = byte_matrix(*bytes_of(digits.filter(pa.array(settled)))[:2], 32)
        lower = chars | 0x20
        settled &= (((chars >= 48) & (chars <= 57)) | ((lower >= 97) & (lower <= 102))
                    ).all(axis=1)
        # '0'-'9' -> 0-9, 'a'-'f' and 'A'-'F' -> 10-15.
        nibbles = (chars & 0x0F) + 9 * (chars >> 6)
        raw[ok] = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
        ok[ok] = settled
    storage = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(texts), [None, pa.py_buffer(raw.tobytes())])
    storage = pc.if_else(pa.array(ok), storage, pa.scalar(None, pa.binary(16)))
    return pa.ExtensionArray.from_storage(pa.uuid(), storage), ok


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return b"\x00\x00\x00\x10" + value.bytes  # type: ignore[attr-defined]


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    storage = values.storage if isinstance(values, pa.ExtensionArray) else values
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[
        16 * storage.offset:16 * (storage.offset + len(storage))].reshape(-1, 16)
    return fixed(raw, ("u1", (16,)), 16, valid)


def decode(raw: bytes, type: ColumnType) -> uuid.UUID:  # noqa: A002
    return uuid.UUID(bytes=raw)


UUID = Family("uuid", ("uuid",), declare, parse, parse_column, encode, encode_column, decode,
              guesses=("uuid",))
