"""smallint, integer, bigint: two, four and eight bytes, signed.

They read [+-]digits, optionally followed by "." and zeros ("25.0", "25." are 25), leading
zeros allowed; an exponent is "not a whole number". Out of the type's limits or min/max:
'"x" is out of range LO..HI', the effective bounds. These are the reasons the built-in people
dataset gives for a bad age (a smallint 0..150), which its users rely on: keep them byte
for byte.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.arrays import any_true, fixed, shape, to_numpy
from chute.datasets.types.rules import ColumnType, Family, Invalid, Rules, quote, wrong_bound
from chute.errors import RuleDeclarationError

BYTE_WIDTHS = {"smallint": 2, "integer": 4, "bigint": 8}
_ARROW = {2: pa.int16(), 4: pa.int32(), 8: pa.int64()}
_DIGITS = {2: 5, 4: 10, 8: 19}  # enough for any value of the width
_FIELDS = {2: struct.Struct(">ih"), 4: struct.Struct(">ii"), 8: struct.Struct(">iq")}
_VALUES = {2: struct.Struct(">h"), 4: struct.Struct(">i"), 8: struct.Struct(">q")}


def declare(name: str) -> ColumnType | None:
    width = BYTE_WIDTHS.get(name)
    if width is None:
        return None
    bits = 8 * width - 1
    return ColumnType(name, name, True, "integer", None, "integer", _ARROW[width], INTEGER,
                      low=-(1 << bits), high=(1 << bits) - 1, byte_width=width)


_INTEGER = re.compile(r"([+-]?)([0-9]+)(?:\.0*)?")


def parse(text: str, rules: Rules) -> int | Invalid:
    match = _INTEGER.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a whole number")
    sign, digits = match.groups()
    digits = digits.lstrip("0") or "0"
    low, high = rules._low, rules._high
    # Compare lengths before int(): int() of a long digit string is slow and, past
    # sys.get_int_max_str_digits(), raises. 20 digits are beyond any bigint.
    if len(digits) < 20:
        value = -int(digits) if sign == "-" else int(digits)
        if low <= value <= high:  # type: ignore[operator]
            return value
    return Invalid(f"{quote(text)} is out of range {low}..{high}")


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    # Up to 19 digits (any bigint); those that may not fit an int64 are compared as text
    # before the cast, which would fail the whole array on one.
    digits = _DIGITS[rules.type.byte_width]  # type: ignore[index]
    ok = shape(texts, rf"^-?[0-9]{{1,{digits}}}(?:\.0*)?$")
    numbers = np.zeros(len(texts), dtype=np.int64)
    if ok.any():
        shaped = texts.filter(pa.array(ok))
        if any_true(pc.match_substring(shaped, ".")):
            shaped = pc.replace_substring_regex(shaped, r"\.0*$", "")
        if digits == 19:
            negative = pc.starts_with(shaped, "-")
            magnitude = pc.utf8_ltrim(shaped, "-")
            limit = pc.if_else(negative, "9223372036854775808", "9223372036854775807")
            fits = pc.or_(pc.less(pc.binary_length(magnitude), 19),
                          pc.less_equal(magnitude, limit))
            ok[ok] = to_numpy(fits, False)
            shaped = shaped.filter(fits)
        numbers[ok] = pc.cast(shaped, pa.int64()).to_numpy()
        ok &= (numbers >= rules._low) & (numbers <= rules._high)
    dtype = f"int{8 * rules.type.byte_width}"  # type: ignore[operator]
    return pa.array(numbers.astype(dtype), rules.type.arrow_type, mask=~ok), ok


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return _FIELDS[type.byte_width].pack(type.byte_width, value)  # type: ignore[index]


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    width = type.byte_width
    return fixed(to_numpy(values, 0), f">i{width}", width, valid)  # type: ignore[arg-type]


def decode(raw: bytes, type: ColumnType) -> int:  # noqa: A002
    return _VALUES[type.byte_width].unpack(raw)[0]  # type: ignore[index]


def bound(rule: str, value: object, base: Rules) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise wrong_bound(rule, value, base)
    if not base.type.low <= value <= base.type.high:  # type: ignore[operator]
        raise RuleDeclarationError(f"{rule}: {value} is out of range "
                                   f"{base.type.low}..{base.type.high}")
    return value


INTEGER = Family("integer", tuple(BYTE_WIDTHS), declare, parse, parse_column, encode,
                 encode_column, decode, bound=bound, guesses=("integer", "bigint"))
