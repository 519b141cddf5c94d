"""numeric and numeric(p,s): exact decimals, as PostgreSQL's numeric.

They read [+-]digits[.digits] or [+-].digits, optional exponent e[+-]digits; numeric(p,s)
rounds half away from zero to s decimals as PostgreSQL does, '"x" does not fit
numeric(p,s)' when the integer part needs more than p-s digits. Plain numeric keeps the
scale written ("1.50" stays 1.50; "1.5e3" is 1500), up to 100000 digits before the point
and 16383 after. Exponents beyond 6 digits are "out of range for numeric". Value: Decimal;
zero is never negative. In Arrow, numeric(p,s) up to p = 38 is a decimal128, anything else
is held as text (Decimal(text) is the value).
"""

from __future__ import annotations

import re
import struct
from decimal import ROUND_HALF_UP, Decimal, localcontext

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.arrays import BYTES, NULL, shape, to_numpy
from chute.datasets.types.rules import (
    ColumnType,
    Family,
    Invalid,
    Rules,
    in_bounds,
    parsed_bound,
    quote,
    wrong_bound,
)
from chute.errors import TypeDeclarationError

_DECLARED = re.compile(r"numeric\s*\(\s*([0-9]+)\s*(?:,\s*(-?[0-9]+)\s*)?\)")
NUMERIC_MAX_PRECISION = 1000  # PostgreSQL's limit for numeric(p,s)
_DECIMAL128_MAX = 38  # beyond it, numeric values travel as text in Arrow
_PLAIN = r"^-?[0-9]+(?:\.[0-9]+)?$"  # the text-held values parse_column settles


def declare(name: str) -> ColumnType | None:
    if name == "numeric":
        return ColumnType("numeric", "numeric", True, "string", "decimal", "numeric",
                          pa.large_string(), NUMERIC)
    match = _DECLARED.fullmatch(name)
    if match is None:
        return None
    precision, scale = int(match[1]), int(match[2] or 0)
    if not 1 <= precision <= NUMERIC_MAX_PRECISION:
        raise TypeDeclarationError(
            f"{name}: precision must be 1..{NUMERIC_MAX_PRECISION}, not {precision}")
    if not 0 <= scale <= precision:
        raise TypeDeclarationError(f"{name}: scale must be 0..{precision}, not {scale}")
    arrow = (pa.decimal128(precision, scale) if precision <= _DECIMAL128_MAX
             else pa.large_string())
    return ColumnType(name, f"numeric({precision},{scale})", True, "string", "decimal",
                      "numeric", arrow, NUMERIC, precision=precision, scale=scale)


# The syntax of numeric and double.
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?)([0-9]+))?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_EXPONENT_DIGITS = 6
_NUMERIC_INTEGER_DIGITS = 100_000  # within PostgreSQL's 131072 and an int16 digit count
_NUMERIC_SCALE_MAX = 16_383


def not_a_number(text: str) -> Invalid:
    """The reason for a text that is not in NUMBER's syntax."""
    if _NOT_FINITE.fullmatch(text):
        return Invalid(f"{quote(text)} is not a finite number")
    return Invalid(f"{quote(text)} is not a number")


