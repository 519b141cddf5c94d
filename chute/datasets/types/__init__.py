"""Declared column types: a cleaned text -> a typed value -> PostgreSQL's binary COPY bytes.

Each family of types owns, in one module, how it is declared, its row parser (parse: one
value, the reference) and its columnar one (parse_column: a whole Arrow array with Arrow
compute and numpy), its binary COPY encoding (encode, encode_column) and decoding, and
what `chute infer` guesses for it: integer.py (smallint, integer, bigint), numeric.py,
double.py, boolean.py, temporal.py (date, timestamp, timestamptz), clock.py (time), uuid.py
and text.py.
FAMILIES below is the one list of them, in the order an unknown type's error names them
and `chute infer` tries them; rules.py holds what they share (the rules, the row parse and
its reasons), arrays.py the columnar plumbing. A new type is a module with its Family, a
line in FAMILIES, and its tests.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa

from chute.datasets.types import (
    boolean,
    clock,
    double,
    integer,
    numeric,
    temporal,
    text,
    uuid,
)
from chute.datasets.types.arrays import NULL, parse_column
from chute.datasets.types.numeric import NUMERIC_MAX_PRECISION
from chute.datasets.types.rules import (
    REASON_VALUE_LIMIT,
    ColumnType,
    Family,
    Invalid,
    Rules,
    make_rules,
    parse,
    quote,
    to_python_param,
)
from chute.errors import RuleDeclarationError, TypeDeclarationError

__all__ = [
    "FAMILIES", "NULL", "NUMERIC_MAX_PRECISION", "REASON_VALUE_LIMIT", "ColumnType",
    "Family", "Invalid", "Rules", "RuleDeclarationError", "TypeDeclarationError",
    "column_type", "decode", "encode", "encode_column", "make_rules", "parse",
    "parse_column", "quote", "to_python_param",
]

FAMILIES: tuple[Family, ...] = (
    integer.INTEGER, text.TEXT, numeric.NUMERIC, double.DOUBLE, boolean.BOOLEAN,
    temporal.DATE, temporal.TIMESTAMP, temporal.TIMESTAMPTZ, clock.TIME, uuid.UUID,
)


@cache
def column_type(declared: str) -> ColumnType:
    """The type a declaration names: one of the families' names, or numeric(p) /
    numeric(p,s)."""
    name = declared.strip()
    for family in FAMILIES:
        found = family.declare(name)
        if found is not None:
            return found
    raise TypeDeclarationError(
        f"unknown type {quote(name)}; expected one of "
        + ", ".join([*(n for f in FAMILIES for n in f.names),
                     *(s for f in FAMILIES for s in f.sized)]))


def encode(value: object | None, type: ColumnType) -> bytes:  # noqa: A002
    """One binary COPY field: an int32 length and PostgreSQL's binary form, or -1 for
    NULL. value is what parse() returns for the type."""
    if value is None:
        return NULL
    return type.family.encode(value, type)


def encode_column(values: pa.Array, type: ColumnType) -> pa.LargeBinaryArray:  # noqa: A002
    """encode() for every element (a null is the -1 length), as one Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    valid: np.ndarray = values.is_valid().to_numpy(zero_copy_only=False)
    return type.family.encode_column(values, type, valid)


def decode(raw: bytes, type: ColumnType) -> object:  # noqa: A002
    """A binary COPY field's bytes (without its length; not NULL) as a Python value, for
    tests and tools: parse()'s value, but numeric's raw bytes and timestamptz in UTC."""
    return type.family.decode(raw, type)
