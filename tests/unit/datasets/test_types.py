"""Declared column types: exact outcomes of parse and encode per type and rule, the columnar
functions against the row ones (hypothesis), and the encoded bytes against PostgreSQL."""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg2
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.datasets.types import (
    FAMILIES,
    ColumnType,
    Invalid,
    Rules,
    column_type,
    encode,
    encode_column,
    make_rules,
    parse,
    parse_column,
    to_python_param,
)
from chute.errors import RuleDeclarationError, TypeDeclarationError
from harness import PG_ADMIN


def rules(declared: str, **declaration: object) -> Rules:
    return make_rules(column_type(declared), **declaration)


def outcome(text: str, declared: str, **declaration: object) -> object:
    """parse's value, or its reason as a plain string."""
    value = parse(text, rules(declared, **declaration))
    return value.reason if isinstance(value, Invalid) else value


# --- declarations ------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "pg_type", "ordered", "json_kind", "json_format"), [
    ("text", "text", False, "string", None),
    ("smallint", "smallint", True, "integer", None),
    ("integer", "integer", True, "integer", None),
    ("bigint", "bigint", True, "integer", None),
    ("numeric", "numeric", True, "string", "decimal"),
    ("numeric(12,2)", "numeric(12,2)", True, "string", "decimal"),
    ("numeric(5)", "numeric(5,0)", True, "string", "decimal"),
    ("numeric( 7 , 3 )", "numeric(7,3)", True, "string", "decimal"),
    ("double", "double precision", True, "number", None),
    ("boolean", "boolean", False, "boolean", None),
    ("date", "date", True, "string", "date"),
    ("timestamp", "timestamp without time zone", True, "string", "date-time"),
    ("timestamptz", "timestamp with time zone", True, "string", "date-time"),
    ("time", "time without time zone", True, "string", None),
    ("uuid", "uuid", False, "string", "uuid"),
])
def test_declared_types_name_their_postgresql_and_json_types(
        declared: str, pg_type: str, ordered: bool, json_kind: str, json_format: str | None
) -> None:
    kind = column_type(declared)
    assert (kind.name, kind.pg_type, kind.ordered, kind.json_kind, kind.json_format) == (
        declared, pg_type, ordered, json_kind, json_format)
    assert column_type(declared) is kind


@pytest.mark.parametrize(("declared", "message"), [
    ("string", 'unknown type "string"; expected one of smallint, integer, bigint, text, '
               "numeric, double, boolean, date, timestamp, timestamptz, time, uuid, "
                "numeric(p,s)"),
    ("INTEGER", 'unknown type "INTEGER"; expected one of smallint, integer, bigint, text, '
                "numeric, double, boolean, date, timestamp, timestamptz, time, uuid, "
                "numeric(p,s)"),
    ("numeric(0,0)", "numeric(0,0): precision must be 1..1000, not 0"),
    ("numeric(1001,2)", "numeric(1001,2): precision must be 1..1000, not 1001"),
    ("numeric(5,6)", "numeric(5,6): scale must be 0..5, not 6"),
    ("numeric(5,-1)", "numeric(5,-1): scale must be 0..5, not -1"),
])
def test_unknown_or_impossible_types_are_refused_in_one_line(declared: str, message: str
                                                             ) -> None:
    with pytest.raises(TypeDeclarationError) as error:
        column_type(declared)
    assert str(error.value) == message


def test_rules_from_toml_values_are_converted_into_the_type() -> None:
    assert rules("date", min="2020-01-01").min == date(2020, 1, 1)
    assert rules("date", max=date(2030, 1, 1)).max == date(2030, 1, 1)
    assert rules("numeric(12,2)", min=0).min == Decimal("0.00")
    assert rules("numeric(12,2)", max=0.005).max == Decimal("0.01")
    assert rules("double", min=1).min == 1.0
    assert rules("smallint", max=150.0).max == 150
    assert rules("timestamp", min=date(2020, 1, 1)).min == datetime(2020, 1, 1)
    assert rules("timestamptz", min=datetime(2020, 1, 1, 1), timezone="Europe/Paris"
                 ).min == datetime(2020, 1, 1, tzinfo=UTC)
    assert rules("timestamptz", min="2020-01-01 02:00+02:00").min == datetime(
        2020, 1, 1, tzinfo=UTC)
    assert rules("integer", values=[1, 2]).values == ("1", "2")
    assert rules("time", min=time(8, 30), max="18:00").max == time(18)


