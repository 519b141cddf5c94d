"""Query-string parameters, declared once per route: the views parse requests with these
declarations and api/openapi.py documents them from the same objects, so the served
validation and the published document cannot drift apart.

Rules every route shares: a parameter given empty (`?limit=`) or twice, or one the route
does not know, is a 400 that names it; to use a default, leave the parameter out.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from api.errors import bad_request
from chute.datasets.types import ColumnType, Invalid, Rules, make_rules, parse

MAX_TEXT = 200
MAX_BIGINT = 2**63 - 1
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")


class Param(Protocol):
    name: str
    description: str

    def parse(self, raw: str) -> Any: ...

    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Integer:
    name: str
    description: str
    low: int
    high: int
    default: int | None = None

    def parse(self, raw: str) -> int:
        # int() alone would take " 5", "+5", "5_000" and non-ASCII digits.
        if not _WHOLE_NUMBER.fullmatch(raw):
            raise bad_request(f"{self.name} must be a whole number, got {show(raw)}")
        value = int(raw) if len(raw) <= 20 else MAX_BIGINT  # no need to read a huge number
        if not self.low <= value <= self.high:
            shown = raw if len(raw) <= 20 else raw[:20] + "…"
            raise bad_request(f"{self.name} must be between {self.low} and {self.high}, "
                              f"got {shown}")
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Text:
    """Free text matched exactly (case and spaces included) against a stored value."""

    name: str
    description: str
    max_length: int = MAX_TEXT

    def parse(self, raw: str) -> str:
        # NUL: PostgreSQL text cannot hold it. (Bytes that are not UTF-8 arrive already
        # replaced by U+FFFD: aiohttp decodes the query string that way.)
        if len(raw) > self.max_length or "\x00" in raw:
            raise bad_request(f"{self.name} must be at most {self.max_length} characters, "
                              f"without NUL")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_length,
                "pattern": "^[^\\u0000]*$"}




@dataclass(frozen=True)
class Typed:
    """A value of a dataset column's type, read as the column's values are (coltypes)."""

    name: str
    description: str
    type: ColumnType
    rules: Rules

    @classmethod
    def of(cls, name: str, description: str, kind: ColumnType, timezone: str = "UTC"
           ) -> Typed:
        """`timezone`: where a timestamptz value without an offset is read, as the
        column's values are. Values are ISO 8601 whatever the column's `format`."""
        return cls(name, description, kind,
                   make_rules(kind, timezone=timezone) if kind.name == "timestamptz"
                   else make_rules(kind))

    def parse(self, raw: str) -> Any:
        if len(raw) > MAX_TEXT or "\x00" in raw:
            raise bad_request(f"{self.name} must be at most {MAX_TEXT} characters, "
                              "without NUL")
        value = parse(raw, self.rules)
        if isinstance(value, Invalid):
            raise bad_request(f"{self.name}: {value.reason}")
        return value

    def schema(self) -> dict[str, Any]:
        """From the column's type: its JSON kind, and for texts its family's pattern."""
        kind = self.type
        if kind.json_kind == "integer":
            return {"type": "integer", "minimum": kind.low, "maximum": kind.high}
        if kind.json_kind in ("number", "boolean"):
            return {"type": kind.json_kind}
        if kind.json_format == "uuid":
            return {"type": "string", "format": "uuid"}
        if kind.kind == "numeric":
            whole, scale = ((kind.precision - kind.scale, kind.scale)
                            if kind.precision is not None else (20, 20))
            digits = f"[0-9]{{1,{whole}}}" if whole else "0"
            fraction = f"(\\.[0-9]{{1,{scale}}})?" if scale else ""
            return {"type": "string", "pattern": f"^-?{digits}{fraction}$"}
        return {"type": "string", "pattern": kind.family.query_pattern}


@dataclass(frozen=True)
class Choice:
    name: str
    description: str
    allowed: tuple[str, ...]

    def parse(self, raw: str) -> str:
        if raw not in self.allowed:
            raise bad_request(f"{self.name} must be one of {', '.join(self.allowed)}, "
                              f"got {show(raw)}")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.allowed)}


@dataclass(frozen=True)
class Cursor:
    """An opaque position for keyset pagination: the last item's sort key, tagged with
    the listing that gave it out, so one listing's cursor is refused by another."""

    listing: str
    size: int
    name: str = "cursor"
    description: str = "The `next_cursor` of the previous page; leave out for the first page."

    def encode(self, position: list[int]) -> str:
        text = json.dumps([self.listing, *position], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def parse(self, raw: str) -> list[int]:
        unknown = bad_request("cursor is not one this listing gave out")
        if not _CURSOR.fullmatch(raw):
            raise unknown
        try:
            value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            raise unknown from None
        if (not isinstance(value, list) or len(value) != self.size + 1
                or value[0] != self.listing
                or not all(type(v) is int and 0 <= v <= MAX_BIGINT for v in value[1:])):
            raise unknown
        return value[1:]

    def schema(self) -> dict[str, Any]:
        # A format, not a pattern: no pattern can tell a cursor we gave out from any other
        # string. The format names the listing whose next_cursor goes here.
        return {"type": "string", "format": f"{self.listing}-cursor", "minLength": 1,
                "maxLength": 200}


class Query:
    """The query parameters one route accepts. `ignored` names are accepted with any
    value and dropped unread (the old client's connection settings)."""

    def __init__(self, *params: Param, ignored: tuple[str, ...] = ()) -> None:
        self.params = params
        self.ignored = ignored
        self._known = {p.name: p for p in params}
        self._accepted = frozenset(self._known) | frozenset(ignored)

    def parse(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        unknown = sorted(set(query) - self._accepted)
        if unknown:
            raise bad_request(f"unknown parameter {show(unknown[0])}; this route takes "
                              f"{', '.join([*self._known, *self.ignored]) or 'none'}")
        values: dict[str, Any] = {}
        for name, param in self._known.items():
            given = query.getall(name, ())
            if not given:
                values[name] = getattr(param, "default", None)
            elif len(given) > 1:
                raise bad_request(f"{name} is given {len(given)} times; give it once")
            elif given[0] == "":
                raise bad_request(f"{name} is empty; leave it out to get the default")
            else:
                values[name] = param.parse(given[0])
        return values


def file_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["file_id"]
    if not _UUID.fullmatch(raw):
        raise bad_request(f"file_id must be a uuid like 0b7e4f7a-1d2c-4e5f-8a9b-0c1d2e3f4a5b, "
                          f"got {show(raw)}")
    return uuid.UUID(raw)


def show(raw: str) -> str:
    """A user's value, quoted and cut short, for an error message (a lone surrogate
    becomes "?": the answer must encode as UTF-8)."""
    cut = raw[:40].encode("utf-8", "replace").decode()
    return json.dumps(cut + ("…" if len(raw) > 40 else ""), ensure_ascii=False)
