"""Every error the API answers is JSON: {"error": {"code", "message"}}.

Views raise ApiError; the middleware in app.py turns it, aiohttp's own HTTP errors
(404 unknown path, 405 wrong method) and database outages into these answers.
"""

from __future__ import annotations

import json

import asyncpg
from aiohttp import web

# The database is down, restarting, full or too slow: a 503, and retrying later may work.
# InternalClientError is what asyncpg raises on a pooled connection the server has just
# terminated (seen when PostgreSQL restarts under load). Anything else (a bug in our
# SQL) stays a 500, logged, so that it gets fixed.
DATABASE_UNAVAILABLE = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.InternalClientError, asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError, asyncpg.QueryCanceledError,
    asyncpg.OperatorInterventionError, asyncpg.InvalidCatalogNameError,
)

CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
         405: "method_not_allowed", 503: "unavailable"}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type="application/json",
                        headers=headers)


class ApiError(Exception):
    """Raised by views and parameter parsing; the middleware turns it into a response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)