def parse(text: str, rules: Rules) -> Decimal | Invalid:
    match = NUMBER.fullmatch(text)
    if match is None:
        return not_a_number(text)
    if match[2] is not None and len(match[2].lstrip("0")) > _EXPONENT_DIGITS:
        return Invalid(f"{quote(text)} is out of range for numeric")
    value = Decimal(text)
    kind = rules.type
    if kind.scale is not None:
        precision, scale = kind.precision, kind.scale
        if value.is_zero():
            value = Decimal((0, (0,), -scale))
        else:
            # |value| >= 10**adjusted: too big whatever the rounding.
            if value.adjusted() >= precision - scale:  # type: ignore[operator]
                return Invalid(f"{quote(text)} does not fit {kind.pg_type}")
            with localcontext(prec=precision + 2, rounding=ROUND_HALF_UP):  # type: ignore[operator]
                value = value.quantize(Decimal((0, (1,), -scale)))
            if not value.is_zero() and value.adjusted() >= precision - scale:  # type: ignore[operator]
                return Invalid(f"{quote(text)} does not fit {kind.pg_type}")
    else:
        sign, digits, exponent = value.as_tuple()
        if (not value.is_zero() and value.adjusted() >= _NUMERIC_INTEGER_DIGITS) \
                or -exponent > _NUMERIC_SCALE_MAX:  # type: ignore[operator]
            return Invalid(f"{quote(text)} is out of range for numeric")
        if exponent > 0:  # type: ignore[operator]
            # "1.5e3" is 1500, held as PostgreSQL holds it (scale 0), not as 1.5E+3.
            value = Decimal((sign, digits + (0,) * exponent, 0))  # type: ignore[operator]
    if value.is_zero():
        value = value.copy_abs()  # PostgreSQL has no negative zero
    return in_bounds(text, value, rules)


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    kind = rules.type
    arrow = kind.arrow_type
    if kind.scale is None or kind.precision > _DECIMAL128_MAX:  # type: ignore[operator]
        # Held as text (Decimal(text) is the value): canonical, short spellings only.
        ok = shape(texts, _PLAIN) & (to_numpy(pc.binary_length(texts), 0)
                                                         <= 1000)
        if kind.scale is not None:
            whole = kind.precision - kind.scale  # type: ignore[operator]
            ok &= shape(texts, _decimal_shape(whole, kind.scale))
        if ok.any() and (rules._low is not None or rules._high is not None):
            # Rare: a plain numeric with min/max; compared one by one.
            at = np.flatnonzero(ok)
            for i, text in zip(at, texts.take(pa.array(at)).to_pylist(), strict=True):
                ok[i] = not isinstance(in_bounds(text, Decimal(text), rules), Invalid)
        return pc.if_else(pa.array(ok), texts, pa.scalar(None, arrow)), ok
    whole = kind.precision - kind.scale  # type: ignore[operator]
    ok = shape(texts, _decimal_shape(whole, kind.scale))
    if not ok.any():
        return pa.nulls(len(texts), arrow), ok
    numbers = pc.cast(pc.if_else(pa.array(ok), texts, "0"), arrow)
    if rules._low is not None:
        ok &= to_numpy(pc.greater_equal(numbers, pa.scalar(rules._low, arrow)), False)
    if rules._high is not None:
        ok &= to_numpy(pc.less_equal(numbers, pa.scalar(rules._high, arrow)), False)
    return pc.if_else(pa.array(ok), numbers, pa.scalar(None, arrow)), ok


def _decimal_shape(whole: int, scale: int) -> str:
    """A decimal that fits numeric(p,s) and needs no rounding, without leading zeros."""
    integer = "0" if whole == 0 else f"(?:0|[1-9][0-9]{{0,{whole - 1}}})"
    fraction = f"(?:\\.[0-9]{{1,{scale}}})?" if scale else ""
    return f"^-?{integer}{fraction}$"


_NUMERIC_NEGATIVE = 0x4000


def encode(value: object, type: ColumnType) -> bytes:  # noqa: A002
    """PostgreSQL's binary numeric: digit count, weight (of the first base-10000 digit),
    sign, display scale, then the base-10000 digits without leading or trailing zeros, as
    numeric_send writes them."""
    sign, digits, exponent = value.as_tuple()  # type: ignore[attr-defined]
    scale = max(0, -exponent)
    text = "".join(map(str, digits))
    if exponent > 0:
        text += "0" * exponent
    text += "0" * (-scale % 4)  # the fraction in whole groups of four
    fraction = scale + (-scale % 4)
    text = text.rjust(fraction, "0")
    whole = len(text) - fraction
    text = "0" * (-whole % 4) + text
    groups = [int(text[i:i + 4]) for i in range(0, len(text), 4)]
    weight = (whole + (-whole % 4)) // 4 - 1
    nonzero = [i for i, group in enumerate(groups) if group]
    if not nonzero:
        return struct.pack(">ihhHh", 8, 0, 0, 0, scale)
    groups = groups[nonzero[0]:nonzero[-1] + 1]
    count = len(groups)
    return struct.pack(f">ihhHh{count}h", 8 + 2 * count, count, weight - nonzero[0],
                       _NUMERIC_NEGATIVE if sign else 0, scale, *groups)


