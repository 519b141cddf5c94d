"""Events Lambda gave up on: the ingest function's on-failure destination, read from SQS.

After its last retry Lambda sends the event, the error and the attempt count to the
queue; this marks each file it names `failed` with that reason, as the workers do after
their last attempt, so the API tells the same story on both forms. The object is left
where it is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aws.objects import refs_from_event
from chute.postgres import db

log = logging.getLogger(__name__)

ERROR_LIMIT = 2000  # chars of Lambda's error message kept in the file's `error`


def record_given_up(conn: db.Connection, event: dict[str, Any]) -> dict[str, Any]:
    """Mark the files of every destination record failed. Returns SQS's partial batch
    answer: a body that is not a destination record never will be, so it alone goes back
    (and, after the queue's receive limit, to its dead-letter queue); a database error
    raises, and the whole batch comes back later."""
    failures = []
    for message in event.get("Records") or []:
        try:
            record = json.loads(message["body"])
            payload = record["requestPayload"]
        except (KeyError, TypeError, ValueError):
            log.error("not a Lambda destination record", extra={
                "message_id": message.get("messageId")})
            failures.append({"itemIdentifier": message.get("messageId", "")})
            continue
        reason = _reason(record)
        for ref in refs_from_event(payload if isinstance(payload, dict) else {}):
            # An event names several objects, and Lambda gives up on all of them when one
            # fails: only those left unfinished failed; the others keep their verdict.
            if not db.fail_file(conn, ref.file_id, reason):
                continue  # already has its verdict (or is unknown): it keeps it
            log.error("file failed: Lambda gave up", extra={
                "file_id": ref.file_id, "key": ref.key, "reason": reason})
    return {"batchItemFailures": failures}


def _reason(record: dict[str, Any]) -> str:
    context = record.get("requestContext") or {}
    response = record.get("responsePayload")
    if isinstance(response, dict):
        error = f"{response.get('errorType', 'error')}: {response.get('errorMessage', '')}"
    else:
        error = "no error reported"
    attempts = context.get("approximateInvokeCount", "?")
    condition = context.get("condition", "unknown")
    return f"Lambda gave up after {attempts} attempts ({condition}): {error}"[:ERROR_LIMIT]
