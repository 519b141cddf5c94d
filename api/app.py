"""The app factory: configuration, the database pool's lifecycle, middlewares, routes.

The tests build the app with the same factory the service runs. A module that serves
pages adds its RouteTableDef to ROUTE_TABLES (and its operations to api/openapi.py).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from api import metrics, openapi
from api import routes as views
from api.console import pages as console
from api.errors import CODES, DATABASE_UNAVAILABLE, ApiError, error_response
from api.queries import Queries, create_reader_pool
from chute.runtime.config import Config

log = logging.getLogger(__name__)

ROUTE_TABLES = (views.routes, metrics.routes, openapi.routes, console.routes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: count and time every request by route template and status (errors
    included), and log it: method, path and status, never the query string, which may
    hold credentials (the old client sends a database password in it).

    Answers below 400 are logged at DEBUG: a JSON line per successful request cut the
    throughput measurably (bench/api_bench.py), and /metrics counts them anyway.
    """
    started = time.perf_counter()
    response = await handler(request)
    seconds = time.perf_counter() - started
    request.app[metrics.METRICS].record(request, response.status, seconds)
    level = logging.INFO if response.status >= 400 else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "request", extra={"method": request.method, "path": request.path,
                                         "status": response.status,
                                         "duration_ms": round(seconds * 1000, 2)})
    return response


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
        allow = e.headers.get("Allow")
        message = (f"no route {request.path!r}" if e.status == 404
                   else f"{request.method} is not allowed here; use {allow}" if allow
                   else e.reason)
        return error_response(e.status, CODES.get(e.status, "http_error"), message,
                              headers={"Allow": allow} if allow else None)
    except DATABASE_UNAVAILABLE as e:
        log.warning("database unavailable", extra={"path": request.path, "error": repr(e)})
        return error_response(503, "unavailable", "the database is not answering; retry soon")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error")


@web.middleware
async def bearer_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """When CHUTE_API_TOKEN is set, every path but the probes needs it, unknown paths
    included (a client without the token learns nothing about what exists)."""
    token = request.app[views.CONFIG].api_token
    if request.path not in openapi.OPEN_PATHS:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110); the comparison of the token is
        # constant-time. surrogateescape: a header with bytes that are not UTF-8 is
        # simply a wrong token, not an encoding error.
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token.encode())
        if not valid:
            return error_response(401, "unauthorized", "a valid bearer token is required",
                                  headers={"WWW-Authenticate": 'Bearer realm="chute"'})
    return await handler(request)


# aiohttp refuses a request line or header over 8 KiB itself, in plain text, before any
# middleware runs; at 64 KiB an overlong query reaches the parameter checks and gets the
# JSON 400 naming the parameter instead.
HTTP_LIMITS = {"max_line_size": 65536, "max_field_size": 65536}


def create_app(config: Config, uses_broker: bool = True) -> web.Application:
    """The API; `uses_broker` is False where the deployment has no broker (AWS Lambda)."""
    # Without a token there is nothing to check: no middleware, no cost per request.
    guard = [bearer_token] if config.api_token else []
    app = web.Application(middlewares=[observe, errors, *guard], handler_args=HTTP_LIMITS)
    app[views.CONFIG] = config
    app[views.USES_BROKER] = uses_broker
    app[views.QUERIES] = Queries(config.datasets)
    app[metrics.METRICS] = metrics.ApiMetrics()
    openapi.install(app, config, console.actions.enabled(config, uses_broker))
    app.cleanup_ctx.append(_database_pool)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    views.add_dataset_routes(app, config.datasets)
    console.install(app)
    return app


async def _database_pool(app: web.Application) -> AsyncIterator[None]:
    app[views.POOL] = await create_reader_pool(app[views.CONFIG])
    yield
    await app[views.POOL].close()