def encode_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                  ) -> pa.Array:
    if pa.types.is_decimal(values.type) and type.precision <= 18:  # type: ignore[operator]
        return _numeric_column(values, type.precision, type.scale, valid)  # type: ignore[arg-type]
    if not pa.types.is_decimal(values.type):
        lengths = to_numpy(pc.binary_length(values), 0)
        # parse_column lets through only these; str(Decimal) may also write "1E-7".
        plain = shape(values, _PLAIN) | ~valid
        if plain.all() and (not valid.any() or int(lengths[valid].max()) <= _TEXT_COLUMN_DIGITS):
            return _text_column(values, type.scale, valid)
    fields = []
    for element in values.to_pylist():
        number = _decimal(element, type)
        fields.append(NULL if number is None else encode(number, type))
    return pa.array(fields, pa.large_binary())


def _decimal(value: object, type: ColumnType) -> Decimal | None:  # noqa: A002
    """A numeric column's element as the Decimal parse() gives: text-held values are
    rounded to the scale, and zero is never negative."""
    if value is None or isinstance(value, Decimal) and type.scale is None:
        return value
    number = Decimal(value)  # type: ignore[arg-type]
    if type.scale is not None:
        with localcontext(prec=type.precision + 2, rounding=ROUND_HALF_UP):  # type: ignore[operator]
            number = number.quantize(Decimal((0, (1,), -type.scale)))
    return number.copy_abs() if number.is_zero() else number


# Text-held values (plain numeric, numeric(p,s) beyond decimal128) up to this long are
# encoded a column at a time; longer ones, rare, one at a time.
_TEXT_COLUMN_DIGITS = 80


