"""double: an IEEE 754 double, PostgreSQL's double precision.

It reads numeric's syntax (numeric.NUMBER) with float(), which rounds correctly. NaN and
Infinity (any spelling: list them in the column's nulls if the data writes them) are "not a
finite number"; a value that overflows to infinity or underflows to zero (a nonzero
mantissa that reads as 0.0) is "out of range for double".
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types import numeric
from chute.datasets.types.arrays import fixed, shape, to_numpy
from chute.datasets.types.numeric import NUMBER, not_a_number
from chute.datasets.types.rules import ColumnType, Family, Invalid, Rules, in_bounds, quote

_FIELD = struct.Struct(">id")
_VALUE = struct.Struct(">d")
_INF = float("inf")
_NONZERO_MANTISSA = re.compile(r"[^eE]*[1-9]")


def declare(name: str) -> ColumnType | None:
    if name != "double":
        return None
    return ColumnType("double", "double precision", True, "number", None, "double",
                      pa.float64(), DOUBLE)


def parse(text: str, rules: Rules) -> float | Invalid:
    match = NUMBER.fullmatch(text)
    if match is None:
        return not_a_number(text)
    value = float(text)
    if value in (_INF, -_INF) or (value == 0.0 and _NONZERO_MANTISSA.match(text)):
        return Invalid(f"{quote(text)} is out of range for double")
    return in_bounds(text, value, rules)


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    ok = shape(texts, r"^-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?$")
    numbers = np.zeros(len(texts), dtype=np.float64)
    if ok.any():
        numbers[ok] = pc.cast(texts.filter(pa.array(ok)), pa.float64()).to_numpy()
        ok &= np.isfinite(numbers)
        zero = ok & (numbers == 0)
        if zero.any():  # a zero is settled only if written as one ("0.0e5", not "1e-400")
            zero[zero] = ~to_numpy(pc.match_substring_regex(texts.filter(pa.array(zero)),
                                                            "^[^eE]*[1-9]"), True)
            ok &= (numbers != 0) | zero
        ok &= _bounds_ok(numbers, rules._low, rules._high)
    return pa.array(numbers, pa.float64(), mask=~ok), ok


def _bounds_ok(numbers: np.ndarray, low: object, high: object) -> np.ndarray:
    ok = np.ones(len(numbers), dtype=bool)
    if low is not None:
        ok &= numbers >= low
    if high is not None:
        ok &= numbers <= high
    return ok


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return _FIELD.pack(8, value)


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    return fixed(to_numpy(values, 0.0), ">f8", 8, valid)


def decode(raw: bytes, type: ColumnType) -> float:  # noqa: A002
    return _VALUE.unpack(raw)[0]


DOUBLE = Family("double", ("double",), declare, parse, parse_column, encode, encode_column,
                decode, bound=numeric.bound, guesses=("double",))
