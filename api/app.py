"""The app factory: configuration, the database pool's lifecycle, middlewares, routes.

The tests build the app with the same factory the service runs.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from api.errors import ApiError, error_response
from api.queries import Queries
from api.routes import CONFIG, POOL, QUERIES, routes
from chute.config import Config

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/ready"})  # answer without a token: probes need them

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error: never a stack trace, never HTML."""
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        return error_response(e.status, code, e.reason, headers=_allow(e))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError, TimeoutError) as e:
        log.warning("database unavailable", extra={"path": request.path, "error": repr(e)})
        return error_response(503, "unavailable", "the database is not answering; retry soon")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error")


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[CONFIG].api_token
    if token and request.path not in OPEN_PATHS:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error_response(401, "unauthorized", "a valid bearer token is required",
                                  headers={"WWW-Authenticate": 'Bearer realm="chute"'})
    return await handler(request)


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log method, path and status: never the query string, which may hold credentials."""
    started = time.monotonic()
    response = await handler(request)
    log.info("request", extra={"method": request.method, "path": request.path,
                               "status": response.status,
                               "duration_ms": round((time.monotonic() - started) * 1000, 2)})
    return response


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[access_log, errors, bearer_token])
    app[CONFIG] = config
    app[QUERIES] = Queries(config.table)
    app.cleanup_ctx.append(_database_pool)
    app.add_routes(routes)
    return app


async def _database_pool(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    reader = config.reader_role

    async def read_only(conn: asyncpg.Connection) -> None:
        # Drop to the read-only role for the connection's life. The pool's reset
        # (RESET ALL) does not undo SET ROLE, and no request can: SQL is bound parameters.
        await conn.execute(f'SET ROLE "{reader}"')

    # min_size=0: the API starts (and /ready says 503) even while PostgreSQL is down.
    app[POOL] = await asyncpg.create_pool(
        config.database_url, min_size=0, max_size=10, init=read_only,
        server_settings={"default_transaction_read_only": "on",
                         "application_name": "chute-api"},
        command_timeout=30,
    )
    yield
    await app[POOL].close()


def _allow(e: web.HTTPException) -> dict[str, str] | None:
    allow = e.headers.get("Allow")
    return {"Allow": allow} if allow else None
