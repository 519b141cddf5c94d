"""time: a time of day without a date or zone (PostgreSQL's `time`), in microseconds.

- Read as H:MM or HH:MM[:SS[.1-6 digits]], hours 0..23, minutes and seconds 0..59 (no
  leap second), or with a `format` of time directives only (%H %I %M %S %f %p %X).
- 24:00 is refused: PostgreSQL stores it, but it is no time of day in Python, and a
  supplier who writes it means either midnight; the reason says so rather than guess.
- min/max: "08:00" or a TOML local time (08:00:00).
In Arrow: time64("us"); in COPY: an int64 of microseconds since midnight.
"""

from __future__ import annotations

import re
import struct
from datetime import time
from functools import partial

import numpy as np
import pyarrow as pa

from chute.datasets.types.arrays import by_length, digits_at, fixed, shape, to_numpy
from chute.datasets.types.rules import (
    ColumnType,
    Family,
    Invalid,
    Rules,
    in_bounds,
    quote,
    wrong_bound,
)
from chute.datasets.types.temporal import check_format, read_format

_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?")
_US_PER_SECOND = 1_000_000
# The canonical spellings the columnar path reads itself; anything else goes row by row.
_CANONICAL = r"^[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?$"
_INT64_FIELD = struct.Struct(">iq")
_INT64 = struct.Struct(">q")


def declare(name: str) -> ColumnType | None:
    if name != "time":
        return None
    return ColumnType("time", "time without time zone", True, "string", None, "time",
                      pa.time64("us"), TIME)


def parse(text: str, rules: Rules) -> time | Invalid:
    if rules.format is not None:
        value = read_format(text, rules)
        return value if isinstance(value, Invalid) else in_bounds(text, value.time(), rules)
    match = _TIME.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a time (HH:MM:SS)")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    micro = int((match[4] or "").ljust(6, "0"))
    if hour == 24 and minute == second == micro == 0:
        return Invalid(f"{quote(text)} is not a time of day (write 00:00 or 23:59:59)")
    if hour > 23 or minute > 59 or second > 59:
        return Invalid(f"{quote(text)} is not a valid time")
    return in_bounds(text, time(hour, minute, second, micro), rules)


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    """HH:MM, HH:MM:SS and HH:MM:SS.f: each length of text has its fields at fixed
    places, so each length is read as one matrix. A `format` settles nothing here."""
    count = len(texts)
    micros = np.zeros(count, dtype=np.int64)
    ok = np.zeros(count, dtype=bool) if rules.format is not None else shape(texts, _CANONICAL)
    for rows, matrix in by_length(texts, ok):
        length = matrix.shape[1]
        hour, minute = digits_at(matrix, 0, 2), digits_at(matrix, 3, 2)
        second = digits_at(matrix, 6, 2) if length >= 8 else 0
        micro = digits_at(matrix, 9, length - 9) * 10 ** (15 - length) if length >= 10 else 0
        ok[rows] = (hour <= 23) & (minute <= 59) & (second <= 59)
        micros[rows] = ((hour * 60 + minute) * 60 + second) * _US_PER_SECOND + micro
    if rules._low is not None:
        ok &= micros >= _micros(rules._low)  # type: ignore[arg-type]
    if rules._high is not None:
        ok &= micros <= _micros(rules._high)  # type: ignore[arg-type]
    return pa.array(micros, pa.int64(), mask=~ok).view(pa.time64("us")), ok


def _micros(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * _US_PER_SECOND \
        + value.microsecond


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return _INT64_FIELD.pack(8, _micros(value))  # type: ignore[arg-type]


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    return fixed(to_numpy(values.view(pa.int64()), 0), ">i8", 8, valid)


def decode(raw: bytes, type: ColumnType) -> time:  # noqa: A002
    seconds, micro = divmod(_INT64.unpack(raw)[0], _US_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    return time(minutes // 60, minutes % 60, second, micro)


def bound(rule: str, value: object, base: Rules) -> object:
    """TOML gives a local time (08:30:00) without a zone."""
    if isinstance(value, time) and value.tzinfo is None:
        return value
    raise wrong_bound(rule, value, base)


TIME = Family("time", ("time",), declare, parse, parse_column, encode, encode_column, decode,
              bound=bound, check_format=partial(check_format, kind="time"),
              guesses=("time",), query_pattern="^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$")
