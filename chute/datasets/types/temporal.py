"""date, timestamp, timestamptz: days and microseconds, read as ISO or with a `format`.

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
Out-of-range dates and times (beyond 0001-01-01..9999-12-31, also after applying an
offset) are "out of range for <type>". In Arrow: date32, timestamp("us") and
timestamp("us", "UTC"); in COPY: days or microseconds since 2000-01-01.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cache, partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from chute.errors import RuleDeclarationError


def declare(name: str) -> ColumnType | None:
    if name == "date":
        return ColumnType("date", "date", True, "string", "date", "date", pa.date32(), DATE)
    if name == "timestamp":
        return ColumnType("timestamp", "timestamp without time zone", True, "string",
                          "date-time", "timestamp", pa.timestamp("us"), TIMESTAMP)
    if name == "timestamptz":
        return ColumnType("timestamptz", "timestamp with time zone", True, "string",
                          "date-time", "timestamptz", pa.timestamp("us", tz="UTC"),
                          TIMESTAMPTZ)
    return None


# ---------------------------------------------------------------------------------------
# Row by row

_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_ISO_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?)?")
_MAX_OFFSET_HOURS = 15  # PostgreSQL refuses offsets beyond 15:59


def parse_date(text: str, rules: Rules) -> date | Invalid:
    if rules.format is not None:
        parsed = read_format(text, rules)
        return parsed if isinstance(parsed, Invalid) else in_bounds(text, parsed.date(), rules)
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        return Invalid(f"{quote(text)} is not a date (YYYY-MM-DD)")
    try:
        value = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return Invalid(f"{quote(text)} is not a valid date")
    return in_bounds(text, value, rules)


def parse_timestamp(text: str, rules: Rules) -> datetime | Invalid:
    aware = rules.type.kind == "timestamptz"
    if rules.format is not None:
        value = read_format(text, rules)
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
    return in_bounds(text, value, rules)


def read_format(text: str, rules: Rules) -> datetime | Invalid:
    """A date or time read with the column's `format`. ASCII only: strptime's \\d also
    takes other scripts' digits, which no other type accepts."""
    try:
        if not text.isascii():
            raise ValueError
        value = datetime.strptime(text, rules.format)  # type: ignore[arg-type]
    except ValueError:
        return Invalid(f"{quote(text)} does not match the format {quote(rules.format)}")
    return value


# ---------------------------------------------------------------------------------------
# Formats


_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)
_DATE_DIRECTIVES = set("dmyYbBaAjUWwuGVx")
_TIME_DIRECTIVES = set("HIMSfpX")
# Fixed-width directives the columnar path reads itself: name and width.
_FIXED = {"Y": ("year", 4), "m": ("month", 2), "d": ("day", 2), "H": ("hour", 2),
          "M": ("minute", 2), "S": ("second", 2)}


def check_format(format: str, kind: str) -> None:  # noqa: A002
    if not isinstance(format, str):
        raise RuleDeclarationError("format: must be a strptime format string")
    directives = _DIRECTIVE.findall(format)
    if format.count("%") != 2 * directives.count("%") + len(
            [d for d in directives if d != "%"]):
        raise RuleDeclarationError(f"format: {quote(format)} ends with a lone %")
    allowed = {"%"} | (_TIME_DIRECTIVES if kind == "time" else _DATE_DIRECTIVES)
    if kind in ("timestamp", "timestamptz"):
        allowed |= _TIME_DIRECTIVES | ({"z"} if kind == "timestamptz" else set())
    for directive in directives:
        if directive not in allowed:
            if directive == "z":
                why = "reads a UTC offset (declare the column timestamptz)"
            elif directive in _TIME_DIRECTIVES and kind == "date":
                why = "reads a time (declare the column timestamp)"
            elif directive in _DATE_DIRECTIVES and kind == "time":
                why = "reads a date (declare the column timestamp)"
            else:
                why = "is not a directive this column can use"
            raise RuleDeclarationError(f"format: %{directive} {why}")
    if not [d for d in directives if d != "%"]:
        raise RuleDeclarationError(f"format: {quote(format)} has no % directive, so it "
                                   f"reads no {'time' if kind == 'time' else 'date'}")


