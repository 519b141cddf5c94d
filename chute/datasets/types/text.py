"""text: any text; `max_length` in characters ("is longer than N characters", as people).

Held as large_string in Arrow, and as its UTF-8 bytes in COPY. PostgreSQL cannot store a
NUL character, nor can UTF-8 hold a lone surrogate: both are rejected.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.arrays import NOTHING, binary, to_numpy, with_nulls
from chute.datasets.types.rules import ColumnType, Family, Invalid, Rules, quote

_LENGTH = struct.Struct(">i")


def declare(name: str) -> ColumnType | None:
    if name != "text":
        return None
    return ColumnType("text", "text", False, "string", None, "text", pa.large_string(), TEXT)


def parse(text: str, rules: Rules) -> str | Invalid:
    if rules.max_length is not None and len(text) > rules.max_length:
        return Invalid(f"is longer than {rules.max_length} characters")
    if "\x00" in text:
        return Invalid(f"{quote(text)} contains a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
            return Invalid(f"{quote(text)} is not valid Unicode")
    return text


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    ok = ~to_numpy(pc.match_substring(texts, "\x00"), True)
    if rules.max_length is not None:
        ok &= to_numpy(pc.utf8_length(texts), 0) <= rules.max_length
    return texts, ok


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    data = value.encode()  # type: ignore[attr-defined]
    return _LENGTH.pack(len(data)) + data


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    data = values.cast(pa.large_string()).cast(pa.large_binary())
    prefix = binary(to_numpy(pc.binary_length(data), 0).astype(">i4"))
    fields = pc.binary_join_element_wise(prefix, data, NOTHING)
    return with_nulls(fields, valid)


def decode(raw: bytes, type: ColumnType) -> str:  # noqa: A002
    return raw.decode()


TEXT = Family("text", ("text",), declare, parse, parse_column, encode, encode_column, decode)
