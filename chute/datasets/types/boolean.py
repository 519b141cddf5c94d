"""boolean: true/false, t/f, yes/no, y/n, 1/0, in any (ASCII) case."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.arrays import fixed, to_numpy
from chute.datasets.types.rules import ColumnType, Family, Invalid, Rules, quote

_BOOLEANS = {"true": True, "t": True, "yes": True, "y": True, "1": True,
             "false": False, "f": False, "no": False, "n": False, "0": False}
_TRUE = pa.array([k for k, v in _BOOLEANS.items() if v], pa.large_string())
_FALSE = pa.array([k for k, v in _BOOLEANS.items() if not v], pa.large_string())


def declare(name: str) -> ColumnType | None:
    if name != "boolean":
        return None
    return ColumnType("boolean", "boolean", False, "boolean", None, "boolean", pa.bool_(),
                      BOOLEAN)


def parse(text: str, rules: Rules) -> bool | Invalid:
    value = _BOOLEANS.get(text.lower()) if text.isascii() else None
    if value is None:
        return Invalid(f"{quote(text)} is not a boolean (true/false, yes/no, 1/0)")
    return value


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    lower = pc.ascii_lower(texts)
    true = to_numpy(pc.is_in(lower, value_set=_TRUE), False)
    false = to_numpy(pc.is_in(lower, value_set=_FALSE), False)
    ok = true | false
    return pa.array(true, pa.bool_(), mask=~ok), ok


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    return fixed(to_numpy(values, False).astype(np.uint8), "u1", 1, valid)


def decode(raw: bytes, type: ColumnType) -> bool:  # noqa: A002
    return raw == b"\x01"


def unlikely(values: list[str]) -> bool:
    """A column of 0 and 1 is a number more often than a flag."""
    return set(v.lower() for v in values) <= {"0", "1"}


BOOLEAN = Family("boolean", ("boolean",), declare, parse, parse_column, encode,
                 encode_column, decode, guesses=("boolean",), unlikely=unlikely)