@pytest.mark.parametrize(("declared", "declaration", "message"), [
    ("text", {"min": "a"}, "min: applies only to numbers, dates and times, not text"),
    ("boolean", {"max": 1}, "max: applies only to numbers, dates and times, not boolean"),
    ("smallint", {"min": 40000}, "min: 40000 is out of range -32768..32767"),
    ("smallint", {"min": "x"}, 'min: "x" is not a whole number'),
    ("smallint", {"min": True}, "min: True is not a smallint value"),
    ("smallint", {"min": 1.5}, "min: 1.5 is not a smallint value"),
    ("date", {"min": "2020-02-30"}, 'min: "2020-02-30" is not a valid date'),
    ("date", {"min": datetime(2020, 1, 1)},
     "min: datetime.datetime(2020, 1, 1, 0, 0) is not a date value"),
    ("timestamp", {"min": datetime(2020, 1, 1, tzinfo=UTC)},
     "min: 2020-01-01T00:00:00+00:00 has a UTC offset; a timestamp column takes none"),
    ("integer", {"min": 5, "max": 4}, "min: 5 is greater than max 4"),
    ("smallint", {"max_length": 3}, "max_length: applies only to text columns"),
    ("text", {"max_length": 0}, "max_length: must be a whole number >= 1, not 0"),
    ("text", {"pattern": "[a-"},
     'pattern: "[a-" is not a regular expression: unterminated character set at position 0'),
    ("text", {"values": []}, "values: must be a non-empty list"),
    ("text", {"values": "abc"}, "values: must be a non-empty list"),
    ("smallint", {"values": ["1", "x"]}, 'values: "x" is not a whole number'),
    ("text", {"values": [1]}, "values: 1 is not a string"),
    ("timestamptz", {"timezone": "Mars/Olympus"},
     'timezone: "Mars/Olympus" is not a known time zone'),
    ("timestamp", {"timezone": "Europe/Paris"},
     "timezone: applies only to timestamptz columns"),
    ("text", {"format": "%Y"}, "format: applies only to date, time, timestamp and "
                               "timestamptz columns"),
    ("time", {"format": "%d %H:%M"}, "format: %d reads a date (declare the column "
                                     "timestamp)"),
    ("time", {"format": "h"}, 'format: "h" has no % directive, so it reads no time'),
    ("time", {"min": datetime(2020, 1, 1, 8)},
     "min: datetime.datetime(2020, 1, 1, 8, 0) is not a time value"),
    ("time", {"max": "24:00"}, 'max: "24:00" is not a time of day (write 00:00 or 23:59:59)'),
    ("date", {"format": "YYYY-MM-DD"}, 'format: "YYYY-MM-DD" has no % directive, so it '
                                       "reads no date"),
    ("date", {"format": "%%"}, 'format: "%%" has no % directive, so it reads no date'),
    ("date", {"format": "%Y-%m-%d %H"}, "format: %H reads a time (declare the column "
                                        "timestamp)"),
    ("timestamp", {"format": "%Y-%m-%d %H:%M%z"},
     "format: %z reads a UTC offset (declare the column timestamptz)"),
    ("date", {"format": "%Q"}, "format: %Q is not a directive this column can use"),
    ("date", {"format": "%Y-%m-%d%"}, 'format: "%Y-%m-%d%" ends with a lone %'),
])
def test_rules_that_cannot_apply_are_refused_naming_the_rule(
        declared: str, declaration: dict[str, object], message: str) -> None:
    with pytest.raises(RuleDeclarationError) as error:
        rules(declared, **declaration)
    assert str(error.value) == message


# --- parse, type by type -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), ("-7", -7), ("+7", 7), ("007", 7), ("25.0", 25), ("25.", 25), ("25.000", 25),
    ("-0", 0), ("32767", 32767), ("-32768", -32768),
    ("32768", '"32768" is out of range -32768..32767'),
    ("-32769", '"-32769" is out of range -32768..32767'),
    ("1" * 5000, '"' + "1" * 40 + '…" is out of range -32768..32767'),
    ("0" * 5000 + "1", 1),
    ("1e3", '"1e3" is not a whole number'), ("25.5", '"25.5" is not a whole number'),
    ("٣", '"٣" is not a whole number'), ("1 000", '"1 000" is not a whole number'),
    ("", "is empty"), ("-", '"-" is not a whole number'), (".0", '".0" is not a whole number'),
])
def test_smallint(text: str, expected: object) -> None:
    assert outcome(text, "smallint") == expected


@pytest.mark.parametrize(("declared", "text", "expected"), [
    ("integer", "2147483647", 2147483647),
    ("integer", "2147483648", '"2147483648" is out of range -2147483648..2147483647'),
    ("bigint", "9223372036854775807", 9223372036854775807),
    ("bigint", "-9223372036854775808", -9223372036854775808),
    ("bigint", "9223372036854775808",
     '"9223372036854775808" is out of range -9223372036854775808..9223372036854775807'),
    ("bigint", "99999999999999999999",
     '"99999999999999999999" is out of range -9223372036854775808..9223372036854775807'),
])
def test_integer_and_bigint_limits(declared: str, text: str, expected: object) -> None:
    assert outcome(text, declared) == expected


@pytest.mark.parametrize(("declared", "text", "expected"), [
    ("numeric(12,2)", "3.14", Decimal("3.14")),
    ("numeric(12,2)", "3.1", Decimal("3.10")),
    ("numeric(12,2)", "3.145", Decimal("3.15")),
    ("numeric(12,2)", "-3.145", Decimal("-3.15")),
    ("numeric(12,2)", "3.144999", Decimal("3.14")),
    ("numeric(12,2)", "1.5e3", Decimal("1500.00")),
    ("numeric(12,2)", "+.5", Decimal("0.50")),
    ("numeric(12,2)", "5.", Decimal("5.00")),
    ("numeric(12,2)", "-0.001", Decimal("0.00")),
    ("numeric(12,2)", "9999999999.99", Decimal("9999999999.99")),
    ("numeric(12,2)", "9999999999.995", '"9999999999.995" does not fit numeric(12,2)'),
    ("numeric(12,2)", "1e10", '"1e10" does not fit numeric(12,2)'),
    ("numeric(12,2)", "1e-999999", Decimal("0.00")),
    ("numeric(12,2)", "1e9999999", '"1e9999999" is out of range for numeric'),
    ("numeric(12,2)", "NaN", '"NaN" is not a finite number'),
    ("numeric(12,2)", "-Infinity", '"-Infinity" is not a finite number'),
    ("numeric(12,2)", "1,5", '"1,5" is not a number'),
    ("numeric(12,2)", "1e", '"1e" is not a number'),
    ("numeric(2,2)", "0.994", Decimal("0.99")),
    ("numeric(2,2)", "0.995", '"0.995" does not fit numeric(2,2)'),
    ("numeric", "1.50", Decimal("1.50")),
    ("numeric", "1.5e3", Decimal("1500")),
    ("numeric", "-0.00", Decimal("0.00")),
    ("numeric", "1" * 5000, Decimal("1" * 5000)),
    ("numeric", "1e100000", '"1e100000" is out of range for numeric'),
    ("numeric", "1e-16384", '"1e-16384" is out of range for numeric'),
])
def test_numeric(declared: str, text: str, expected: object) -> None:
    got = outcome(text, declared)
    assert got == expected
    if isinstance(expected, Decimal):  # the same scale, not only the same value
        assert str(got) == str(expected)


