"""Query-string parameters, validated: a bad one is a 400 that names it."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from aiohttp import web

from api.errors import bad_request

MAX_TEXT = 200


def integer(request: web.Request, name: str, default: int | None, low: int,
            high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, got {_show(raw)}") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_TEXT or "\x00" in raw:
        raise bad_request(f"{name} must be at most {MAX_TEXT} characters, without NUL")
    return raw


def choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, got {_show(raw)}")
    return raw


def file_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["file_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad_request(f"file_id must be a uuid, got {_show(raw)}") from None


def encode_cursor(position: list[Any]) -> str:
    """An opaque cursor: the last item's sort key, for keyset pagination."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def cursor(request: web.Request, size: int) -> list[int] | None:
    """Decode a cursor made by encode_cursor: a list of `size` whole numbers."""
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise bad_request("cursor is not one this API gave out") from None
    if (not isinstance(value, list) or len(value) != size
            or not all(type(v) is int and 0 <= v < 2**63 for v in value)):
        raise bad_request("cursor is not one this API gave out")
    return value


def _show(raw: str) -> str:
    return json.dumps(raw[:40] + ("…" if len(raw) > 40 else ""), ensure_ascii=False)
