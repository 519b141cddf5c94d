"""What every column type shares: its declaration objects, its rules, and the row parse.

A type is a ColumnType, made by its family's module (integer.py, temporal.py, ...), which
also gives it a Family: the functions that parse, encode and guess its values. The row
functions are the reference: where a columnar parser settles a value it equals parse()'s,
and a column's encoded bytes equal encode()'s; the columnar ones only settle the common,
canonical spellings and leave everything else (awkward or invalid) unsettled for the
caller to send through parse(), which decides and gives the reason.

The texts given to parse are already cleaned by the caller (trimmed, whitespace runs
collapsed, not a null marker). Before the type is parsed, `values` (the allowed texts) and
`pattern` (re.fullmatch on the cleaned text) are checked, for any type; `max_length`
(characters) is for text only, `min`/`max` for ordered types (numbers, dates, times) only,
and are compared with the typed value. A reason is the text after "<column>: ", quoting the
value as the people rejects do (JSON, cut at 40 characters), and is byte-identical to
cleaning's for people's age: '"-5" is out of range 0..150', '"x" is not a whole number'.
An empty text "is empty"; a text with a NUL character (which PostgreSQL cannot store)
"contains a NUL character". ASCII digits only, for every type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa

from chute.errors import RuleDeclarationError

REASON_VALUE_LIMIT = 40  # a reject reason quotes the bad value; keep reasons one readable line


def quote(value: str) -> str:
    """Quote a value for a reason: escaped so quotes and line breaks cannot garble it."""
    if len(value) > REASON_VALUE_LIMIT:
        value = value[:REASON_VALUE_LIMIT] + "…"
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a text is not a value of its column (the reason after "<column>: ")."""

    reason: str


@dataclass(frozen=True)
class Family:
    """What one family of types owns, as the registry (types/__init__.py) lists it.

    declare names the family's types: the ColumnType a declared name stands for, or None
    when the name is not one of the family's (TypeDeclarationError when it is, but is
    wrong, as numeric(0,0)). The others take and give what the package's functions of the
    same names do; encode_column also gets which elements are not null.
    """

    kind: str  # ColumnType.kind of its types
    names: tuple[str, ...]  # as declared, for the list in an unknown type's error
    declare: Callable[[str], ColumnType | None]
    parse: Callable[[str, Rules], object]  # a value, or Invalid
    parse_column: Callable[[pa.Array, Rules], tuple[pa.Array, np.ndarray]]
    encode: Callable[[object, ColumnType], bytes]  # a value that is not None
    encode_column: Callable[[pa.Array, ColumnType, np.ndarray], pa.Array]
    decode: Callable[[bytes, ColumnType], object]  # a field's bytes, without the length
    # A min/max from TOML that is not a string, as a value of the type (ordered types);
    # the string and bool cases are handled before.
    bound: Callable[[str, object, Rules], object] | None = None
    check_format: Callable[[str], None] | None = None  # the `format` rule, where it applies
    # What `chute infer` may guess: these declared names, narrowest first, the first that
    # every value of a sample parses as (text is what it falls back to) ...
    guesses: tuple[str, ...] = ()
    # ... unless the sample's (cleaned, present) values are unlikely to be of the family.
    unlikely: Callable[[list[str]], bool] | None = None
    sized: tuple[str, ...] = ()  # declared forms with parameters, as "numeric(p,s)"
    # For the API's document: a regular expression for query values of a type written as
    # a JSON string, narrow enough that every text a generator draws from it parses.
    query_pattern: str | None = None


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
    family: Family = field(compare=False, repr=False)
    low: int | None = None  # integer types: the type's limits
    high: int | None = None
    byte_width: int | None = None  # integer types: 2, 4 or 8
    precision: int | None = None  # numeric(p,s)
    scale: int | None = None


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
        if self.type.low is not None:  # the integer types' own limits bound min and max
            low = self.type.low if low is None else max(low, self.type.low)
            high = self.type.high if high is None else min(high, self.type.high)
        put(self, "_low", low)
        put(self, "_high", high)


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
        if type.family.check_format is None:
            raise RuleDeclarationError("format: applies only to date, time, timestamp "
                                       "and timestamptz columns")
        type.family.check_format(format)
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
        raise RuleDeclarationError(f"min: {show(low)} is greater than max {show(high)}")
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
    if not base.type.ordered or base.type.family.bound is None:
        raise RuleDeclarationError(f"{rule}: applies only to numbers, dates and times, "
                                   f"not {base.type.name}")
    if isinstance(value, bool):
        raise wrong_bound(rule, value, base)
    if isinstance(value, str):
        return parsed_bound(rule, " ".join(value.split()), base)
    return base.type.family.bound(rule, value, base)


def wrong_bound(rule: str, value: object, base: Rules) -> RuleDeclarationError:
    """The error for a min or max that is no value of the column's type."""
    return RuleDeclarationError(f"{rule}: {value!r} is not a {base.type.name} value")


def parsed_bound(rule: str, text: str, base: Rules) -> object:
    """A min or max written as text, read as data is, but always ISO (as in the API)."""
    parsed = parse(text, Rules(base.type, timezone=base.timezone))
    if isinstance(parsed, Invalid):
        raise RuleDeclarationError(f"{rule}: {parsed.reason}")
    return parsed


def parse(text: str, rules: Rules) -> object | Invalid:
    """The typed value of a cleaned text, or Invalid(reason). Never raises for any str."""
    if not text:
        return Invalid("is empty")
    if rules._allowed is not None and text not in rules._allowed:
        return Invalid(f"{quote(text)} is not one of {_listing(rules.values)}")
    if rules._compiled is not None and rules._compiled.fullmatch(text) is None:
        return Invalid(f"{quote(text)} does not match the pattern {quote(rules.pattern)}")
    return rules.type.family.parse(text, rules)


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


def in_bounds(text: str, value: object, rules: Rules) -> object:
    """The value, or why it is outside min/max (the type's own limits are checked by its
    parse)."""
    low, high = rules._low, rules._high
    if (low is None or value >= low) and (high is None or value <= high):  # type: ignore[operator]
        return value
    return Invalid(_out_of_bounds(text, low, high))


def _out_of_bounds(text: str, low: object, high: object) -> str:
    if low is not None and high is not None:
        return f"{quote(text)} is out of range {show(low)}..{show(high)}"
    if low is not None:
        return f"{quote(text)} is less than the minimum {show(low)}"
    return f"{quote(text)} is greater than the maximum {show(high)}"


def show(value: object) -> str:
    """A bound as a reason writes it."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