def test_numeric_zero_is_never_negative() -> None:
    assert str(outcome("-0.0", "numeric")) == "0.0"
    assert outcome("-0", "numeric(3,1)").as_tuple().sign == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("3.14", 3.14), ("-7", -7.0), ("1e3", 1000.0), ("1E-3", 0.001), (".5", 0.5), ("5.", 5.0),
    ("+2", 2.0), ("0e400", 0.0), ("1.7976931348623157e308", 1.7976931348623157e308),
    ("4.9e-324", 5e-324),
    ("1e309", '"1e309" is out of range for double'),
    ("-1e309", '"-1e309" is out of range for double'),
    ("1e-400", '"1e-400" is out of range for double'),
    ("NaN", '"NaN" is not a finite number'), ("nan", '"nan" is not a finite number'),
    ("inf", '"inf" is not a finite number'), ("-Infinity", '"-Infinity" is not a finite number'),
    ("1_000", '"1_000" is not a number'), ("0x10", '"0x10" is not a number'),
    ("١", '"١" is not a number'), ("1 e3", '"1 e3" is not a number'),
])
def test_double(text: str, expected: object) -> None:
    assert outcome(text, "double") == expected


def test_double_negative_zero_keeps_its_sign() -> None:
    assert str(outcome("-0", "double")) == "-0.0"


@pytest.mark.parametrize(("text", "expected"), [
    *[(t, True) for t in ("true", "TRUE", "True", "t", "T", "yes", "YES", "y", "Y", "1")],
    *[(t, False) for t in ("false", "FALSE", "f", "F", "no", "No", "n", "N", "0")],
    ("on", '"on" is not a boolean (true/false, yes/no, 1/0)'),
    ("01", '"01" is not a boolean (true/false, yes/no, 1/0)'),
    ("tru", '"tru" is not a boolean (true/false, yes/no, 1/0)'),
])
def test_boolean(text: str, expected: object) -> None:
    assert outcome(text, "boolean") == expected


@pytest.mark.parametrize(("text", "declaration", "expected"), [
    ("2024-02-29", {}, date(2024, 2, 29)),
    ("2000-02-29", {}, date(2000, 2, 29)),
    ("0001-01-01", {}, date(1, 1, 1)),
    ("9999-12-31", {}, date(9999, 12, 31)),
    ("2023-02-29", {}, '"2023-02-29" is not a valid date'),
    ("1900-02-29", {}, '"1900-02-29" is not a valid date'),
    ("2024-04-31", {}, '"2024-04-31" is not a valid date'),
    ("0000-01-01", {}, '"0000-01-01" is not a valid date'),
    ("2024-2-29", {}, '"2024-2-29" is not a date (YYYY-MM-DD)'),
    ("20240229", {}, '"20240229" is not a date (YYYY-MM-DD)'),
    ("2024-02-29T00:00", {}, '"2024-02-29T00:00" is not a date (YYYY-MM-DD)'),
    ("２０２４-02-29", {}, '"２０２４-02-29" is not a date (YYYY-MM-DD)'),
    ("29/02/2024", {"format": "%d/%m/%Y"}, date(2024, 2, 29)),
    ("1/2/2024", {"format": "%d/%m/%Y"}, date(2024, 2, 1)),
    ("29/02/2023", {"format": "%d/%m/%Y"}, '"29/02/2023" does not match the format '
                                            '"%d/%m/%Y"'),
    ("٢٩/02/2024", {"format": "%d/%m/%Y"}, '"٢٩/02/2024" does not match the format '
                                            '"%d/%m/%Y"'),
    ("2019-12-31", {"min": "2020-01-01"}, '"2019-12-31" is less than the minimum 2020-01-01'),
    ("2031-01-01", {"max": date(2030, 12, 31)},
     '"2031-01-01" is greater than the maximum 2030-12-31'),
    ("2031-01-01", {"min": "2020-01-01", "max": "2030-12-31"},
     '"2031-01-01" is out of range 2020-01-01..2030-12-31'),
])
def test_date(text: str, declaration: dict[str, object], expected: object) -> None:
    assert outcome(text, "date", **declaration) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-02-29T13:45:00", datetime(2024, 2, 29, 13, 45)),
    ("2024-02-29 13:45", datetime(2024, 2, 29, 13, 45)),
    ("2024-02-29 13:45:07.5", datetime(2024, 2, 29, 13, 45, 7, 500000)),
    ("2024-02-29 13:45:07.000001", datetime(2024, 2, 29, 13, 45, 7, 1)),
    ("2024-02-29", datetime(2024, 2, 29)),
    ("2024-02-29 24:00", datetime(2024, 3, 1)),
    ("2024-12-31T24:00:00.000", datetime(2025, 1, 1)),
    ("2024-02-29 24:00:01", '"2024-02-29 24:00:01" is not a valid timestamp'),
    ("2024-02-29 13:60", '"2024-02-29 13:60" is not a valid timestamp'),
    ("2024-02-29 23:59:60", '"2024-02-29 23:59:60" is not a valid timestamp'),
    ("2023-02-29 12:00", '"2023-02-29 12:00" is not a valid timestamp'),
    ("9999-12-31 24:00", '"9999-12-31 24:00" is out of range for timestamp'),
    ("2024-02-29 13:45:07.1234567",
     '"2024-02-29 13:45:07.1234567" is not a timestamp (YYYY-MM-DD HH:MM:SS)'),
    ("2024-02-29 1:45", '"2024-02-29 1:45" is not a timestamp (YYYY-MM-DD HH:MM:SS)'),
    ("2024-02-29 13:45:00Z",
     '"2024-02-29 13:45:00Z" has a UTC offset (declare the column timestamptz)'),
    ("2024-02-29 13:45+02:00",
     '"2024-02-29 13:45+02:00" has a UTC offset (declare the column timestamptz)'),
])
def test_timestamp(text: str, expected: object) -> None:
    assert outcome(text, "timestamp") == expected


