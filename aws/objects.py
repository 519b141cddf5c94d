"""S3 for the ingest handler: the only module that reads or writes objects.

An object is read as the version its event announced and no other: by VersionId in a
versioned bucket, else by If-Match on the ETag, so the bytes that were hashed are the
bytes that are transformed even if the key is overwritten in between. Reads stream in
fixed-size pieces; no object is ever held in memory whole.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

QUARANTINE_PREFIX = "quarantine/"
INBOX_PREFIX = "inbox/"  # where the trigger listens (serverless.yml): the bucket's inbox/
READ_CHUNK = 1 << 20
REASON_LIMIT = 1024  # user metadata is at most 2 KB per object, all keys included
_GONE = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "PreconditionFailed", "404", "412"}


class ObjectGone(Exception):
    """The announced version of the object can no longer be read (deleted or replaced)."""


@dataclass(frozen=True)
class ObjectRef:
    """One object version named by an S3 event."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def inbox_path(self) -> str:
        """The key as a path under inbox/, the way datasets match files: its prefix below
        inbox/ plays the part of the subfolder."""
        return self.key.removeprefix(INBOX_PREFIX)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def file_id(self) -> str:
        """The arrival's id: the same for every delivery of the same event, so a duplicate
        event or a retried invocation finds the arrival already registered."""
        identity = f"versionId={self.version_id}" if self.version_id else f"etag={self.etag}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.uri}#{identity}"))

    def pinned(self) -> dict[str, str]:
        """GetObject arguments that read this version and nothing else."""
        if self.version_id:
            return {"VersionId": self.version_id}
        return {"IfMatch": f'"{self.etag}"'} if self.etag else {}


def refs_from_event(event: dict[str, Any]) -> list[ObjectRef]:
    """The created objects an S3 notification names; other records (removals, the test
    event S3 sends when a notification is set up) name none."""
    refs = []
    for record in event.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        found = s3["object"]
        version = found.get("versionId")
        refs.append(ObjectRef(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(found["key"]),  # keys arrive URL-encoded, spaces as '+'
            # "null" is the version of an object put while versioning was off or suspended:
            # putting the key again replaces it, so only the ETag tells them apart.
            version_id=version if version and version != "null" else None,
            etag=(found.get("eTag") or "").strip('"') or None,
        ))
    return refs


class Objects:
    """Reads and copies objects with one boto3 S3 client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def digest(self, ref: ObjectRef) -> tuple[str, int]:
        """sha256 and size, streamed: one pass over the object, a piece at a time."""
        digest = hashlib.sha256()
        size = 0
        with self.open(ref) as body:
            while chunk := body.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    @contextmanager
    def open(self, ref: ObjectRef) -> Iterator[BinaryIO]:
        """A stream of the object's bytes (botocore's StreamingBody has read(n))."""
        try:
            answer = self.client.get_object(Bucket=ref.bucket, Key=ref.key, **ref.pinned())
        except ClientError as e:
            raise _gone_or_raise(ref, e) from None
        body = answer["Body"]
        try:
            yield body
        finally:
            body.close()

    def quarantine(self, ref: ObjectRef, file_id: str, reason: str) -> str:
        """Copy the object under quarantine/FILE_ID/NAME with the reason as metadata; returns
        the copy's URI. Copying again writes the same object: retries are harmless.

        boto3's managed copy switches to a multipart copy past 8 MB, so objects over the
        5 GB limit of a single CopyObject are quarantined too.
        """
        key = f"{QUARANTINE_PREFIX}{file_id}/{ref.name}"
        source = {"Bucket": ref.bucket, "Key": ref.key}
        extra: dict[str, Any] = {"MetadataDirective": "REPLACE"}
        if ref.version_id:
            source["VersionId"] = ref.version_id
        elif ref.etag:
            extra["CopySourceIfMatch"] = f'"{ref.etag}"'  # the bytes that were read
        extra["Metadata"] = {
            "chute-file-id": file_id,
            "chute-source": _ascii(ref.uri),
            "chute-reason": _ascii(reason)[:REASON_LIMIT],
        }
        try:
            self.client.copy(source, ref.bucket, key, ExtraArgs=extra)
        except ClientError as e:
            raise _gone_or_raise(ref, e) from None
        return f"s3://{ref.bucket}/{key}"


def is_quarantined(key: str) -> bool:
    return key.startswith(QUARANTINE_PREFIX)


def _ascii(text: str) -> str:
    """Metadata travels in HTTP headers, which hold printable ASCII only: escape the rest
    the way Python writes it (\\n, \\xe9, \\u2400), so nothing is lost."""
    return text.encode("unicode_escape").decode("ascii")


def _gone_or_raise(ref: ObjectRef, error: ClientError) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code in _GONE:
        return ObjectGone(f"object disappeared or was replaced: {ref.uri} ({code})")
    return error
