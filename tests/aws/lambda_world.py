"""The AWS tests' world, as plain helpers (the fixtures are in aws_fixtures.py). moto
stands in for S3, SSM and Secrets Manager, and only for them: the real local PostgreSQL
stands in for RDS, in the private database harness.Environment makes (and drops)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pika.exceptions
import pytest
from moto import mock_aws

from aws import handlers
from harness import Environment

REGION = "eu-west-1"
BUCKET = "chute-test-data"
DATABASE_URL_PARAMETER = "/chute/test/database-url"
TOKEN_PARAMETER = "/chute/test/api-token"
TOKEN = "test-token-" + "x" * 20


class FakeContext:
    """A Lambda context whose time runs out after `batches` batches.

    The ingest handler asks for the remaining time exactly once before each batch, so
    the answer turns short at the ask for batch number `batches` (counting from 0).
    """

    function_name = "chute-test-ingest"
    memory_limit_in_mb = 1769

    def __init__(self, batches: int | None = None) -> None:
        self.batches = batches
        self.asks = 0
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        self.asks += 1
        if self.batches is not None and self.asks > self.batches:
            return 1_000
        return 900_000


def put(s3: Any, key: str, body: bytes, bucket: str = BUCKET) -> dict[str, Any]:
    """Put an object and return the S3 notification Lambda would get for it."""
    answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return created_event(key, answer["ETag"], len(body), answer.get("VersionId"), bucket)


def created_event(key: str, etag: str, size: int, version_id: str | None = None,
                  bucket: str = BUCKET) -> dict[str, Any]:
    """An ObjectCreated:Put notification, shaped as S3 sends it (event version 2.1)."""
    found: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size,
                             "eTag": etag.strip('"'), "sequencer": "0065A1B2C3D4E5F6A7"}
    if version_id is not None:
        found["versionId"] = version_id
    return {"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2025-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMU"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "chute-ingest",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": found,
        },
    }]}


@contextmanager
def deployed(root: Path) -> Iterator[Environment]:
    """A private database, and the process environment a deployed function has: the
    database URL and the API token only as names of SSM parameters, their values in
    (mocked) SSM. Batches of 4 rows. Every boto3 client talks to moto."""
    environment = Environment(root)
    try:
        with pytest.MonkeyPatch.context() as patch, mock_aws():
            for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                patch.delenv(name, raising=False)
            for name, value in {"AWS_ACCESS_KEY_ID": "testing",
                                "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_SESSION_TOKEN": "testing",
                                "AWS_DEFAULT_REGION": REGION}.items():
                patch.setenv(name, value)
            ssm = boto3.client("ssm", region_name=REGION)
            ssm.put_parameter(Name=DATABASE_URL_PARAMETER, Value=environment.database_url,
                              Type="SecureString")
            ssm.put_parameter(Name=TOKEN_PARAMETER, Value=TOKEN, Type="SecureString")
            for name, value in environment.env.items():
                if name.startswith("CHUTE_") and name != "CHUTE_DATABASE_URL":
                    patch.setenv(name, value)
            patch.delenv("CHUTE_DATABASE_URL", raising=False)
            patch.setenv("CHUTE_DATABASE_URL_PARAMETER", DATABASE_URL_PARAMETER)
            patch.setenv("CHUTE_API_TOKEN_PARAMETER", TOKEN_PARAMETER)
            patch.setenv("CHUTE_BATCH_SIZE", "4")
            try:
                yield environment
            finally:
                _close_containers()
    finally:
        try:
            environment.cleanup()  # drops the database even when the broker is away
        except pika.exceptions.AMQPError:
            pass  # the AWS form declares no queues: there is nothing of ours to delete


def _close_containers() -> None:
    """What the handlers kept (as a container keeps it) is closed: the next test starts
    cold, against its own database."""
    if handlers._ingest is not None:
        handlers._ingest.close()
    if handlers._gateway is not None:
        handlers._gateway.close()
    if handlers._given_up is not None:
        handlers._given_up.close()
    handlers._ingest = handlers._gateway = handlers._given_up = None


def make_bucket() -> Any:
    """A boto3 S3 client and an empty, unversioned bucket named BUCKET."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client