@pytest.mark.parametrize(("text", "declaration", "expected"), [
    ("2024-02-29 13:45:00+02:00", {}, datetime(2024, 2, 29, 11, 45, tzinfo=UTC)),
    ("2024-02-29 13:45:00+0200", {}, datetime(2024, 2, 29, 11, 45, tzinfo=UTC)),
    ("2024-02-29 13:45:00-02", {}, datetime(2024, 2, 29, 15, 45, tzinfo=UTC)),
    ("2024-02-29T13:45Z", {}, datetime(2024, 2, 29, 13, 45, tzinfo=UTC)),
    ("2024-02-29 13:45", {}, datetime(2024, 2, 29, 13, 45, tzinfo=UTC)),
    ("2024-02-29 24:00+01:00", {}, datetime(2024, 2, 29, 23, tzinfo=UTC)),
    ("2024-02-29 13:45+15:59", {}, datetime(2024, 2, 28, 21, 46, tzinfo=UTC)),
    ("2024-02-29 13:45+16:00", {}, '"2024-02-29 13:45+16:00" has an invalid UTC offset'),
    ("2024-02-29 13:45+01:60", {}, '"2024-02-29 13:45+01:60" has an invalid UTC offset'),
    ("0001-01-01 00:30+01:00", {},
     '"0001-01-01 00:30+01:00" is out of range for timestamptz'),
    ("2024-02-29Z", {},
     '"2024-02-29Z" is not a timestamptz (YYYY-MM-DD HH:MM:SS)'),
    ("2024-07-01 12:00", {"timezone": "Europe/Paris"},
     datetime(2024, 7, 1, 10, tzinfo=UTC)),
    ("2024-07-01 12:00Z", {"timezone": "Europe/Paris"},
     datetime(2024, 7, 1, 12, tzinfo=UTC)),
    # New York's spring gap: 02:30 does not exist; read with the offset before it (EST).
    ("2024-03-10 02:30", {"timezone": "America/New_York"},
     datetime(2024, 3, 10, 7, 30, tzinfo=UTC)),
    # Its autumn fold: 01:30 happens twice; the first (EDT) is taken.
    ("2024-11-03 01:30", {"timezone": "America/New_York"},
     datetime(2024, 11, 3, 5, 30, tzinfo=UTC)),
    ("01/07/2024 12:00", {"format": "%d/%m/%Y %H:%M", "timezone": "Europe/Paris"},
     datetime(2024, 7, 1, 10, tzinfo=UTC)),
    ("01/07/2024 12:00 +0300", {"format": "%d/%m/%Y %H:%M %z"},
     datetime(2024, 7, 1, 9, tzinfo=UTC)),
    ("01/07/2024 24:00", {"format": "%d/%m/%Y %H:%M"},
     '"01/07/2024 24:00" does not match the format "%d/%m/%Y %H:%M"'),
    ("2024-01-01 00:00", {"min": "2024-01-01 01:00+01:00"}, datetime(2024, 1, 1, tzinfo=UTC)),
    ("2023-12-31 23:59", {"min": "2024-01-01 01:00+01:00"},
     '"2023-12-31 23:59" is less than the minimum 2024-01-01 00:00:00+00:00'),
])
def test_timestamptz(text: str, declaration: dict[str, object], expected: object) -> None:
    assert outcome(text, "timestamptz", **declaration) == expected


@pytest.mark.parametrize(("text", "declaration", "expected"), [
    ("13:45:07", {}, time(13, 45, 7)),
    ("13:45", {}, time(13, 45)),
    ("9:05", {}, time(9, 5)),
    ("00:00:00.5", {}, time(0, 0, 0, 500000)),
    ("23:59:59.999999", {}, time(23, 59, 59, 999999)),
    ("24:00", {}, '"24:00" is not a time of day (write 00:00 or 23:59:59)'),
    ("24:00:00.000", {}, '"24:00:00.000" is not a time of day (write 00:00 or 23:59:59)'),
    ("24:00:01", {}, '"24:00:01" is not a valid time'),
    ("12:60", {}, '"12:60" is not a valid time'),
    ("23:59:60", {}, '"23:59:60" is not a valid time'),
    ("13:45:07.1234567", {}, '"13:45:07.1234567" is not a time (HH:MM:SS)'),
    ("13:45:07+02:00", {}, '"13:45:07+02:00" is not a time (HH:MM:SS)'),
    ("2024-02-29 13:45", {}, '"2024-02-29 13:45" is not a time (HH:MM:SS)'),
    ("１３:45", {}, '"１３:45" is not a time (HH:MM:SS)'),
    ("9:30 PM", {"format": "%I:%M %p"}, time(21, 30)),
    ("21h30", {"format": "%Hh%M"}, time(21, 30)),
    ("21:30", {"format": "%Hh%M"}, '"21:30" does not match the format "%Hh%M"'),
    ("07:59", {"min": "08:00"}, '"07:59" is less than the minimum 08:00:00'),
    ("18:00:01", {"max": time(18)}, '"18:00:01" is greater than the maximum 18:00:00'),
])
def test_time(text: str, declaration: dict[str, object], expected: object) -> None:
    assert outcome(text, "time", **declaration) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", '"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" is '
                                              "not a uuid"),
    ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1" is not '
                                            "a uuid"),
    ("urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", '"urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd3…" '
                                                      "is not a uuid"),
    ("a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11", '"a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11" is '
                                              "not a uuid"),
])
def test_uuid(text: str, expected: str) -> None:
    got = outcome(text, "uuid")
    assert (str(got) if isinstance(got, uuid.UUID) else got) == expected
    assert isinstance(got, uuid.UUID) == (expected[0] != '"')


@pytest.mark.parametrize(("text", "declaration", "expected"), [
    ("José", {}, "José"),
    ("abcde", {"max_length": 5}, "abcde"),
    ("abcdé!", {"max_length": 5}, "is longer than 5 characters"),
    ("a\x00b", {}, '"a\\u0000b" contains a NUL character'),
    ("a\ud800b", {}, '"a\ud800b" is not valid Unicode'),
    ("paid", {"values": ["new", "paid"]}, "paid"),
    ("Paid", {"values": ["new", "paid"]}, '"Paid" is not one of "new", "paid"'),
    ("x", {"values": list("abcdefg")}, '"x" is not one of "a", "b", "c", "d", "e", …'),
    ("AB12", {"pattern": "[A-Z]{2}[0-9]+"}, "AB12"),
    ("AB12x", {"pattern": "[A-Z]{2}[0-9]+"},
     '"AB12x" does not match the pattern "[A-Z]{2}[0-9]+"'),
    ("", {}, "is empty"),
])
def test_text(text: str, declaration: dict[str, object], expected: object) -> None:
    assert outcome(text, "text", **declaration) == expected


