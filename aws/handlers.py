"""The Lambda entry points, thin like each worker's __main__: configuration, adapters, run.

What a container builds at its first invocation (the configuration with its secrets, the
schema check, the database connection, the aiohttp application) is kept for the next
ones. A container only ever runs one function, so each entry point keeps its own.
"""

from __future__ import annotations

import atexit
import json
import logging
from typing import Any

import aiohttp
import boto3

from aws.config import load_config
from aws.failures import record_given_up
from aws.gateway import ApiGateway
from aws.ingest import S3Ingest
from chute.errors import DatabaseUnavailable
from chute.postgres import db
from chute.runtime import logs
from chute.runtime.config import Config

log = logging.getLogger(__name__)

_ingest: S3Ingest | None = None
_gateway: ApiGateway | None = None
_given_up: db.Connection | None = None


def on_s3_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """S3 ObjectCreated notifications, invoked asynchronously: an exception makes Lambda
    retry the event, then send it to the on-failure destination."""
    global _ingest
    if _ingest is None:
        _ingest = S3Ingest(cold_start("lambda-ingest"), boto3.client("s3"))
    try:
        return _ingest.handle(event, context)
    except DatabaseUnavailable:
        # Start cold next time: the secret is read again, so a rotated password is used.
        _ingest.close()
        _ingest = None
        raise


def on_http_request(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """HTTP API requests (payload 2.0), answered by the aiohttp application."""
    global _gateway
    if _gateway is None:
        _gateway = ApiGateway(cold_start("lambda-api"))
        # Closed when the runtime ends the process: its client session and app runner
        # otherwise log "Unclosed client session" at every container's exit.
        atexit.register(_gateway.close)
    try:
        return _gateway.handle(event)
    except (aiohttp.ClientError, OSError):
        # The in-process server did not answer (the app's own errors are answers, never
        # exceptions): start it afresh next time and say so the way the API says it.
        log.exception("in-process API did not answer; restarting it")
        _gateway.close()
        atexit.unregister(_gateway.close)
        _gateway = None
        body = {"error": {"code": "unavailable", "message": "the API is restarting; retry soon"}}
        return {"statusCode": 503, "headers": {"content-type": "application/json"},
                "body": json.dumps(body), "isBase64Encoded": False}


def on_failed_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS messages from the ingest function's on-failure destination."""
    global _given_up
    if _given_up is None or _given_up.closed:
        _given_up = db.connect(cold_start("lambda-failures").database_url)
    try:
        return record_given_up(_given_up, event)
    except DatabaseUnavailable:
        _given_up.close()
        _given_up = None
        raise  # the batch goes back to the queue and comes again


def cold_start(service: str) -> Config:
    """Configuration, logging and a database ready to use, as every local service starts.

    Nobody runs SQL by hand on AWS either: the database and schema are created if missing
    (idempotent, serialised by the schema's advisory lock).
    """
    config = load_config()
    logs.setup(service, config.log_level)
    db.prepare(config.database_url, config.datasets, config.reader_role)
    return config
