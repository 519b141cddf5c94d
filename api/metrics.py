"""Prometheus metrics for the API: requests by route template and status, and latency.

Each app gets its own CollectorRegistry (tests build several apps in one process, and
the global registry refuses a metric registered twice).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from api.routes import POOL, QUERIES

# Paths that match no route share one label: the label set stays bounded whatever
# paths clients send.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "chute_api_requests", "HTTP requests answered, by route template and status",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "chute_api_request_duration_seconds", "Time to answer a request, by route template",
            ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

        # A rebuild runs in the `chute rebuild` command, which nobody scrapes: its
        # progress is read from the database (chute.rebuilds) at each scrape.
        self.rebuild_done = Gauge(
            "chute_rebuild_files_done", "Files a running rebuild has loaded into its table",
            ["dataset"], registry=self.registry)
        self.rebuild_total = Gauge(
            "chute_rebuild_files_total", "Files a running rebuild will have loaded",
            ["dataset"], registry=self.registry)

        # labels() validates and looks up its arguments on every call; the children for
        # a (method, route, status) are kept here instead, found with one dict lookup.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


METRICS = web.AppKey("metrics", ApiMetrics)

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    found = request.app[METRICS]
    try:
        async with request.app[POOL].acquire() as conn:
            tables = await request.app[QUERIES].tables(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        tables = {}  # the database is away: the API's own metrics still answer
    for gauge in (found.rebuild_done, found.rebuild_total):
        gauge.clear()  # a rebuild that ended leaves no series behind
    for name, table in tables.items():
        if table["rebuild_id"] is not None:
            found.rebuild_done.labels(name).set(table["files_done"])
            found.rebuild_total.labels(name).set(table["files_total"] or 0)
    body = generate_latest(found.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

