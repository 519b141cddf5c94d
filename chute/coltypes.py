"""Declared column types: a cleaned text -> a typed value -> PostgreSQL's binary COPY bytes.

Each type owns, side by side, a row function (parse, encode: one value) and a columnar one
(parse_column, encode_column: a whole Arrow array with Arrow compute and numpy, no Python
loop for the common case). The row functions are the reference: where parse_column settles
a value it equals parse()'s, and encode_column's bytes equal encode()'s; the columnar ones
only settle the common, canonical spellings and leave everything else (awkward or invalid)
unsettled for the caller to send through parse(), which decides and gives the reason.

The texts given to parse are already cleaned by the caller (trimmed, whitespace runs
collapsed, not a null marker). Before the type is parsed, `values` (the allowed texts) and
`pattern` (re.fullmatch on the cleaned text) are checked, for any type; `max_length`
(characters) is for text only, `min`/`max` for ordered types (numbers, dates, times) only,
and are compared with the typed value. A reason is the text after "<column>: ", quoting the
value as the people rejects do (JSON, cut at 40 characters), and is byte-identical to
cleaning's for people's age: '"-5" is out of range 0..150', '"x" is not a whole number'.
An empty text "is empty"; a text with a NUL character (which PostgreSQL cannot store)
"contains a NUL character".

What each type reads (ASCII digits only everywhere):
- smallint, integer, bigint: [+-]digits, optionally followed by "." and zeros ("25.0",
  "25." are 25), leading zeros allowed; an exponent is "not a whole number". Out of the
  type's limits or min/max: '"x" is out of range LO..HI', the effective bounds.
- numeric(p,s): [+-]digits[.digits] or [+-].digits, optional exponent e[+-]digits; rounded
  half away from zero to s decimals as PostgreSQL does, '"x" does not fit numeric(p,s)'
  when the integer part needs more than p-s digits. Plain numeric keeps the scale written
  ("1.50" stays 1.50; "1.5e3" is 1500), up to 100000 digits before the point and 16383
  after. Exponents beyond 6 digits are "out of range for numeric". Value: Decimal; zero is
  never negative.
- double: the numeric syntax above, read with float() (correctly rounded). NaN and
  Infinity (any spelling: list them in the column's nulls if the data writes them) are
  "not a finite number"; a value that overflows to infinity or underflows to zero (a
  nonzero mantissa that reads as 0.0) is "out of range for double".
- boolean: true/false, t/f, yes/no, y/n, 1/0, in any (ASCII) case.
- date: YYYY-MM-DD (years 1..9999, real days only), or `format` (strptime, ASCII texts).
- timestamp: YYYY-MM-DD, YYYY-MM-DD[T or space]HH:MM[:SS[.1-6 digits]]; a date alone is
  midnight; 24:00[:00[.0]] is the next day's midnight (as PostgreSQL reads it); seconds
  are 0..59 (no leap second). A UTC offset is refused (declare the column timestamptz).
- timestamptz: as timestamp, plus an optional offset Z, +HH, +HHMM or +HH:MM (up to
  15:59, as PostgreSQL). Without an offset the time is read in `timezone` (a zoneinfo
  name) with fold=0, which is also PostgreSQL's rule: a repeated hour reads as its first
  occurrence, a time in a DST gap with the offset in force before the gap (02:30 in New
  York's spring gap is 07:30 UTC). Value: an aware datetime in UTC.
  With `format`, %z reads the offset; no other directive gives one.
- uuid: 32 hex digits, any case, optionally in braces, with an optional hyphen after any
  group of four (PostgreSQL's uuid_in). Value: uuid.UUID.
- text: any text; `max_length` in characters ("is longer than N characters", as people).
Out-of-range dates and times (beyond 0001-01-01..9999-12-31, also after applying an
offset) are "out of range for <type>".
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REASON_VALUE_LIMIT = 40  # a reject reason quotes the bad value; keep reasons one readable line


def quote(value: str) -> str:
    """Quote a value for a reason: escaped so quotes and line breaks cannot garble it."""
    if len(value) > REASON_VALUE_LIMIT:
        value = value[:REASON_VALUE_LIMIT] + "…"
    return json.dumps(value, ensure_ascii=False)

__all__ = [
    "ColumnType", "Invalid", "Rules", "RuleDeclarationError", "TypeDeclarationError",
    "column_type", "encode", "encode_column", "make_rules", "parse", "parse_column",
    "quote", "to_python_param",
]


class TypeDeclarationError(ValueError):
    """A declared type that is not one of ours; str(e) is one line."""


class RuleDeclarationError(ValueError):
    """A rule that cannot apply to its column; str(e) names the rule."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a text is not a value of its column (the reason after "<column>: ")."""

    reason: str


@dataclass(frozen=True)
class ColumnType:
    """One declared type: its PostgreSQL and JSON names and how its values are held."""

    name: str  # as declared
    pg_type: str  # as format_type() shows it
    ordered: bool  # min/max rules and min_/max_ filters apply
    json_kind: str  # "integer", "number", "string" or "boolean"
    json_format: str | None  # "date", "date-time", "uuid", "decimal" or None
    kind: str  # the family that parses and encodes it (e.g. "integer" for smallint)
    arrow_type: pa.DataType = field(compare=False)  # of parse_column's values
    low: int | None = None  # integer types: the type's limits
    high: int | None = None
    precision: int | None = None  # numeric(p,s)
    scale: int | None = None


_INT_LIMITS = {"smallint": 2, "integer": 4, "bigint": 8}
_SIMPLE = {
    # name: (pg_type, ordered, json_kind, json_format, kind, arrow type)
    "text": ("text", False, "string", None, "text", pa.large_string()),
    "numeric": ("numeric", True, "string", "decimal", "numeric", pa.large_string()),
    "double": ("double precision", True, "number", None, "double", pa.float64()),
    "boolean": ("boolean", False, "boolean", None, "boolean", pa.bool_()),
    "date": ("date", True, "string", "date", "date", pa.date32()),
    "timestamp": ("timestamp without time zone", True, "string", "date-time", "timestamp",
                  pa.timestamp("us")),
    "timestamptz": ("timestamp with time zone", True, "string", "date-time", "timestamptz",
                    pa.timestamp("us", tz="UTC")),
    "uuid": ("uuid", False, "string", "uuid", "uuid", pa.uuid()),
}
_NUMERIC_DECLARED = re.compile(r"numeric\s*\(\s*([0-9]+)\s*(?:,\s*(-?[0-9]+)\s*)?\)")
NUMERIC_MAX_PRECISION = 1000  # PostgreSQL's limit for numeric(p,s)
_DECIMAL128_MAX = 38  # beyond it, numeric values travel as text in Arrow