def _text_column(values: pa.Array, scale: int | None, valid: np.ndarray
                 ) -> pa.LargeBinaryArray:
    """encode() for canonical decimal texts (parse_column let only -?digits[.digits]
    through): the digits are padded to whole groups of four on both sides of the point
    and read as base-10000 digits in numpy. The display scale is the digits written after
    the point (plain numeric) or the declared scale."""
    count = len(values)
    if not count:
        return pa.array([], BYTES)
    texts = pc.if_else(pa.array(valid), values, "0")
    negative = to_numpy(pc.starts_with(texts, "-"), False)
    parts = pc.split_pattern(pc.utf8_ltrim(texts, "-"), ".", max_splits=1)
    whole = pc.list_element(parts, 0)
    has_fraction = pc.equal(pc.list_value_length(parts), 2)
    padded = pc.if_else(has_fraction, parts, pa.scalar(["0", ""], parts.type))
    fraction = pc.list_element(padded, 1)
    whole_width = _groups_of_four(int(pc.max(pc.utf8_length(whole)).as_py()))
    fraction_width = _groups_of_four(int(pc.max(pc.utf8_length(fraction)).as_py() or 0))
    digits = pc.binary_join_element_wise(
        pc.utf8_lpad(whole, whole_width, "0"),
        pc.utf8_rpad(fraction, fraction_width, "0") if fraction_width
        else pa.scalar("", pa.large_string()), pa.scalar("", pa.large_string()))
    width = whole_width + fraction_width
    matrix = np.frombuffer(digits.buffers()[2], dtype=np.uint8)[
        _first_offset(digits):_first_offset(digits) + count * width].reshape(count, width)
    groups = (matrix.reshape(count, width // 4, 4).astype(np.int64) - 48) @ np.array(
        [1000, 100, 10, 1], dtype=np.int64)
    dscale = (to_numpy(pc.utf8_length(fraction), 0) if scale is None
              else np.full(count, scale))
    return _assemble(groups, whole_width // 4, negative, dscale, valid)


def _groups_of_four(digits: int) -> int:
    return -(-digits // 4) * 4


def _first_offset(array: pa.Array) -> int:
    return int(np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset])


def _numeric_column(values: pa.Array, precision: int, scale: int, valid: np.ndarray
                    ) -> pa.LargeBinaryArray:
    """encode() for numeric(p,s) with p <= 18, whose values are int64s scaled by 10**s:
    the base-10000 digits are split off in numpy."""
    count = len(values)
    words = np.frombuffer(values.buffers()[1], dtype="<i8")[
        2 * values.offset:2 * (values.offset + count)]
    scaled = np.where(valid, words[0::2], 0)  # the low word holds all of |v| < 10**18
    negative = scaled < 0
    magnitude = np.abs(scaled)
    whole, fraction = np.divmod(magnitude, 10 ** scale)
    whole_groups = -(-(precision - scale) // 4)
    fraction_groups = -(-scale // 4)
    width = whole_groups + fraction_groups
    groups = np.zeros((count, max(width, 1)), dtype=np.int64)
    for j in range(whole_groups):
        groups[:, whole_groups - 1 - j] = whole // 10 ** (4 * j) % 10_000
    for k in range(fraction_groups):
        rest = scale - 4 * (k + 1)
        groups[:, whole_groups + k] = (fraction // 10 ** rest % 10_000 if rest >= 0
                                       else fraction % 10 ** (scale - 4 * k) * 10 ** -rest)
    return _assemble(groups, whole_groups, negative, np.full(count, scale), valid)


def _assemble(groups: np.ndarray, whole_groups: int, negative: np.ndarray,
              dscale: np.ndarray, valid: np.ndarray) -> pa.LargeBinaryArray:
    """Binary numeric fields from each row's base-10000 digits (`whole_groups` of them
    before the point): each row's used ones kept, first to last non-zero."""
    count = len(groups)
    nonzero = groups != 0
    used = nonzero.any(axis=1)
    first = np.argmax(nonzero, axis=1)
    last = groups.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    digits = np.where(used, last - first + 1, 0)
    head = np.empty(count, dtype=[("length", ">i4"), ("ndigits", ">i2"), ("weight", ">i2"),
                                  ("sign", ">u2"), ("dscale", ">i2")])
    head["length"] = np.where(valid, 8 + 2 * digits, -1)
    head["ndigits"] = digits
    head["weight"] = np.where(used, whole_groups - 1 - first, 0)
    head["sign"] = np.where(negative & used, _NUMERIC_NEGATIVE, 0)
    head["dscale"] = dscale
    rows = np.hstack((head.view(np.uint8).reshape(count, 12),
                      groups.astype(">i2").view(np.uint8).reshape(count, 2 * groups.shape[1])))
    # Keep the head (only the -1 length for a null) and the digits first..last.
    group = np.concatenate((np.full(12, -1), np.repeat(np.arange(groups.shape[1]), 2)))
    keep = (group < 0) | ((group >= first[:, None]) & (group <= last[:, None]) & used[:, None])
    keep[~valid, 4:] = False
    sizes = np.where(valid, 12 + 2 * digits, 4)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return pa.LargeBinaryArray.from_buffers(
        BYTES, count, [None, pa.py_buffer(offsets), pa.py_buffer(rows[keep].tobytes())])


def decode(raw: bytes, type: ColumnType) -> bytes:  # noqa: A002
    """The field's bytes as they are: tools compare numeric's binary form, not a value."""
    return raw


def bound(rule: str, value: object, base: Rules) -> object:
    """A TOML number as a min or max of a numeric or double column, read as data is."""
    if not isinstance(value, int | float):
        raise wrong_bound(rule, value, base)
    return parsed_bound(rule, repr(value) if isinstance(value, float) else str(value), base)


NUMERIC = Family("numeric", ("numeric",), declare, parse, parse_column, encode,
                 encode_column, decode, bound=bound, guesses=("numeric",), sized=("numeric(p,s)",))
