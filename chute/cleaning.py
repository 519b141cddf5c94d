"""Header and row rules for people files: which columns to use and what a clean row is.

Pure functions with no I/O, so the rules can be tested exhaustively and reused by any stage.
clean_row runs once per row on files of millions of rows: a valid row takes a short path with
no regex and no exceptions, and a bad row is returned as a reason string rather than raised,
because a bad row is expected data to store as a reject, not a failure of the program.
"""

import json
import re
from typing import NamedTuple

REQUIRED = ("fullname", "age", "location")
AGE_MIN = 0
AGE_MAX = 150
REASON_VALUE_LIMIT = 40  # a reject reason quotes the bad value; keep reasons one readable line
# Longest fullname and location, in characters after cleaning. Names and locations are
# indexed (btree entries hold at most 2704 bytes); 500 characters of up to 4 UTF-8 bytes
# each always fit, and no real name or place comes near it.
TEXT_MAX = 500

# ASCII digits only ([0-9], not \d, which also matches e.g. Arabic-Indic digits). A sign is
# accepted so that "-5" is reported as out of range rather than as "not a whole number".
_AGE_RE = re.compile(r"([+-]?)([0-9]+)(?:\.0*)?")
# Almost every real age is written canonically; a dict hit skips the regex entirely.
_AGES = {str(n): n for n in range(AGE_MIN, AGE_MAX + 1)}
# NamedTuple construction goes through a Python-level __new__; calling tuple.__new__ directly
# builds the same object in about half the time, which matters once per row.
_new = tuple.__new__


class HeaderError(ValueError):
    """The file cannot be used as a whole; str(e) is a reason a person understands."""


class Columns(NamedTuple):
    fullname: int  # index of each required column in the header
    age: int
    location: int
    count: int  # number of header fields; every data record must have exactly this many


class CleanRow(NamedTuple):
    first_name: str
    last_name: str | None
    age: int
    location: str


def find_columns(header: list[str]) -> Columns:
    """Locate the required columns; names match ignoring case and surrounding whitespace.

    Extra columns are allowed (and ignored later) so that exports with more data still load.
    A duplicate is an error rather than "first wins", since silently picking one could load
    the wrong data; it is reported before missing columns because it is found while scanning.
    """
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        if key in REQUIRED:
            if key in found:
                raise HeaderError(f"duplicate column: {key}")
            found[key] = index
    missing = [name for name in REQUIRED if name not in found]
    if len(missing) == len(REQUIRED):
        # Most likely the file starts with data, not a header; say so instead of listing all.
        raise HeaderError("no header: expected columns " + ", ".join(REQUIRED))
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise HeaderError(f"missing required column{plural}: " + ", ".join(missing))
    return Columns(found["fullname"], found["age"], found["location"], len(header))


def clean_row(fields: list[str], columns: Columns) -> CleanRow | str:
    """Return the cleaned row, or a reason string naming every bad field.

    Never raises for any list of strings, so one odd row cannot stop a file.
    """
    name_at, age_at, location_at, count = columns
    if len(fields) != count:
        # Fields are located by position; with the wrong count they may be shifted, so no
        # field-level checks are meaningful.
        return f"expected {count} fields, found {len(fields)}"
    # Trim and collapse whitespace runs to one space, as " ".join(text.split()) does. Most
    # values are already clean and this check is about three times cheaper than the split
    # and join. isprintable() is False for every whitespace character except " " (the tests
    # check all of Unicode), so a printable value without "  " has nothing to collapse.
    # Inlined rather than a helper: a call per field is a measurable share of the row cost.
    fullname = fields[name_at].strip()
    if "  " in fullname or not fullname.isprintable():
        fullname = " ".join(fullname.split())
    location = fields[location_at].strip()
    if "  " in location or not location.isprintable():
        location = " ".join(location.split())
    age = _AGES.get(fields[age_at])
    # One comparison covers both "not empty" and "not too long" for each text field.
    text_ok = 0 < len(fullname) <= TEXT_MAX and 0 < len(location) <= TEXT_MAX
    if text_ok and age is not None:
        first, _, last = fullname.partition(" ")
        return _new(CleanRow, (first, last or None, age, location))
    # Slow path: a reject, or an age written non-canonically such as " 25" or "25.0".
    age_or_problem = _parse_age(fields[age_at].strip())
    if text_ok and not isinstance(age_or_problem, str):
        first, _, last = fullname.partition(" ")
        return _new(CleanRow, (first, last or None, age_or_problem, location))
    problems = []
    if problem := _text_problem("fullname", fullname):
        problems.append(problem)
    if isinstance(age_or_problem, str):
        problems.append(age_or_problem)
    if problem := _text_problem("location", location):
        problems.append(problem)
    return "; ".join(problems)


def _text_problem(name: str, value: str) -> str | None:
    """Why a cleaned fullname or location cannot be stored, or None when it can."""
    if not value:
        return f"{name}: is empty"
    if len(value) > TEXT_MAX:
        return f"{name}: is longer than {TEXT_MAX} characters"
    return None


def _parse_age(text: str) -> int | str:
    """Parse a trimmed age that missed the canonical fast path; a str return is the reason."""
    if not text:
        return "age: is empty"
    match = _AGE_RE.fullmatch(text)
    if match is None:
        return f"age: {_quote(text)} is not a whole number"
    sign, digits = match.groups()
    digits = digits.lstrip("0") or "0"
    # Compare lengths before int(): int() of a very long digit string is slow and, past
    # sys.get_int_max_str_digits() (4300 by default), raises ValueError.
    if len(digits) > len(str(AGE_MAX)):
        return f"age: {_quote(text)} is out of range {AGE_MIN}..{AGE_MAX}"
    value = -int(digits) if sign == "-" else int(digits)
    if not AGE_MIN <= value <= AGE_MAX:
        return f"age: {_quote(text)} is out of range {AGE_MIN}..{AGE_MAX}"
    return value


def _quote(value: str) -> str:
    """Quote a value for a reason: escaped so quotes and line breaks cannot garble it."""
    if len(value) > REASON_VALUE_LIMIT:
        value = value[:REASON_VALUE_LIMIT] + "…"
    return json.dumps(value, ensure_ascii=False)