@cache
def column_type(declared: str) -> ColumnType:
    """The type a declaration names: one of the names above, or numeric(p) / numeric(p,s)."""
    name = declared.strip()
    if name in _INT_LIMITS:
        size = _INT_LIMITS[name]
        bits = 8 * size - 1
        return ColumnType(name, name, True, "integer", None, "integer",
                          pa.int16() if size == 2 else pa.int32() if size == 4 else pa.int64(),
                          low=-(1 << bits), high=(1 << bits) - 1, precision=size)
    if name in _SIMPLE:
        return ColumnType(name, *_SIMPLE[name])
    match = _NUMERIC_DECLARED.fullmatch(name)
    if match is None:
        raise TypeDeclarationError(
            f"unknown type {quote(name)}; expected one of "
            + ", ".join([*_INT_LIMITS, *_SIMPLE, "numeric(p,s)"]))
    precision, scale = int(match[1]), int(match[2] or 0)
    if not 1 <= precision <= NUMERIC_MAX_PRECISION:
        raise TypeDeclarationError(
            f"{name}: precision must be 1..{NUMERIC_MAX_PRECISION}, not {precision}")
    if not 0 <= scale <= precision:
        raise TypeDeclarationError(f"{name}: scale must be 0..{precision}, not {scale}")
    arrow = (pa.decimal128(precision, scale) if precision <= _DECIMAL128_MAX
             else pa.large_string())
    return ColumnType(name, f"numeric({precision},{scale})", True, "string", "decimal",
                      "numeric", arrow, precision=precision, scale=scale)


@dataclass(frozen=True)
class Rules:
    """Everything that decides whether a cleaned text is a valid value of a column.

    Build with make_rules(), which converts and checks the declaration; Rules(type) alone
    is a column with no rules. min/max are values of the type (int, Decimal, float, date,
    naive datetime, or aware datetime for timestamptz).
    """

    type: ColumnType
    min: object | None = None
    max: object | None = None
    max_length: int | None = None
    values: tuple[str, ...] | None = None
    pattern: str | None = None
    format: str | None = None
    timezone: str = "UTC"
    # Derived once, for parse and parse_column.
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _allowed: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo | None = field(init=False, repr=False, compare=False)
    _low: object | None = field(init=False, repr=False, compare=False)
    _high: object | None = field(init=False, repr=False, compare=False)
    _template: _Template | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        try:
            compiled = None if self.pattern is None else re.compile(self.pattern)
        except re.error as e:
            raise RuleDeclarationError(f"pattern: {quote(self.pattern)} is not a regular "
                                       f"expression: {e}") from None
        put(self, "_compiled", compiled)
        put(self, "_allowed", None if self.values is None else frozenset(self.values))
        zone = None
        if self.type.kind == "timestamptz" and self.timezone != "UTC":
            try:
                zone = ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise RuleDeclarationError(
                    f"timezone: {quote(self.timezone)} is not a known time zone") from None
        put(self, "_zone", zone)
        low, high = self.min, self.max
        if self.type.kind == "integer":
            low = self.type.low if low is None else max(low, self.type.low)
            high = self.type.high if high is None else min(high, self.type.high)
        put(self, "_low", low)
        put(self, "_high", high)
        put(self, "_template", None if self.format is None else _template(self.format))


_MISSING = object()


def make_rules(type: ColumnType, *, min: object = None, max: object = None,  # noqa: A002
               max_length: int | None = None, values: object = None,
               pattern: str | None = None, format: str | None = None,  # noqa: A002
               timezone: str = "UTC") -> Rules:
    """Rules from a declaration (TOML values), checked: RuleDeclarationError names the rule.

    min/max may be given as TOML gives them (int, float, str, date, datetime) and are
    converted into the type as data would be (min = "2020-01-01" for a date; strings are
    always ISO, whatever `format` says). `values` may list strings, or integers for an
    integer column; each must itself be a valid value of the type.
    """
    kind = type.kind
    if format is not None:
        if kind not in ("date", "timestamp", "timestamptz"):
            raise RuleDeclarationError("format: applies only to date, timestamp and "
                                       "timestamptz columns")
        _check_format(format, kind)
    if max_length is not None:
        if kind != "text":
            raise RuleDeclarationError("max_length: applies only to text columns")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise RuleDeclarationError(f"max_length: must be a whole number >= 1, not "
                                       f"{max_length!r}")
    if not isinstance(timezone, str):
        raise RuleDeclarationError("timezone: must be a time zone name such as "
                                   '"Europe/Paris"')
    if timezone != "UTC" and kind != "timestamptz":
        raise RuleDeclarationError("timezone: applies only to timestamptz columns")
    base = Rules(type, format=format, timezone=timezone)  # checks the timezone
    if pattern is not None and not isinstance(pattern, str):
        raise RuleDeclarationError("pattern: must be a string")
    Rules(type, pattern=pattern)  # checks the pattern compiles
    listed = None
    if values is not None:
        listed = _declared_values(values, base)
    low = None if min is None else _declared_bound("min", min, base)
    high = None if max is None else _declared_bound("max", max, base)
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        raise RuleDeclarationError(f"min: {_show(low)} is greater than max {_show(high)}")
    return Rules(type, min=low, max=high, max_length=max_length, values=listed,
                 pattern=pattern, format=format, timezone=timezone)


def _declared_values(values: object, base: Rules) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple) or not values:
        raise RuleDeclarationError("values: must be a non-empty list")
    listed = []
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) \
                and base.type.kind == "integer":
            value = str(value)
        if not isinstance(value, str):
            raise RuleDeclarationError(f"values: {value!r} is not a string")
        checked = parse(value, base)
        if isinstance(checked, Invalid):
            raise RuleDeclarationError(f"values: {checked.reason}")
        listed.append(value)
    return tuple(listed)