def test_values_and_pattern_are_checked_on_the_text_before_the_type() -> None:
    assert outcome("25.0", "smallint", values=["25"]) == '"25.0" is not one of "25"'
    assert outcome("7", "smallint", pattern="[0-9]{2}") == (
        '"7" does not match the pattern "[0-9]{2}"')
    assert outcome("07", "smallint", pattern="[0-9]{2}", min=10) == (
        '"07" is out of range 10..32767')


def test_parse_never_raises_and_always_answers_a_value_or_a_reason() -> None:
    awkward = ["", " ", "\x00", "\ud800", "-", "+", ".", "e", "1e", "{}", "٣", "𝟙", "\n",
               "9" * 10_000, "1e" + "9" * 10_000, "0." + "0" * 10_000 + "1", "24:00",
               "2024-02-29T24:00+99:99", "{" * 50]
    for declared in ("text", "smallint", "bigint", "numeric", "numeric(5,2)", "double",
                     "boolean", "date", "timestamp", "timestamptz", "uuid"):
        for text in awkward:
            got = parse(text, Rules(column_type(declared)))
            if isinstance(got, Invalid):
                assert got.reason and "\n" not in got.reason


def test_api_parameters_are_read_as_iso_without_the_columns_rules() -> None:
    amount = rules("numeric(12,2)", min=10)
    assert to_python_param("5", amount) == Decimal("5.00")
    when = rules("date", format="%d/%m/%Y")
    assert to_python_param("2024-02-29", when) == date(2024, 2, 29)
    assert to_python_param("x", column_type("integer")) == Invalid('"x" is not a whole number')
    local = rules("timestamptz", timezone="Europe/Paris")
    assert to_python_param("2024-07-01 12:00", local) == datetime(2024, 7, 1, 10, tzinfo=UTC)


# --- encode ------------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "value", "payload"), [
    ("smallint", -2, b"\xff\xfe"),
    ("integer", 1, b"\x00\x00\x00\x01"),
    ("bigint", 2**40, b"\x00\x00\x01\x00\x00\x00\x00\x00"),
    ("double", 1.5, struct.pack(">d", 1.5)),
    ("boolean", True, b"\x01"),
    ("date", date(2000, 1, 2), b"\x00\x00\x00\x01"),
    ("date", date(1999, 12, 31), b"\xff\xff\xff\xff"),
    ("timestamp", datetime(2000, 1, 1, 0, 0, 1), struct.pack(">q", 1_000_000)),
    ("timestamptz", datetime(2000, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
     struct.pack(">q", 0)),
    ("time", time(0, 0, 1, 5), struct.pack(">q", 1_000_005)),
    ("time", time(23, 59, 59, 999999), struct.pack(">q", 86_400_000_000 - 1)),
    ("uuid", uuid.UUID(int=1), b"\x00" * 15 + b"\x01"),
    ("text", "é", "é".encode()),
    # numeric: ndigits, weight, sign, dscale, base-10000 digits
    ("numeric", Decimal("0"), struct.pack(">hhHh", 0, 0, 0, 0)),
    ("numeric", Decimal("0.00"), struct.pack(">hhHh", 0, 0, 0, 2)),
    ("numeric", Decimal("12345.678"), struct.pack(">hhHhhhh", 3, 1, 0, 3, 1, 2345, 6780)),
    ("numeric", Decimal("-0.0001"), struct.pack(">hhHhh", 1, -1, 0x4000, 4, 1)),
    ("numeric", Decimal("10000"), struct.pack(">hhHhh", 1, 1, 0, 0, 1)),
    ("numeric", Decimal("1E+8"), struct.pack(">hhHhh", 1, 2, 0, 0, 1)),
    ("numeric", Decimal("0.000012"), struct.pack(">hhHhh", 1, -2, 0, 6, 1200)),
])
def test_encode_writes_postgresqls_binary_forms(declared: str, value: object,
                                                payload: bytes) -> None:
    assert encode(value, column_type(declared)) == struct.pack(">i", len(payload)) + payload


def test_encode_null_is_length_minus_one() -> None:
    for declared in ("text", "integer", "numeric(5,2)", "uuid", "timestamptz"):
        assert encode(None, column_type(declared)) == b"\xff\xff\xff\xff"


# --- the columnar path agrees with the row path, family by family -------------------------
# Each family registered in coltypes.FAMILIES has its texts (the usual spellings and just
# past its limits), its declarations to try, and its types to encode; a new family without
# them fails test_every_registered_family_has_its_property_cases.


def _integer_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    big = 1 << (8 * kind.byte_width - 1)  # type: ignore[operator]
    number = st.one_of(st.integers(-200, 200), st.integers(-big - 5, big + 5),
                       st.sampled_from([big - 1, -big, big, -big - 1]))
    return st.builds(lambda n, form: form.format(n), number,
                     st.sampled_from(["{}", "{}", "{}.0", "+{}", "0{}", "{}.", "{}e0"]))


def _numeric_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    number = st.decimals(allow_nan=False, allow_infinity=False, places=None,
                         min_value=-10**25, max_value=10**25)
    return st.one_of(
        st.builds(lambda d: f"{d:f}", number),
        st.builds(str, number),
        st.builds(lambda n, s: f"{n / 10**s:.{s}f}", st.integers(-10**20, 10**20),
                  st.integers(0, 6)),
        st.sampled_from(["-0", "0.0", "-0.00", "9999999999.995", "999.995", "NaN"]))


def _double_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(repr, st.floats()), st.builds(lambda x: f"{x:.6e}", st.floats()),
        st.builds(str, st.integers(-10**20, 10**20)),
        st.sampled_from(["1e309", "1e-400", "-0", "0.0e5", "5e-324", "inf", "-nan",
                         "1.7976931348623157e308", "1.7976931348623159e308"]))


def _boolean_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    return st.sampled_from(["true", "false", "TRUE", "t", "F", "yes", "No", "y", "N",
                            "1", "0", "on", "tRuE"])


