"""Every error the API answers is JSON: {"error": {"code", "message"}}."""

from __future__ import annotations

import json

from aiohttp import web


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
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