def _declared_bound(rule: str, value: object, base: Rules) -> object:
    """A min or max from TOML, as a value of the column's type."""
    kind = base.type.kind
    if not base.type.ordered:
        raise RuleDeclarationError(f"{rule}: applies only to numbers, dates and times, "
                                   f"not {base.type.name}")
    iso = Rules(base.type, timezone=base.timezone)  # strings are ISO, as in the API
    wrong = RuleDeclarationError(f"{rule}: {value!r} is not a {base.type.name} value")
    if isinstance(value, bool):
        raise wrong
    if isinstance(value, str):
        parsed = parse(" ".join(value.split()), iso)
        if isinstance(parsed, Invalid):
            raise RuleDeclarationError(f"{rule}: {parsed.reason}")
        return parsed
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise wrong
        if not base.type.low <= value <= base.type.high:  # type: ignore[operator]
            raise RuleDeclarationError(f"{rule}: {value} is out of range "
                                       f"{base.type.low}..{base.type.high}")
        return value
    if kind in ("numeric", "double"):
        if not isinstance(value, int | float):
            raise wrong
        parsed = parse(repr(value) if isinstance(value, float) else str(value), iso)
        if isinstance(parsed, Invalid):
            raise RuleDeclarationError(f"{rule}: {parsed.reason}")
        return parsed
    # Dates and times: TOML gives date, naive datetime (local) or aware datetime (offset).
    if isinstance(value, datetime):
        if kind == "date":
            raise wrong
        if kind == "timestamp":
            if value.tzinfo is not None:
                raise RuleDeclarationError(f"{rule}: {value.isoformat()} has a UTC offset; "
                                           "a timestamp column takes none")
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=base._zone or UTC)
        return value.astimezone(UTC)
    if isinstance(value, date):
        if kind == "date":
            return value
        return _declared_bound(rule, datetime.combine(value, time()), base)
    raise wrong


# ---------------------------------------------------------------------------------------
# Row by row: parse


def parse(text: str, rules: Rules) -> object | Invalid:
    """The typed value of a cleaned text, or Invalid(reason). Never raises for any str."""
    if not text:
        return Invalid("is empty")
    if rules._allowed is not None and text not in rules._allowed:
        return Invalid(f"{quote(text)} is not one of {_listing(rules.values)}")
    if rules._compiled is not None and rules._compiled.fullmatch(text) is None:
        return Invalid(f"{quote(text)} does not match the pattern {quote(rules.pattern)}")
    return _PARSERS[rules.type.kind](text, rules)


def to_python_param(text: str, rules_or_type: Rules | ColumnType) -> object | Invalid:
    """An API query-string value as a value of the column's type: the same parse, with no
    rules but the column's timezone, and always ISO (a column's `format` is for its files).
    """
    if isinstance(rules_or_type, Rules):
        rules = Rules(rules_or_type.type, timezone=rules_or_type.timezone)
    else:
        rules = Rules(rules_or_type)
    return parse(" ".join(text.split()), rules)


def _listing(values: tuple[str, ...] | None) -> str:
    shown = ", ".join(quote(v) for v in (values or ())[:5])
    return shown + (", …" if len(values or ()) > 5 else "")


def _parse_text(text: str, rules: Rules) -> str | Invalid:
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


# Integers: as cleaning._parse_age, whose reasons these must reproduce.
_INTEGER = re.compile(r"([+-]?)([0-9]+)(?:\.0*)?")


def _parse_integer(text: str, rules: Rules) -> int | Invalid:
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


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE]([+-]?)([0-9]+))?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_EXPONENT_DIGITS = 6
_NUMERIC_INTEGER_DIGITS = 100_000  # within PostgreSQL's 131072 and an int16 digit count
_NUMERIC_SCALE_MAX = 16_383


def _not_a_number(text: str) -> Invalid:
    if _NOT_FINITE.fullmatch(text):
        return Invalid(f"{quote(text)} is not a finite number")
    return Invalid(f"{quote(text)} is not a number")


def _parse_numeric(text: str, rules: Rules) -> Decimal | Invalid:
    match = _NUMBER.fullmatch(text)
    if match is None:
        return _not_a_number(text)
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
    return _in_bounds(text, value, rules)


def _parse_double(text: str, rules: Rules) -> float | Invalid:
    match = _NUMBER.fullmatch(text)
    if match is None:
        return _not_a_number(text)
    value = float(text)
    if value in (_INF, -_INF) or (value == 0.0 and _NONZERO_MANTISSA.match(text)):
        return Invalid(f"{quote(text)} is out of range for double")
    return _in_bounds(text, value, rules)


_INF = float("inf")
_NONZERO_MANTISSA = re.compile(r"[^eE]*[1-9]")

_BOOLEANS = {"true": True, "t": True, "yes": True, "y": True, "1": True,
             "false": False, "f": False, "no": False, "n": False, "0": False}


def _parse_boolean(text: str, rules: Rules) -> bool | Invalid:
    value = _BOOLEANS.get(text.lower()) if text.isascii() else None
    if value is None:
        return Invalid(f"{quote(text)} is not a boolean (true/false, yes/no, 1/0)")
    return value


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_ISO_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?")
_MAX_OFFSET_HOURS = 15  # PostgreSQL refuses offsets beyond 15:59


def _parse_date(text: str, rules: Rules) -> date | Invalid:
    if rules.format is not None:
        parsed = _strptime(text, rules)
        return parsed if isinstance(parsed, Invalid) else _in_bounds(text, parsed.date(), rules)
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a date (YYYY-MM-DD)")
    try:
        value = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return Invalid(f"{quote(text)} is not a valid date")
    return _in_bounds(text, value, rules)