def _date_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    return st.one_of(st.builds(date.isoformat, st.dates()),
                     st.builds(lambda d: d.strftime("%d/%m/%Y"), st.dates()),
                     st.sampled_from(["2023-02-29", "2024-02-30", "0000-01-01",
                                      "2024-00-10", "2024-13-01", "1/2/2024"]))


def _timestamp_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    moment = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    near = st.datetimes(min_value=datetime(2024, 3, 9), max_value=datetime(2024, 3, 12)
                        ) | st.datetimes(min_value=datetime(2024, 10, 26),
                                         max_value=datetime(2024, 11, 4))
    zone = st.sampled_from(["", "", "Z", "+02:00", "-0530", "+01", "-15:59", "+16:00",
                            "+14"])
    spec = st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds", "auto"])
    return st.one_of(
        st.builds(lambda d, sep, ts, z: d.isoformat(sep=sep, timespec=ts) + z,
                  moment | near, st.sampled_from("T "), spec, zone),
        st.builds(lambda d: d.strftime("%d/%m/%Y %H:%M"), moment | near),
        st.builds(lambda d: d.strftime("%Y-%m-%d"), moment),
        st.sampled_from(["2024-02-29 24:00", "2024-02-29T24:00:00.000+01:00",
                         "9999-12-31 24:00", "0001-01-01 00:00+01:00",
                         "0001-01-01T00:00-01:00", "9999-12-31T23:59:59.999999-01:00",
                         "2024-03-10 02:30", "2024-11-03 01:30", "2024-03-31 01:30",
                         "2024-10-27 01:30", "2024-02-29 23:59:60", "2024-02-29 24:01"]))


def _time_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    spec = st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds", "auto"])
    return st.one_of(
        st.builds(time.isoformat, st.times(), spec),
        st.builds(lambda t: t.strftime("%I:%M %p"), st.times()),
        st.builds(lambda t: f"{t.hour}:{t.minute:02}", st.times()),
        st.sampled_from(["24:00", "24:00:00", "23:59:60", "12:60", "99:99", "00:00:00.",
                         "1:2", "13:45:07.1234567"]))


def _uuid_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    return st.builds(lambda u, form: form(u), st.uuids(), st.sampled_from([
        str, lambda u: u.hex, lambda u: str(u).upper(), lambda u: "{" + str(u) + "}",
        lambda u: u.hex[:4] + "-" + u.hex[4:]]))


def _text_texts(kind: ColumnType) -> st.SearchStrategy[str]:
    return st.text(max_size=12)


# Per family (ColumnType.kind): values of the type written the usual ways, and just past
# its limits.
CANONICAL: dict[str, Callable[[ColumnType], st.SearchStrategy[str]]] = {
    "integer": _integer_texts, "text": _text_texts, "numeric": _numeric_texts,
    "double": _double_texts, "boolean": _boolean_texts, "date": _date_texts,
    "timestamp": _timestamp_texts, "timestamptz": _timestamp_texts, "time": _time_texts,
    "uuid": _uuid_texts,
}


def _canonical(kind: ColumnType) -> st.SearchStrategy[str]:
    return CANONICAL[kind.kind](kind)


_JUNK = st.text(alphabet="0123456789-+.:eETZ {}abcf/٣\x00é", max_size=16)

# Per family: the declarations whose columnar values and bytes must equal the row path's.
CASES_BY_FAMILY: dict[str, list[tuple[str, dict[str, object]]]] = {
    "integer": [("smallint", {}), ("smallint", {"min": 0, "max": 150}), ("integer", {}),
                ("integer", {"values": ["1", "2", "3"]}), ("bigint", {}),
                ("bigint", {"min": -5})],
    "text": [("text", {}), ("text", {"max_length": 3}), ("text", {"values": ["a", "bb", "é"]}),
             ("text", {"pattern": r"[a-z]\d*"})],
    "numeric": [("numeric", {}), ("numeric", {"min": 0}), ("numeric(5,2)", {}),
                ("numeric(12,2)", {"min": 0, "max": 10**6}), ("numeric(18,18)", {}),
                ("numeric(18,0)", {}), ("numeric(30,6)", {}), ("numeric(50,10)", {})],
    "double": [("double", {}), ("double", {"min": -1.5, "max": 1e6})],
    "boolean": [("boolean", {})],
    "date": [("date", {}), ("date", {"min": "2000-01-01", "max": "2100-12-31"}),
             ("date", {"format": "%d/%m/%Y"}), ("date", {"format": "%d %b %Y"})],
    "timestamp": [("timestamp", {}), ("timestamp", {"format": "%d/%m/%Y %H:%M"}),
                  ("timestamp", {"min": "1970-01-01"})],
    "timestamptz": [("timestamptz", {}), ("timestamptz", {"timezone": "America/New_York"}),
                    ("timestamptz", {"timezone": "Europe/London", "format": "%d/%m/%Y %H:%M"}),
                    ("timestamptz", {"max": "2030-01-01T00:00Z"})],
    "time": [("time", {}), ("time", {"min": "08:00", "max": "18:30:00"}),
             ("time", {"format": "%I:%M %p"})],
    "uuid": [("uuid", {})],
}
CASES = [pytest.param(declared, declaration, id=f"{family}/{declared}-{'-'.join(declaration)}")
         for family, cases in CASES_BY_FAMILY.items() for declared, declaration in cases]

# Per family: the types whose encode_column must equal encode for any parsed values.
ENCODED_BY_FAMILY: dict[str, list[str]] = {
    "integer": ["smallint", "integer", "bigint"],
    "text": ["text"],
    "numeric": ["numeric(9,3)", "numeric(18,5)", "numeric(30,2)", "numeric(60,0)", "numeric"],
    "double": ["double"], "boolean": ["boolean"], "date": ["date"],
    "timestamp": ["timestamp"], "timestamptz": ["timestamptz"], "time": ["time"],
    "uuid": ["uuid"],
}
ENCODED = [pytest.param(declared, id=f"{family}/{declared}")
           for family, types in ENCODED_BY_FAMILY.items() for declared in types]