@dataclass(frozen=True)
class _Template:
    """A format of fixed-width fields only (%Y %m %d %H %M %S and literal characters):
    the columnar path checks its shape with a regular expression and reads each field
    at its fixed position."""

    regex: str
    length: int
    fields: tuple[tuple[str, int, int], ...]  # name, position, width


@cache
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
# A column at a time: the shape is checked with a regular expression and each field read
# as digits at its position, in numpy. Days are counted from 1970-01-01 (Arrow's date32
# and timestamp epoch).

_US_PER_DAY = 86_400_000_000
_MIN_DAYS = -719_162  # 0001-01-01
_MAX_DAYS = 2_932_896  # 9999-12-31
# Outside these years the columnar path leaves zone conversions to zoneinfo: Arrow's time
# zone library and zoneinfo read the same tz database, but may extend its rules past the
# last transition differently.
_ZONE_YEARS = (1900, 2037)


def parse_date_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    if rules.format is not None:
        fields, ok = _template_fields(texts, _template(rules.format))
    else:
        ok = shape(texts, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        fields = _read_fields(texts, ok, (("year", 0, 4), ("month", 5, 2), ("day", 8, 2)))
    days, valid = _days(fields)
    ok &= valid
    if rules._low is not None:
        ok &= days >= _day_number(rules._low)  # type: ignore[arg-type]
    if rules._high is not None:
        ok &= days <= _day_number(rules._high)  # type: ignore[arg-type]
    return pa.array(days.astype(np.int32), pa.int32(), mask=~ok).view(pa.date32()), ok


def parse_timestamp_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    aware = rules.type.kind == "timestamptz"
    count = len(texts)
    offset = np.zeros(count, dtype=np.int64)  # seconds east of UTC
    has_offset = np.zeros(count, dtype=bool)
    if rules.format is not None:
        fields, ok = _template_fields(texts, _template(rules.format))
        for name in ("hour", "minute", "second"):
            fields.setdefault(name, np.zeros(count, dtype=np.int64))
        fields["micro"] = np.zeros(count, dtype=np.int64)
        late = np.zeros(count, dtype=bool)  # strptime reads no 24:00
    else:
        zone = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?" if aware else ""
        ok = shape(texts, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}"
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
                same = to_numpy(pc.equal(pc.local_timestamp(utc), wall), False)
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
    for rows, matrix in by_length(texts, ok):
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
            fields["year"][at] = digits_at(part, 0, 4)
            fields["month"][at] = digits_at(part, 5, 2)
            fields["day"][at] = digits_at(part, 8, 2)
            if base >= 16:
                fields["hour"][at] = digits_at(part, 11, 2)
                fields["minute"][at] = digits_at(part, 14, 2)
            if base >= 19:
                fields["second"][at] = digits_at(part, 17, 2)
            if base >= 21:
                fields["micro"][at] = digits_at(part, 20, base - 20) * 10 ** (26 - base)
            if width >= 3:
                hours = digits_at(part, base + 1, 2)
                minutes = digits_at(part, base + (4 if width == 6 else 3), 2) if width >= 5 \
                    else 0
                east = np.where(part[:, base] == ord("-"), -1, 1)
                offset[at] = east * (hours * 3600 + minutes * 60)
                good_zone[at] = (hours <= _MAX_OFFSET_HOURS) & (minutes <= 59)
            has_offset[at] = width > 0
    ok &= good_zone  # the row path says why


def _read_fields(texts: pa.Array, ok: np.ndarray, layout: tuple[tuple[str, int, int], ...]
                 ) -> dict[str, np.ndarray]:
    fields = {name: np.zeros(len(texts), dtype=np.int64) for name, _, _ in layout}
    for rows, matrix in by_length(texts, ok):
        for name, position, width in layout:
            fields[name][rows] = digits_at(matrix, position, width)
    return fields


def _template_fields(texts: pa.Array, template: _Template | None
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fields of texts in a fixed-width format; a format with other directives settles
    nothing here (strptime reads each of those texts)."""
    if template is None:
        return {n: np.zeros(len(texts), dtype=np.int64) for n in ("year", "month", "day")}, \
            np.zeros(len(texts), dtype=bool)
    ok = shape(texts, template.regex)
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


# ---------------------------------------------------------------------------------------
# Binary COPY fields

_PG_EPOCH = datetime(2000, 1, 1)
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * _US_PER_DAY
_MICROSECOND = timedelta(microseconds=1)
_INT32_FIELD = struct.Struct(">ii")
_INT64_FIELD = struct.Struct(">iq")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


def encode_date(value: object, type: ColumnType) -> bytes:  # noqa: A002
    return _INT32_FIELD.pack(4, value.toordinal() - 730_120)  # type: ignore[attr-defined]


def encode_timestamp(value: object, type: ColumnType) -> bytes:  # noqa: A002
    if value.tzinfo is not None:  # type: ignore[attr-defined]
        value = value.astimezone(UTC).replace(tzinfo=None)  # type: ignore[attr-defined]
    return _INT64_FIELD.pack(8, (value - _PG_EPOCH) // _MICROSECOND)  # type: ignore[operator]


def encode_date_column(values: pa.Array, type: ColumnType, valid: np.ndarray  # noqa: A002
                       ) -> pa.Array:
    days = to_numpy(values.view(pa.int32()), 0).astype(np.int64) - _PG_EPOCH_DAYS
    return fixed(days, ">i4", 4, valid)


def encode_timestamp_column(values: pa.Array, type: ColumnType,  # noqa: A002
                            valid: np.ndarray) -> pa.Array:
    micros = to_numpy(values.view(pa.int64()), 0) - _PG_EPOCH_US
    return fixed(micros, ">i8", 8, valid)


def decode_date(raw: bytes, type: ColumnType) -> date:  # noqa: A002
    return date(2000, 1, 1) + timedelta(days=_INT32.unpack(raw)[0])


def decode_timestamp(raw: bytes, type: ColumnType) -> datetime:  # noqa: A002
    return _PG_EPOCH + timedelta(microseconds=_INT64.unpack(raw)[0])


def decode_timestamptz(raw: bytes, type: ColumnType) -> datetime:  # noqa: A002
    return decode_timestamp(raw, type).replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# Declarations: min/max from TOML, and what infer guesses


def bound(rule: str, value: object, base: Rules) -> object:
    """TOML gives a date, a naive datetime (local) or an aware datetime (offset)."""
    kind = base.type.kind
    if isinstance(value, datetime):
        if kind == "date":
            raise wrong_bound(rule, value, base)
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
        return bound(rule, datetime.combine(value, time()), base)
    raise wrong_bound(rule, value, base)


# For the API's document: years 1000-9999 and days 1-28, so that every drawn text parses.
_DATE_PATTERN = "[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
_TIME_PATTERN = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"

DATE = Family("date", ("date",), declare, parse_date, parse_date_column, encode_date,
              encode_date_column, decode_date, bound=bound,
              check_format=partial(check_format, kind="date"), guesses=("date",),
              query_pattern=f"^{_DATE_PATTERN}$")
TIMESTAMP = Family("timestamp", ("timestamp",), declare, parse_timestamp,
                   parse_timestamp_column, encode_timestamp, encode_timestamp_column,
                   decode_timestamp, bound=bound,
                   check_format=partial(check_format, kind="timestamp"),
                   guesses=("timestamp",),
                   query_pattern=f"^{_DATE_PATTERN}T{_TIME_PATTERN}$")
TIMESTAMPTZ = Family("timestamptz", ("timestamptz",), declare, parse_timestamp,
                     parse_timestamp_column, encode_timestamp, encode_timestamp_column,
                     decode_timestamptz, bound=bound,
                     check_format=partial(check_format, kind="timestamptz"),
                     guesses=("timestamptz",),
                     query_pattern=f"^{_DATE_PATTERN}T{_TIME_PATTERN}"
                                   "(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")