def _parse_timestamp(text: str, rules: Rules) -> datetime | Invalid:
    aware = rules.type.kind == "timestamptz"
    if rules.format is not None:
        value = _strptime(text, rules)
        if isinstance(value, Invalid):
            return value
    else:
        match = _ISO_TIMESTAMP.fullmatch(text)
        if match is None:
            return Invalid(f"{quote(text)} is not a {rules.type.name} "
                           "(YYYY-MM-DD HH:MM:SS)")
        year, month, day, hour, minute, second, fraction, zone, sign, zh, zm = match.groups()
        if zone is not None and not aware:
            return Invalid(f"{quote(text)} has a UTC offset (declare the column timestamptz)")
        hour, minute, second = int(hour or 0), int(minute or 0), int(second or 0)
        micro = int((fraction or "").ljust(6, "0"))
        next_day = hour == 24 and minute == second == micro == 0
        try:
            value = datetime(int(year), int(month), int(day), 0 if next_day else hour,
                             minute, second, micro)
        except ValueError:
            return Invalid(f"{quote(text)} is not a valid {rules.type.name}")
        try:
            if next_day:
                value += timedelta(days=1)
            if zone is not None:
                offset = timedelta()
                if zone != "Z":
                    hours, minutes = int(zh), int(zm or 0)
                    if hours > _MAX_OFFSET_HOURS or minutes > 59:
                        return Invalid(f"{quote(text)} has an invalid UTC offset")
                    offset = timedelta(hours=hours, minutes=minutes)
                    if sign == "-":
                        offset = -offset
                value = value.replace(tzinfo=timezone(offset))
        except OverflowError:
            return Invalid(f"{quote(text)} is out of range for {rules.type.name}")
    if aware:
        if value.tzinfo is None:
            value = value.replace(tzinfo=rules._zone or UTC)
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            return Invalid(f"{quote(text)} is out of range for {rules.type.name}")
    return _in_bounds(text, value, rules)


def _strptime(text: str, rules: Rules) -> datetime | Invalid:
    """A date or time read with the column's `format`. ASCII only: strptime's \\d also
    takes other scripts' digits, which no other type accepts."""
    try:
        if not text.isascii():
            raise ValueError
        value = datetime.strptime(text, rules.format)  # type: ignore[arg-type]
    except ValueError:
        return Invalid(f"{quote(text)} does not match the format {quote(rules.format)}")
    return value


_UUID = re.compile(r"(\{)?((?:[0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4})(?(1)\})")


def _parse_uuid(text: str, rules: Rules) -> uuid.UUID | Invalid:
    match = _UUID.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a uuid")
    return uuid.UUID(hex=match[2].replace("-", ""))


def _in_bounds(text: str, value: object, rules: Rules) -> object:
    """The value, or why it is outside min/max (the type's own limits are checked by its
    parse)."""
    low, high = rules._low, rules._high
    if (low is None or value >= low) and (high is None or value <= high):  # type: ignore[operator]
        return value
    return Invalid(_out_of_bounds(text, low, high))


def _out_of_bounds(text: str, low: object, high: object) -> str:
    if low is not None and high is not None:
        return f"{quote(text)} is out of range {_show(low)}..{_show(high)}"
    if low is not None:
        return f"{quote(text)} is less than the minimum {_show(low)}"
    return f"{quote(text)} is greater than the maximum {_show(high)}"


def _show(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


_PARSERS = {
    "text": _parse_text, "integer": _parse_integer, "numeric": _parse_numeric,
    "double": _parse_double, "boolean": _parse_boolean, "date": _parse_date,
    "timestamp": _parse_timestamp, "timestamptz": _parse_timestamp, "uuid": _parse_uuid,
}


# ---------------------------------------------------------------------------------------
# Formats


_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)
_DATE_DIRECTIVES = set("dmyYbBaAjUWwuGVx")
_TIME_DIRECTIVES = set("HIMSfpX")
# Fixed-width directives the columnar path reads itself: name and width.
_FIXED = {"Y": ("year", 4), "m": ("month", 2), "d": ("day", 2), "H": ("hour", 2),
          "M": ("minute", 2), "S": ("second", 2)}


def _check_format(format: str, kind: str) -> None:  # noqa: A002
    if not isinstance(format, str):
        raise RuleDeclarationError("format: must be a strptime format string")
    directives = _DIRECTIVE.findall(format)
    if format.count("%") != 2 * directives.count("%") + len(
            [d for d in directives if d != "%"]):
        raise RuleDeclarationError(f"format: {quote(format)} ends with a lone %")
    allowed = _DATE_DIRECTIVES | {"%"}
    if kind != "date":
        allowed |= _TIME_DIRECTIVES | ({"z"} if kind == "timestamptz" else set())
    for directive in directives:
        if directive not in allowed:
            if directive == "z":
                why = "reads a UTC offset (declare the column timestamptz)"
            elif directive in _TIME_DIRECTIVES and kind == "date":
                why = "reads a time (declare the column timestamp)"
            else:
                why = "is not a directive this column can use"
            raise RuleDeclarationError(f"format: %{directive} {why}")
    if not [d for d in directives if d != "%"]:
        raise RuleDeclarationError(f"format: {quote(format)} has no % directive, so it "
                                   "reads no date")


@dataclass(frozen=True)
class _Template:
    """A format of fixed-width fields only (%Y %m %d %H %M %S and literal characters):
    the columnar path checks its shape with a regular expression and reads each field
    at its fixed position."""

    regex: str
    length: int
    fields: tuple[tuple[str, int, int], ...]  # name, position, width


def _template(format: str) -> _Template | None:  # noqa: A002
    parts = []
    fields = []
    at = 0
    seen = set()
    for piece in re.split(r"(%.)", format):
        if len(piece) == 2 and piece[0] == "%" and piece != "%%":
            if piece[1] not in _FIXED or piece[1] in seen:
                return None
            seen.add(piece[1])
            name, width = _FIXED[piece[1]]
            fields.append((name, at, width))
            parts.append(f"[0-9]{{{width}}}")
            at += width
        else:
            literal = "%" if piece == "%%" else piece
            # strptime reads a space as any run of whitespace and letters in any case;
            # the template is stricter, which only leaves more texts unsettled.
            if not literal.isascii() or any(c.isalnum() for c in literal):
                return None
            parts.append(re.escape(literal))
            at += len(literal)
    if "Y" not in seen or "m" not in seen or "d" not in seen:
        return None
    return _Template("^" + "".join(parts) + "$", at, tuple(fields))