def test_every_registered_family_has_its_property_cases() -> None:
    kinds = [family.kind for family in FAMILIES]
    assert kinds == list(CANONICAL) == list(CASES_BY_FAMILY) == list(ENCODED_BY_FAMILY)
    for family, cases in CASES_BY_FAMILY.items():
        assert {column_type(declared).kind for declared, _ in cases} == {family}
    for family, types in ENCODED_BY_FAMILY.items():
        assert {column_type(declared).kind for declared in types} == {family}
    assert {column_type(declared).kind for declared in SAMPLES} == set(kinds)


@pytest.mark.parametrize(("declared", "declaration"), CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_columnar_values_and_bytes_equal_the_row_paths(
        declared: str, declaration: dict[str, object], data: st.DataObject) -> None:
    column = rules(declared, **declaration)
    kind = column.type
    texts = data.draw(st.lists(st.one_of(_canonical(kind), _JUNK, st.none()), max_size=24))
    values, settled = parse_column(pa.array(texts, pa.large_string()), column)
    assert values.type == kind.arrow_type and len(values) == len(texts)
    expected = [None if t is None else parse(t, column) for t in texts]
    fields = encode_column(values, kind).to_pylist()
    for text, value, done, field, want in zip(texts, values.to_pylist(), settled, fields,
                                              expected, strict=True):
        if not done:
            assert text is not None and value is None
            continue
        assert not isinstance(want, Invalid), (text, want)
        if kind.arrow_type == pa.large_string() and kind.kind == "numeric":
            value = None if value is None else Decimal(value)
        assert value == want, text
        assert field == encode(want, kind), text
    # Every canonical spelling is settled.
    if kind.kind != "text" and not declaration:
        for text, done, want in zip(texts, settled, expected, strict=True):
            if text is not None and _is_canonical(text, want, kind):
                assert done, text


def _is_canonical(text: str, value: object, kind: ColumnType) -> bool:
    if isinstance(value, Invalid):
        return False
    if kind.kind == "integer":
        return text == str(value)
    if kind.kind == "date":
        return text == value.isoformat()
    if kind.kind == "timestamp":
        return text in (value.isoformat(), value.isoformat(sep=" "))
    if kind.kind == "uuid":
        return text == str(value)
    if kind.kind == "time":
        return len(text) >= 5 and text[2] == ":" and text == value.isoformat()[:len(text)]
    if kind.kind == "boolean":
        return text in ("true", "false")
    return False


@pytest.mark.parametrize("declared", ENCODED)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_encode_column_equals_encode_for_any_parsed_values(declared: str,
                                                           data: st.DataObject) -> None:
    """Also for values parse_column leaves to the row path (rounded, negative zero ...)."""
    kind = column_type(declared)
    texts = data.draw(st.lists(_canonical(kind) | st.none(), max_size=20))
    parsed = [None if t is None else parse(t, Rules(kind)) for t in texts]
    parsed = [None if isinstance(v, Invalid) else v for v in parsed]
    if kind.arrow_type == pa.large_string() and kind.kind == "numeric":
        array = pa.array([None if v is None else str(v) for v in parsed], kind.arrow_type)
    elif kind.kind == "uuid":
        array = pa.ExtensionArray.from_storage(kind.arrow_type, pa.array(
            [None if v is None else v.bytes for v in parsed], pa.binary(16)))
    else:
        array = pa.array(parsed, kind.arrow_type)
    assert encode_column(array, kind).to_pylist() == [encode(v, kind) for v in parsed]


def test_columnar_settles_the_common_spellings() -> None:
    common = {
        "smallint": ["42", "-7", "25.0"], "bigint": ["9223372036854775807"],
        "numeric(12,2)": ["3.14", "-0.5", "100"], "numeric": ["3.14159", "-2"],
        "double": ["3.14", "-1e-5", "42"], "boolean": ["true", "F", "yes", "0"],
        "date": ["2024-02-29"],
        "timestamp": ["2024-02-29T13:45:00", "2024-02-29 13:45", "2024-02-29 13:45:00.123"],
        "timestamptz": ["2024-02-29 13:45:00+02:00", "2024-02-29T13:45:00Z",
                        "2024-02-29 13:45:00"],
        "uuid": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC999C0B4EF8BB6D6BB9BD380A11"],
        "time": ["13:45", "13:45:07", "00:00:00.000001"],
        "text": ["anything at all"],
    }
    for declared, texts in common.items():
        _, settled = parse_column(pa.array(texts), Rules(column_type(declared)))
        assert settled.all(), declared
    paris = rules("timestamptz", timezone="Europe/Paris", format="%d/%m/%Y %H:%M")
    assert parse_column(pa.array(["01/07/2024 12:00"]), paris)[1].all()


def test_columnar_nulls_are_settled_nulls() -> None:
    values, settled = parse_column(pa.array([None, "1", None], pa.string()),
                                   Rules(column_type("integer")))
    assert values.to_pylist() == [None, 1, None] and settled.tolist() == [True] * 3
    assert encode_column(values, column_type("integer")).to_pylist() == [
        b"\xff\xff\xff\xff", b"\x00\x00\x00\x04\x00\x00\x00\x01", b"\xff\xff\xff\xff"]


# --- against PostgreSQL ------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[psycopg2.extensions.connection]:
    name = f"chute_test_coltypes_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg2.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    try:
        yield conn
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


SAMPLES = {
    "smallint": ["0", "-32768", "32767", "150"],
    "integer": ["-2147483648", "2147483647", "7"],
    "bigint": ["-9223372036854775808", "9223372036854775807", "0"],
    "numeric": ["0", "-0.00", "1.50", "1.5e3", "12345.678", "-0.0001", "0.000012",
                "100000000", "1" * 300 + "." + "9" * 300, "1e-1000"],
    "numeric(12,2)": ["3.145", "-3.145", "9999999999.99", "0.001", "100", "-0.5"],
    "numeric(18,18)": ["0.123456789012345678", "-0.000000000000000001"],
    "numeric(50,10)": ["1234567890123456789012345678901234567890.0123456789", "-1"],
    "double": ["3.14", "-0", "1.7976931348623157e308", "5e-324", "-1e-300"],
    "boolean": ["true", "f"],
    "date": ["0001-01-01", "1999-12-31", "2000-01-01", "2024-02-29", "9999-12-31"],
    "timestamp": ["0001-01-01 00:00", "1999-12-31 23:59:59.999999", "2024-02-29 24:00",
                  "9999-12-31T23:59:59.999999"],
    "timestamptz": ["2024-02-29 13:45:00+02:00", "1969-07-20T20:17:40Z", "2024-03-10 02:30",
                    "0001-01-01T00:00:00Z"],
    "time": ["00:00", "23:59:59.999999", "12:00:00.5", "9:05"],
    "uuid": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{00000000000000000000000000000000}"],
    "text": ["José", "😀 with spaces", "x" * 10_000],
}


@pytest.mark.parametrize("declared", list(SAMPLES))
def test_postgresql_reads_the_encoded_fields_as_the_parsed_values(
        database: psycopg2.extensions.connection, declared: str) -> None:
    """COPY ... FROM STDIN (FORMAT binary) with encode()'s and encode_column()'s fields
    stores what parse() returned, and PostgreSQL's own binary output is those bytes."""
    kind = column_type(declared)
    column = Rules(kind, timezone="America/New_York")
    texts = SAMPLES[declared]
    parsed = [parse(t, column) for t in texts]
    assert not any(isinstance(v, Invalid) for v in parsed), parsed
    fields = [encode(v, kind) for v in parsed] + [encode(None, kind)]
    # The columnar way, with the row path for what it leaves, gives the same fields.
    values, settled = parse_column(pa.array([*texts, None]), column)
    columnar = encode_column(values, kind).to_pylist()
    assert [c if done else encode(parse(t, column), kind)
            for c, done, t in zip(columnar, settled, texts, strict=False)] == fields[:-1]
    assert settled[-1] and columnar[-1] == fields[-1]
    stream = (b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
              + b"".join(struct.pack(">hi", 2, 4) + struct.pack(">i", i) + field
                         for i, field in enumerate(fields))
              + struct.pack(">h", -1))
    with database, database.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(f"CREATE TEMP TABLE t (i integer, v {kind.pg_type})")
        cur.copy_expert("COPY t FROM STDIN (FORMAT binary)", io.BytesIO(stream))
        cur.execute("SELECT v FROM t ORDER BY i")
        stored = [row[0] for row in cur.fetchall()]
        out = io.BytesIO()
        cur.copy_expert("COPY (SELECT v FROM t ORDER BY i) TO STDOUT (FORMAT binary)", out)
        cur.execute("DROP TABLE t")
    if declared == "uuid":
        stored = [None if v is None else uuid.UUID(v) for v in stored]
    assert stored == [*parsed, None]
    if declared.startswith("numeric"):
        assert [str(v) for v in stored[:-1]] == [str(v) for v in parsed]  # same scale
    assert _copy_fields(out.getvalue()) == fields


def _copy_fields(stream: bytes) -> list[bytes]:
    """The field of each one-column tuple of a binary COPY stream, length included."""
    at = 19
    fields = []
    while True:
        (count,) = struct.unpack_from(">h", stream, at)
        if count == -1:
            return fields
        (length,) = struct.unpack_from(">i", stream, at + 2)
        size = 4 + max(length, 0)
        fields.append(stream[at + 2:at + 2 + size])
        at += 2 + size


# Patterns RE2 reads as re does (decided by RE2 a column at a time), and ones it does not
# (decided by re, once per distinct value): settled values must agree with parse().
PATTERNS = ["[^@ ]+@[^@ ]+\\.[a-z]{2,}", "[A-Z]{3}-[0-9]{2}", "\\d+(\\.\\d+)?", "a|ab|abc",
            "(?:x.)+", "\\w+ \\w+", "a{,2}b", "(?i)abc", "(?=a)\\w+", "[[:alpha:]]+"]


@settings(deadline=None, max_examples=300)
@given(pattern=st.sampled_from(PATTERNS),
       texts=st.lists(st.one_of(
           st.sampled_from(["ana@x.org", "é@x.fr", "ABC-12", "abc-12", "12.5", "١٢", "ab",
                            "abc", "xaxb", "xa", "a b", "é ü", "aab", "b", "ABC", "a{,2}b",
                            "alpha", "ß"]),
           st.text(st.sampled_from("ab.@-1é ABCx{}"), max_size=8).filter(bool)),
           min_size=1, max_size=12))
def test_a_pattern_settles_only_what_re_would_accept(pattern: str, texts: list[str]) -> None:
    text_rules = rules("text", pattern=pattern)
    values, settled = parse_column(pa.array(texts, pa.large_string()), text_rules)

    for text, value, done in zip(texts, values.to_pylist(), settled, strict=True):
        if done:
            assert parse(text, text_rules) == value == text, (pattern, text)


def test_a_pattern_both_engines_read_alike_is_settled_a_column_at_a_time() -> None:
    texts = pa.array(["ana@x.org", "é@x.fr", "bad", "ABC-12"], pa.large_string())
    _, settled = parse_column(texts, rules("text", pattern="[^@ ]+@[^@ ]+\\.[a-z]{2,}"))
    assert settled.tolist() == [True, True, False, False]
    _, settled = parse_column(texts, rules("text", pattern="\\w+@\\w+\\.\\w+"))
    assert settled.tolist() == [True, False, False, False]  # \w: re's is Unicode, RE2's not


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.query_pattern is not None],
                         ids=lambda f: f.kind)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_query_pattern_draws_only_values_of_its_type(family: object,
                                                       data: st.DataObject) -> None:
    """The API's document gives these patterns to clients and to schemathesis."""
    kind = column_type(family.names[0])  # type: ignore[attr-defined]
    text = data.draw(st.from_regex(family.query_pattern, fullmatch=True))  # type: ignore[attr-defined]
    assert not isinstance(to_python_param(text, Rules(kind)), Invalid), text


def test_every_family_a_query_writes_as_a_string_has_a_query_pattern() -> None:
    for family in FAMILIES:
        kind = column_type(family.names[0])
        if kind.json_kind == "string" and kind.kind not in ("text", "numeric", "uuid"):
            assert family.query_pattern is not None, family.kind