# ---------------------------------------------------------------------------------------
# Columnar: parse_column


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    """Typed values for an array of cleaned texts, and which of them are settled.

    Where settled is True the value equals parse()'s (null for a null text); elsewhere the
    value is null and the caller gives the text to parse(), which decides.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    count = len(texts)
    present = texts.is_valid().to_numpy(zero_copy_only=False)
    # Candidates: present, not empty, within `values` and `pattern`.
    candidate = present & (_np(pc.binary_length(texts), 0) > 0)
    if rules._allowed is not None:
        candidate &= _np(pc.is_in(texts, value_set=pa.array(sorted(rules._allowed),
                                                              pa.large_string())), False)
    if rules._compiled is not None and candidate.any():
        candidate &= _pattern_matches(texts, rules._compiled, candidate)
    at = np.flatnonzero(candidate)
    if len(at) == count:
        chosen = texts
    else:
        chosen = texts.take(pa.array(at))
    values, ok = _COLUMN_PARSERS[rules.type.kind](chosen, rules)
    settled = ~present
    settled[at[ok]] = True
    if len(at) == count and ok.all():
        return values, settled
    # Spread the chosen rows' values back to their places; null elsewhere.
    where = np.full(count, -1, dtype=np.int64)
    where[at[ok]] = np.flatnonzero(ok)
    return values.take(pa.array(where, mask=where < 0)), settled


def _np(array: pa.Array, fill: object) -> np.ndarray:
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False)


# Where Arrow's RE2 and Python's re read a pattern differently: lookarounds, flags, named
# groups and other (?...) forms, "{,n}" (a literal to RE2), POSIX classes ([[:alpha:]],
# which re does not know), backreferences and escapes one of them lacks.
_RE2_DIFFERS = re.compile(r"\(\?(?!:)|\{,|\[:|\\[0-9AZzbBgGkKpPNxuUhHvVR]")
# Classes that are Unicode-aware in re and ASCII-only in RE2: the same on ASCII text.
_RE2_ASCII_ONLY = re.compile(r"\\[dDwWsS]")


def _pattern_matches(texts: pa.Array, compiled: re.Pattern[str], candidate: np.ndarray
                     ) -> np.ndarray:
    """Where each candidate's whole text fits the pattern.

    Arrow's RE2 decides at once, for a pattern both engines read alike (the common
    subset: literals, classes, quantifiers, groups, alternation), and only the texts it
    matches count as fitting: a text it refuses goes the row way, where re decides (and a
    refused text is almost always a reject, which takes that way for its reason anyway).
    Other patterns: re.fullmatch, once per distinct text.
    """
    pattern = compiled.pattern
    if not _RE2_DIFFERS.search(pattern):
        try:
            fits = _np(pc.match_substring_regex(texts, f"^(?:{pattern})$"), False)
        except pa.ArrowInvalid:  # RE2 cannot compile it: re alone decides
            pass
        else:
            if _RE2_ASCII_ONLY.search(pattern):
                fits &= _np(pc.string_is_ascii(texts), False)
            return fits
    encoded = pc.dictionary_encode(texts)
    indices = _np(encoded.indices, 0)
    distinct = encoded.dictionary.to_pylist()
    used = np.zeros(len(distinct), dtype=bool)
    used[indices[candidate]] = True
    fits = np.zeros(len(distinct), dtype=bool)
    for i in np.flatnonzero(used):
        fits[i] = compiled.fullmatch(distinct[i]) is not None
    return fits[indices]


def _shape(texts: pa.Array, regex: str) -> np.ndarray:
    return _np(pc.match_substring_regex(texts, regex), False)


def _column_text(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    ok = ~_np(pc.match_substring(texts, "\x00"), True)
    if rules.max_length is not None:
        ok &= _np(pc.utf8_length(texts), 0) <= rules.max_length
    return texts, ok


def _column_integer(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    # Up to 19 digits (any bigint); those that may not fit an int64 are compared as text
    # before the cast, which would fail the whole array on one.
    digits = {2: 5, 4: 10, 8: 19}[rules.type.precision]  # type: ignore[index]
    ok = _shape(texts, rf"^-?[0-9]{{1,{digits}}}(?:\.0*)?$")
    numbers = np.zeros(len(texts), dtype=np.int64)
    if ok.any():
        shaped = texts.filter(pa.array(ok))
        if _any(pc.match_substring(shaped, ".")):
            shaped = pc.replace_substring_regex(shaped, r"\.0*$", "")
        if digits == 19:
            negative = pc.starts_with(shaped, "-")
            magnitude = pc.utf8_ltrim(shaped, "-")
            limit = pc.if_else(negative, "9223372036854775808", "9223372036854775807")
            fits = pc.or_(pc.less(pc.binary_length(magnitude), 19),
                          pc.less_equal(magnitude, limit))
            ok[ok] = _np(fits, False)
            shaped = shaped.filter(fits)
        numbers[ok] = pc.cast(shaped, pa.int64()).to_numpy()
        ok &= (numbers >= rules._low) & (numbers <= rules._high)
    dtype = f"int{8 * rules.type.precision}"  # type: ignore[operator]
    return pa.array(numbers.astype(dtype), rules.type.arrow_type, mask=~ok), ok


def _any(array: pa.Array) -> bool:
    return bool(pc.any(array).as_py())


def _column_double(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    ok = _shape(texts, r"^-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?$")
    numbers = np.zeros(len(texts), dtype=np.float64)
    if ok.any():
        numbers[ok] = pc.cast(texts.filter(pa.array(ok)), pa.float64()).to_numpy()
        ok &= np.isfinite(numbers)
        zero = ok & (numbers == 0)
        if zero.any():  # a zero is settled only if written as one ("0.0e5", not "1e-400")
            zero[zero] = ~_np(pc.match_substring_regex(texts.filter(pa.array(zero)),
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


def _column_boolean(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    lower = pc.ascii_lower(texts)
    true = _np(pc.is_in(lower, value_set=pa.array(
        [k for k, v in _BOOLEANS.items() if v], pa.large_string())), False)
    false = _np(pc.is_in(lower, value_set=pa.array(
        [k for k, v in _BOOLEANS.items() if not v], pa.large_string())), False)
    ok = true | false
    return pa.array(true, pa.bool_(), mask=~ok), ok


def _column_uuid(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    """Canonical (8-4-4-4-12) and plain (32 hex digits) spellings: the hyphens are
    checked at their places and removed, leaving 32 characters a row, one matrix."""
    lengths = _np(pc.binary_length(texts), 0)
    ok = (lengths == 36) | (lengths == 32)
    raw = np.zeros((len(texts), 16), dtype=np.uint8)
    if ok.any():
        view, starts, _ = _bytes_of(texts)
        dashed = lengths == 36
        for at in (8, 13, 18, 23):
            ok[dashed] &= view[starts[dashed] + at] == ord("-")
        digits = pc.replace_substring(texts.filter(pa.array(ok)), "-", "")
        view, starts, lengths = _bytes_of(digits)
        # Exactly four hyphens, at their places, leave 32 characters.
        settled = lengths == 32
        chars = _matrix(view, starts, 32) if settled.all() else \
            np.zeros((len(starts), 32), dtype=np.uint8)
        if not settled.all():
            chars[settled] = _matrix(*_bytes_of(digits.filter(pa.array(settled)))[:2], 32)
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


def _matrix(view: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The bytes of values that all have `width` bytes and follow one another (as in an
    array Arrow just built), one row each."""
    if not len(starts):
        return np.zeros((0, width), dtype=np.uint8)
    first = int(starts[0])
    return view[first:first + width * len(starts)].reshape(len(starts), width)


def _bytes_of(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A large_string array's bytes, and each value's start and length in them."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
        texts.offset:texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    view = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return view, offsets[:-1], np.diff(offsets)


def _column_numeric(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    kind = rules.type
    arrow = kind.arrow_type
    if kind.scale is None or kind.precision > _DECIMAL128_MAX:  # type: ignore[operator]
        # Held as text (Decimal(text) is the value): canonical, short spellings only.
        ok = _shape(texts, r"^-?[0-9]+(?:\.[0-9]+)?$") & (_np(pc.binary_length(texts), 0)
                                                          <= 1000)
        if kind.scale is not None:
            whole = kind.precision - kind.scale  # type: ignore[operator]
            ok &= _shape(texts, _decimal_shape(whole, kind.scale))
        if ok.any() and (rules._low is not None or rules._high is not None):
            # Rare: a plain numeric with min/max; compared one by one.
            at = np.flatnonzero(ok)
            for i, text in zip(at, texts.take(pa.array(at)).to_pylist(), strict=True):
                ok[i] = not isinstance(_in_bounds(text, Decimal(text), rules), Invalid)
        return pc.if_else(pa.array(ok), texts, pa.scalar(None, arrow)), ok
    whole = kind.precision - kind.scale  # type: ignore[operator]
    ok = _shape(texts, _decimal_shape(whole, kind.scale))
    if not ok.any():
        return pa.nulls(len(texts), arrow), ok
    numbers = pc.cast(pc.if_else(pa.array(ok), texts, "0"), arrow)
    if rules._low is not None:
        ok &= _np(pc.greater_equal(numbers, pa.scalar(rules._low, arrow)), False)
    if rules._high is not None:
        ok &= _np(pc.less_equal(numbers, pa.scalar(rules._high, arrow)), False)
    return pc.if_else(pa.array(ok), numbers, pa.scalar(None, arrow)), ok


def _decimal_shape(whole: int, scale: int) -> str:
    """A decimal that fits numeric(p,s) and needs no rounding, without leading zeros."""
    integer = "0" if whole == 0 else f"(?:0|[1-9][0-9]{{0,{whole - 1}}})"
    fraction = f"(?:\\.[0-9]{{1,{scale}}})?" if scale else ""
    return f"^-?{integer}{fraction}$"


_COLUMN_PARSERS = {
    "text": _column_text, "integer": _column_integer, "numeric": _column_numeric,
    "double": _column_double, "boolean": _column_boolean, "uuid": _column_uuid,
}


# Dates and times, a column at a time: the shape is checked with a regular expression and
# each field read as digits at its position, in numpy. Days are counted from 1970-01-01
# (Arrow's date32 and timestamp epoch).

_US_PER_DAY = 86_400_000_000
_MIN_DAYS = -719_162  # 0001-01-01
_MAX_DAYS = 2_932_896  # 9999-12-31
# Outside these years the columnar path leaves zone conversions to zoneinfo: Arrow's time
# zone library and zoneinfo read the same tz database, but may extend its rules past the
# last transition differently.
_ZONE_YEARS = (1900, 2037)


def _column_date(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    if rules.format is not None:
        fields, ok = _template_fields(texts, rules._template)
    else:
        ok = _shape(texts, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        fields = _read_fields(texts, ok, (("year", 0, 4), ("month", 5, 2), ("day", 8, 2)))
    days, valid = _days(fields)
    ok &= valid
    if rules._low is not None:
        ok &= days >= _day_number(rules._low)  # type: ignore[arg-type]
    if rules._high is not None:
        ok &= days <= _day_number(rules._high)  # type: ignore[arg-type]
    return pa.array(days.astype(np.int32), pa.int32(), mask=~ok).view(pa.date32()), ok


def _column_timestamp(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    aware = rules.type.kind == "timestamptz"
    count = len(texts)
    offset = np.zeros(count, dtype=np.int64)  # seconds east of UTC
    has_offset = np.zeros(count, dtype=bool)
    if rules.format is not None:
        fields, ok = _template_fields(texts, rules._template)
        for name in ("hour", "minute", "second"):
            fields.setdefault(name, np.zeros(count, dtype=np.int64))
        fields["micro"] = np.zeros(count, dtype=np.int64)
        late = np.zeros(count, dtype=bool)  # strptime reads no 24:00
    else:
        zone = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?" if aware else ""
        ok = _shape(texts, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}"
                           rf"(?::[0-9]{{2}}(?:\.[0-9]{{1,6}})?)?{zone})?$")
        fields = {name: np.zeros(count, dtype=np.int64) for name in
                  ("year", "month", "day", "hour", "minute", "second", "micro")}
        _read_iso(texts, ok, fields, offset, has_offset)
        late = fields["hour"] == 24  # 24:00 is the next day's midnight
        late &= (fields["minute"] == 0) & (fields["second"] == 0) & (fields["micro"] == 0)
    days, valid = _days(fields)
    ok &= valid
    ok &= ((fields["hour"] <= 23) | late) & (fields["minute"] <= 59) & (fields["second"] <= 59)
    micros = (days * _US_PER_DAY + fields["micro"]
              + ((fields["hour"] * 60 + fields["minute"]) * 60 + fields["second"]) * 1_000_000
              - offset * 1_000_000)
    if rules._zone is not None:
        local = ok & ~has_offset
        local &= (fields["year"] >= _ZONE_YEARS[0]) & (fields["year"] <= _ZONE_YEARS[1])
        ok &= has_offset | local
        if local.any():
            wall = pa.array(micros[local], pa.timestamp("us"))
            try:
                utc = pc.assume_timezone(wall, timezone=rules.timezone, ambiguous="earliest",
                                         nonexistent="earliest")
            except pa.ArrowInvalid:  # no tz database where Arrow looks: zoneinfo decides
                local[:] = False
            else:
                # A time in a DST gap reads back differently: zoneinfo decides those.
                same = _np(pc.equal(pc.local_timestamp(utc), wall), False)
                micros[local] = utc.view(pa.int64()).to_numpy()
                local[local] = same
            ok &= has_offset | local
    ok &= (micros >= _MIN_DAYS * _US_PER_DAY) & (micros < (_MAX_DAYS + 1) * _US_PER_DAY)
    if rules._low is not None:
        ok &= micros >= _micro_number(rules._low)  # type: ignore[arg-type]
    if rules._high is not None:
        ok &= micros <= _micro_number(rules._high)  # type: ignore[arg-type]
    return pa.array(micros, pa.int64(), mask=~ok).view(rules.type.arrow_type), ok


def _read_iso(texts: pa.Array, ok: np.ndarray, fields: dict[str, np.ndarray],
              offset: np.ndarray, has_offset: np.ndarray) -> None:
    """Fill fields (and the UTC offset) at ok's rows from ISO texts of the shape checked
    by _column_timestamp: YYYY-MM-DD, then optionally [T ]HH:MM[:SS[.f]][offset].

    Texts of one length and one offset form have every field at the same place, so each
    such group is read as a matrix, a field being a few of its columns."""
    good_zone = np.ones(len(texts), dtype=bool)
    for rows, matrix in _by_length(texts, ok):
        length = matrix.shape[1]
        # The offset's length: every sign after the date (position 16 on) starts it.
        zone = np.zeros(len(rows), dtype=np.int64)
        if length > 16:
            zone[matrix[:, -1] == ord("Z")] = 1
        for width in (3, 5, 6):
            if length - width >= 16:
                sign = matrix[:, length - width]
                zone[(sign == ord("+")) | (sign == ord("-"))] = width
        for width in np.unique(zone):
            chosen = zone == width
            at, part = rows[chosen], matrix[chosen]
            base = length - int(width)  # the date and time without the offset
            fields["year"][at] = _number(part, 0, 4)
            fields["month"][at] = _number(part, 5, 2)
            fields["day"][at] = _number(part, 8, 2)
            if base >= 16:
                fields["hour"][at] = _number(part, 11, 2)
                fields["minute"][at] = _number(part, 14, 2)
            if base >= 19:
                fields["second"][at] = _number(part, 17, 2)
            if base >= 21:
                fields["micro"][at] = _number(part, 20, base - 20) * 10 ** (26 - base)
            if width >= 3:
                hours = _number(part, base + 1, 2)
                minutes = _number(part, base + (4 if width == 6 else 3), 2) if width >= 5 \
                    else 0
                east = np.where(part[:, base] == ord("-"), -1, 1)
                offset[at] = east * (hours * 3600 + minutes * 60)
                good_zone[at] = (hours <= _MAX_OFFSET_HOURS) & (minutes <= 59)
            has_offset[at] = width > 0
    ok &= good_zone  # the row path says why


def _by_length(texts: pa.Array, ok: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """ok's rows grouped by their length in bytes: each group's row numbers, and its
    bytes as a matrix of one row per text."""
    lengths = _np(pc.binary_length(texts), 0)
    for length in np.unique(lengths[ok]):
        rows = np.flatnonzero(ok & (lengths == length))
        view, starts, _ = _bytes_of(texts.take(pa.array(rows)))
        yield rows, _matrix(view, starts, int(length))


def _number(matrix: np.ndarray, position: int, width: int) -> np.ndarray:
    """The number each row writes with `width` ASCII digits at `position`."""
    digits = matrix[:, position:position + width].astype(np.int64) - 48
    return digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))


def _read_fields(texts: pa.Array, ok: np.ndarray, layout: tuple[tuple[str, int, int], ...]
                 ) -> dict[str, np.ndarray]:
    fields = {name: np.zeros(len(texts), dtype=np.int64) for name, _, _ in layout}
    for rows, matrix in _by_length(texts, ok):
        for name, position, width in layout:
            fields[name][rows] = _number(matrix, position, width)
    return fields


def _template_fields(texts: pa.Array, template: _Template | None
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fields of texts in a fixed-width format; a format with other directives settles
    nothing here (strptime reads each of those texts)."""
    if template is None:
        return {n: np.zeros(len(texts), dtype=np.int64) for n in ("year", "month", "day")}, \
            np.zeros(len(texts), dtype=bool)
    ok = _shape(texts, template.regex)
    return _read_fields(texts, ok, template.fields), ok


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _days(fields: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of each (year, month, day), and which are real dates."""
    year, month, day = fields["year"], fields["month"], fields["day"]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    good_month = (month >= 1) & (month <= 12)
    length = _MONTH_DAYS[np.where(good_month, month, 0)] + (leap & (month == 2))
    valid = (year >= 1) & good_month & (day >= 1) & (day <= length)
    # Howard Hinnant's days_from_civil.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468, valid


def _day_number(value: date) -> int:
    return value.toordinal() - 719_163


def _micro_number(value: datetime) -> int:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1)


_COLUMN_PARSERS.update({"date": _column_date, "timestamp": _column_timestamp,
                        "timestamptz": _column_timestamp})


# ---------------------------------------------------------------------------------------
# Binary COPY fields: encode (one value) and encode_column (an array)

NULL = struct.pack(">i", -1)
_PG_EPOCH = datetime(2000, 1, 1)
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * _US_PER_DAY
_MICROSECOND = timedelta(microseconds=1)
_INTEGER_FIELDS = {2: struct.Struct(">ih"), 4: struct.Struct(">ii"), 8: struct.Struct(">iq")}
_DOUBLE_FIELD = struct.Struct(">id")
_INT32_FIELD = struct.Struct(">ii")
_INT64_FIELD = struct.Struct(">iq")
_LENGTH = struct.Struct(">i")
_NUMERIC_NEGATIVE = 0x4000


def encode(value: object | None, type: ColumnType) -> bytes:  # noqa: A002
    """One binary COPY field: an int32 length and PostgreSQL's binary form, or -1 for
    NULL. value is what parse() returns for the type."""
    if value is None:
        return NULL
    kind = type.kind
    if kind == "text":
        data = value.encode()  # type: ignore[attr-defined]
        return _LENGTH.pack(len(data)) + data
    if kind == "integer":
        return _INTEGER_FIELDS[type.precision].pack(type.precision, value)  # type: ignore[index]
    if kind == "double":
        return _DOUBLE_FIELD.pack(8, value)
    if kind == "boolean":
        return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"
    if kind == "date":
        return _INT32_FIELD.pack(4, value.toordinal() - 730_120)  # type: ignore[attr-defined]
    if kind in ("timestamp", "timestamptz"):
        if value.tzinfo is not None:  # type: ignore[attr-defined]
            value = value.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
        return _INT64_FIELD.pack(8, (value - _PG_EPOCH) // _MICROSECOND)  # type: ignore[operator]
    if kind == "uuid":
        return b"\x00\x00\x00\x10" + value.bytes  # type: ignore[attr-defined]
    return _numeric_field(value)  # type: ignore[arg-type]


def _numeric_field(value: Decimal) -> bytes:
    """PostgreSQL's binary numeric: digit count, weight (of the first base-10000 digit),
    sign, display scale, then the base-10000 digits without leading or trailing zeros, as
    numeric_send writes them."""
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -exponent)  # type: ignore[operator]
    text = "".join(map(str, digits))
    if exponent > 0:  # type: ignore[operator]
        text += "0" * exponent  # type: ignore[operator]
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


def encode_column(values: pa.Array, type: ColumnType) -> pa.LargeBinaryArray:  # noqa: A002
    """encode() for every element (a null is the -1 length), as one Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    kind = type.kind
    if kind == "text":
        data = values.cast(pa.large_string()).cast(pa.large_binary())
        prefix = _binary(_np(pc.binary_length(data), 0).astype(">i4"))
        fields = pc.binary_join_element_wise(prefix, data, _NOTHING)
        return _with_nulls(fields, valid)
    if kind == "integer":
        size = type.precision
        return _fixed(_np(values, 0), f">i{size}", size, valid)  # type: ignore[arg-type]
    if kind == "double":
        return _fixed(_np(values, 0.0), ">f8", 8, valid)
    if kind == "boolean":
        return _fixed(_np(values, False).astype(np.uint8), "u1", 1, valid)
    if kind == "date":
        days = _np(values.view(pa.int32()), 0).astype(np.int64) - _PG_EPOCH_DAYS
        return _fixed(days, ">i4", 4, valid)
    if kind in ("timestamp", "timestamptz"):
        micros = _np(values.view(pa.int64()), 0) - _PG_EPOCH_US
        return _fixed(micros, ">i8", 8, valid)
    if kind == "uuid":
        storage = values.storage if isinstance(values, pa.ExtensionArray) else values
        raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[
            16 * storage.offset:16 * (storage.offset + len(storage))].reshape(-1, 16)
        return _fixed(raw, ("u1", (16,)), 16, valid)
    if pa.types.is_decimal(values.type) and type.precision <= 18:  # type: ignore[operator]
        return _numeric_column(values, type.precision, type.scale, valid)  # type: ignore[arg-type]
    return pa.array([encode(_decimal(v, type), type) for v in values.to_pylist()],
                    pa.large_binary())


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


_BYTES = pa.large_binary()
_NOTHING = pa.scalar(b"", _BYTES)
_NULL_FIELD = pa.scalar(NULL, _BYTES)


def _records(value_dtype: object, values: object, size: int, count: int) -> np.ndarray:
    """Fixed-size fields as numpy records: an int32 length, then the value."""
    records = np.empty(count, dtype=[("length", ">i4"), ("value", value_dtype)])
    records["length"] = size
    records["value"] = values
    return records


def _fixed(values: np.ndarray, dtype: object, size: int, valid: np.ndarray
           ) -> pa.LargeBinaryArray:
    return _with_nulls(_binary(_records(dtype, values, size, len(valid))), valid)


def _with_nulls(fields: pa.Array, valid: np.ndarray) -> pa.LargeBinaryArray:
    if valid.all():
        return fields
    return pc.if_else(pa.array(valid), fields, _NULL_FIELD)


def _binary(fixed: np.ndarray) -> pa.Array:
    """A numpy array of fixed-size records as an Arrow binary array, one value each."""
    width = fixed.dtype.itemsize
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(fixed), [None, pa.py_buffer(fixed.tobytes())])
    return array.cast(_BYTES)


def _numeric_column(values: pa.Array, precision: int, scale: int, valid: np.ndarray
                    ) -> pa.LargeBinaryArray:
    """_numeric_field for numeric(p,s) with p <= 18, whose values are int64s scaled by
    10**s: the base-10000 digits are split off in numpy and each row's used ones kept."""
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
    head["dscale"] = scale
    rows = np.hstack((head.view(np.uint8).reshape(count, 12),
                      groups.astype(">i2").view(np.uint8).reshape(count, 2 * groups.shape[1])))
    # Keep the head (only the -1 length for a null) and the digits first..last.
    group = np.concatenate((np.full(12, -1), np.repeat(np.arange(groups.shape[1]), 2)))
    keep = (group < 0) | ((group >= first[:, None]) & (group <= last[:, None]) & used[:, None])
    keep[~valid, 4:] = False
    sizes = np.where(valid, 12 + 2 * digits, 4)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return pa.LargeBinaryArray.from_buffers(
        _BYTES, count, [None, pa.py_buffer(offsets), pa.py_buffer(rows[keep].tobytes())])
