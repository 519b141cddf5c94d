"""S3 -> the ingest handler -> PostgreSQL: the same rows, ids, ledger, rejects and file
states as the inbox pipeline, with duplicate events, retries and timeouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid
from typing import Any

import boto3
import pytest

from aws import handlers
from aws.handlers import on_failed_event, on_s3_event
from aws.ingest import OutOfTime
from chute.datasets.declarations import load
from chute.errors import FileUnusable
from chute.rabbitmq.messages import RowBatch
from chute.reading.rowids import row_uuid
from chute.reading.transform import transform
from conftest import SAMPLE
from harness import REPO, Environment
from lambda_world import BUCKET, REGION, FakeContext, put

SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()
SAMPLE_ROWS = [line.split(",") for line in SAMPLE.decode().splitlines()[1:]]
FILE_COLUMNS = "name, path, sha256, size_bytes, state, rows_total, rows_loaded, rows_rejected, " \
               "error, duplicate_of::text, attempts, batch_size"

pytest_plugins = ["aws_fixtures"]


def file_id_of(key: str, version: str) -> str:
    """The documented identity: uuid5 of the object's URI and its version or ETag."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{BUCKET}/{key}#{version}"))


def files(env: Environment) -> list[tuple[Any, ...]]:
    return env.sql(f"SELECT file_id::text, {FILE_COLUMNS} FROM chute.files ORDER BY seq")


def ledger(env: Environment, file_id: str) -> list[tuple[Any, ...]]:
    return env.sql("SELECT batch_no, rows_loaded, rows_rejected, loaded_at FROM chute.batches "
                   "WHERE file_id = %s ORDER BY batch_no", (file_id,))


def test_sample_object_loads_with_the_rows_and_ids_of_the_inbox_pipeline(
        lambda_env: Environment, s3: Any) -> None:
    event = put(s3, "inbox/sample.csv", SAMPLE)
    etag = event["Records"][0]["s3"]["object"]["eTag"]
    file_id = file_id_of("inbox/sample.csv", f"etag={etag}")

    answer = on_s3_event(event, FakeContext())

    assert answer == {"files": [{"file_id": file_id, "key": "inbox/sample.csv",
                                 "state": "loaded"}]}
    assert files(lambda_env) == [(
        file_id, "sample.csv", f"s3://{BUCKET}/inbox/sample.csv", SAMPLE_SHA, len(SAMPLE),
        "loaded", 15, 15, 0, None, None, 1, 4)]
    rows = lambda_env.sql("SELECT id, first_name, last_name, age, location, line FROM people "
                          "ORDER BY file_seq, line")
    assert [(f"{first} {last}", str(age), location) for _, first, last, age, location, _ in rows
            ] == [tuple(row) for row in SAMPLE_ROWS]
    assert [row[0] for row in rows] == [str(row_uuid(SAMPLE_SHA, line)) for line in range(2, 17)]
    assert [row[1:3] for row in ledger(lambda_env, file_id)] == [
        (4, 0), (4, 0), (4, 0), (3, 0)]


def test_duplicate_event_loads_nothing_twice(lambda_env: Environment, s3: Any) -> None:
    event = put(s3, "inbox/sample.csv", SAMPLE)
    on_s3_event(event, FakeContext())
    first_ledger = ledger(lambda_env, files(lambda_env)[0][0])

    again = on_s3_event(event, FakeContext())

    assert again["files"][0]["state"] == "loaded"
    assert [row[5:] for row in files(lambda_env)] == [
        ("loaded", 15, 15, 0, None, None, 1, 4)]  # one arrival, one attempt
    assert ledger(lambda_env, files(lambda_env)[0][0]) == first_ledger  # same loaded_at
    assert lambda_env.sql("SELECT count(*), count(DISTINCT id) FROM people") == [(15, 15)]


def test_same_bytes_under_another_key_are_a_duplicate(lambda_env: Environment,
                                                      s3: Any) -> None:
    on_s3_event(put(s3, "inbox/sample.csv", SAMPLE), FakeContext())

    answer = on_s3_event(put(s3, "inbox/copy-of-sample.csv", SAMPLE), FakeContext())

    assert answer["files"][0]["state"] == "duplicate"
    (first_id, *_), (second_id, *second) = files(lambda_env)
    assert second[:4] == ["copy-of-sample.csv", f"s3://{BUCKET}/inbox/copy-of-sample.csv",
                          SAMPLE_SHA, len(SAMPLE)]
    assert second[4:10] == ["duplicate", 0, 0, 0, None, first_id]
    assert lambda_env.sql("SELECT count(*) FROM people") == [(15,)]
    assert ledger(lambda_env, second_id) == []


def test_same_bytes_put_again_in_a_versioned_bucket_are_a_new_arrival(
        lambda_env: Environment, s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = put(s3, "inbox/sample.csv", SAMPLE)
    second = put(s3, "inbox/sample.csv", SAMPLE)
    versions = [e["Records"][0]["s3"]["object"]["versionId"] for e in (first, second)]

    states = [on_s3_event(e, FakeContext())["files"][0]["state"] for e in (first, second)]

    assert states == ["loaded", "duplicate"]
    assert [(row[0], row[5]) for row in files(lambda_env)] == [
        (file_id_of("inbox/sample.csv", f"versionId={v}"), state)
        for v, state in zip(versions, states, strict=True)]
    assert lambda_env.sql("SELECT count(*) FROM people") == [(15,)]


@pytest.mark.parametrize("body", [b"name,age\nAda,36\n", b"", b"\xff\xfe\x00\x01binary"],
                         ids=["missing-columns", "empty", "binary"])
def test_malformed_object_is_quarantined_with_its_reason(lambda_env: Environment, s3: Any,
                                                         body: bytes) -> None:
    reason = unusable_reason(body)
    event = put(s3, "inbox/bad.csv", body)

    answer = on_s3_event(event, FakeContext())

    file_id = answer["files"][0]["file_id"]
    copy_key = f"quarantine/{file_id}/bad.csv"
    assert answer["files"][0]["state"] == "quarantined"
    assert [row[1:10] for row in files(lambda_env)] == [(
        "bad.csv", f"s3://{BUCKET}/{copy_key}", hashlib.sha256(body).hexdigest(), len(body),
        "quarantined", None, None, None, reason)]
    copy = s3.get_object(Bucket=BUCKET, Key=copy_key)
    assert copy["Body"].read() == body
    assert copy["Metadata"] == {"chute-reason": reason, "chute-file-id": file_id,
                                "chute-source": f"s3://{BUCKET}/inbox/bad.csv"}
    assert s3.get_object(Bucket=BUCKET, Key="inbox/bad.csv")["Body"].read() == body
    assert lambda_env.sql("SELECT count(*) FROM people") == [(0,)]
    assert ledger(lambda_env, file_id) == []

    # The copy's own notification (a trigger without a prefix filter) loads nothing.
    assert on_s3_event(put(s3, copy_key, body), FakeContext()) == {"files": []}
    assert len(files(lambda_env)) == 1


def test_rejected_rows_are_recorded_and_the_others_load(lambda_env: Environment,
                                                        s3: Any) -> None:
    body = (b"fullname,age,location\nAda Lovelace,36,London\nBob,abc,Paris\n,40,Rome\n"
            b"Cy Young,50\n\nDee Dee,30.0, Oslo \n")

    answer = on_s3_event(put(s3, "inbox/mixed.csv", body), FakeContext())

    file_id = answer["files"][0]["file_id"]
    assert [row[5:9] for row in files(lambda_env)] == [("loaded", 5, 2, 3)]
    assert lambda_env.sql("SELECT first_name, last_name, age, location, line FROM people "
                          "ORDER BY line") == [("Ada", "Lovelace", 36, "London", 2),
                                               ("Dee", "Dee", 30, "Oslo", 7)]
    rejects = lambda_env.sql("SELECT line, reason, raw FROM chute.rejects WHERE file_id = %s "
                             "ORDER BY line", (file_id,))
    assert [(line, raw) for line, _, raw in rejects] == [
        (3, "Bob,abc,Paris"), (4, ",40,Rome"), (5, "Cy Young,50")]
    assert rejects == core_rejects(body)  # the workers' reasons, word for word


def test_timed_out_invocation_resumes_from_the_ledger_on_retry(lambda_env: Environment,
                                                               s3: Any) -> None:
    event = put(s3, "inbox/sample.csv", SAMPLE)

    with pytest.raises(OutOfTime):
        on_s3_event(event, FakeContext(batches=2))  # time runs out before batch 2

    (file_id, *before), = files(lambda_env)
    assert before[4:] == ["processing", None, None, None, None, None, 1, 4]
    first_two = ledger(lambda_env, file_id)
    assert [row[:3] for row in first_two] == [(0, 4, 0), (1, 4, 0)]
    assert lambda_env.sql("SELECT count(*) FROM people") == [(8,)]

    answer = on_s3_event(event, FakeContext())  # Lambda's retry: same event, new context

    assert answer["files"][0]["state"] == "loaded"
    assert [row[5:] for row in files(lambda_env)] == [("loaded", 15, 15, 0, None, None, 2, 4)]
    assert ledger(lambda_env, file_id)[:2] == first_two  # not loaded again: same loaded_at
    assert [row[:3] for row in ledger(lambda_env, file_id)[2:]] == [(2, 4, 0), (3, 3, 0)]
    assert lambda_env.sql("SELECT count(*), count(DISTINCT id) FROM people") == [(15, 15)]


def test_object_replaced_between_attempts_fails_rather_than_mixing_contents(
        lambda_env: Environment, s3: Any) -> None:
    event = put(s3, "inbox/sample.csv", SAMPLE)
    with pytest.raises(OutOfTime):
        on_s3_event(event, FakeContext(batches=1))
    s3.put_object(Bucket=BUCKET, Key="inbox/sample.csv", Body=b"fullname,age,location\n")

    answer = on_s3_event(event, FakeContext())  # the retry of the first object's event

    assert answer["files"][0]["state"] == "failed"
    assert [row[5:10] for row in files(lambda_env)] == [(
        "failed", None, None, None,
        f"object disappeared or was replaced: s3://{BUCKET}/inbox/sample.csv "
        "(PreconditionFailed)")]
    assert lambda_env.sql("SELECT count(*) FROM people") == [(4,)]  # batch 0, never twice


def test_object_deleted_before_its_event_is_handled_registers_nothing(
        lambda_env: Environment, s3: Any) -> None:
    event = put(s3, "inbox/sample.csv", SAMPLE)
    s3.delete_object(Bucket=BUCKET, Key="inbox/sample.csv")

    answer = on_s3_event(event, FakeContext())

    assert answer["files"][0]["state"] == "gone"
    assert files(lambda_env) == []


def test_keys_are_decoded_and_any_case_of_csv_is_taken(lambda_env: Environment,
                                                       s3: Any) -> None:
    key = "inbox/Ünïcode people 2025.CSV"  # at the top: people takes *.csv there
    event = put(s3, key, SAMPLE)
    assert "+" in event["Records"][0]["s3"]["object"]["key"]  # as S3 encodes a space

    answer = on_s3_event(event, FakeContext())

    assert answer["files"][0]["state"] == "loaded"
    assert [row[1:3] for row in files(lambda_env)] == [
        ("Ünïcode people 2025.CSV", f"s3://{BUCKET}/{key}")]


def test_other_objects_and_events_are_ignored(lambda_env: Environment, s3: Any) -> None:
    events = [put(s3, key, SAMPLE) for key in
              ("inbox/notes.txt", "inbox/.hidden.csv", "quarantine/x/sample.csv")]
    removed = put(s3, "inbox/sample.csv", SAMPLE)
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET,
                  "Time": "2025-01-01T00:00:00.000Z", "RequestId": "5582815E1AEA5ADF"}

    answers = [on_s3_event(e, FakeContext()) for e in [*events, removed, test_event]]

    assert answers == [{"files": []}] * 5
    assert files(lambda_env) == []


def test_event_lambda_gave_up_on_fails_its_unfinished_files(lambda_env: Environment,
                                                             s3: Any) -> None:
    bad = put(s3, "inbox/bad.csv", b"name,age\nAda,36\n")
    on_s3_event(bad, FakeContext())
    event = put(s3, "inbox/sample.csv", SAMPLE)
    with pytest.raises(OutOfTime) as timed_out:
        on_s3_event(event, FakeContext(batches=1))
    # One event naming both objects: Lambda gives up on it as a whole.
    both = {"Records": bad["Records"] + event["Records"]}
    destination = {  # what Lambda sends its on-failure destination after the last retry
        "version": "1.0",
        "timestamp": "2025-01-01T00:05:00.000Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:chute-prod-ingest"
                           ":$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": both,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(timed_out.value), "errorType": "OutOfTime",
                            "requestId": "", "stackTrace": []},
    }
    messages = {"Records": [
        sqs_message("m-1", json.dumps(destination)),
        sqs_message("m-2", "not a destination record"),
    ]}

    answer = on_failed_event(messages, FakeContext())

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert [(row[1], *row[5:10]) for row in files(lambda_env)] == [
        ("bad.csv", "quarantined", None, None, None, unusable_reason(b"name,age\nAda,36\n")),
        ("sample.csv", "failed", None, None, None,
         f"Lambda gave up after 3 attempts (RetriesExhausted): OutOfTime: {timed_out.value}"),
    ]
    # What was loaded stays, once: a person can see how far it got.
    assert lambda_env.sql("SELECT count(*) FROM people") == [(4,)]


def unusable_reason(body: bytes) -> str:
    """Why the workers' core quarantines these bytes."""
    with pytest.raises(FileUnusable) as unusable:
        list(transform(io.BytesIO(body), load(None)["people"], str(uuid.uuid4()), 1,
                       SAMPLE_SHA, 4))
    return str(unusable.value)


def core_rejects(body: bytes) -> list[tuple[int, str, str]]:
    """(line, reason, raw) of the rows the workers' core rejects (plain values only)."""
    found = []
    people = load(None)["people"]
    for message in transform(io.BytesIO(body), people, str(uuid.uuid4()), 1, SAMPLE_SHA, 4):
        if isinstance(message, RowBatch):
            for entry in message.rejects.decode().splitlines():
                _, line, reason, raw = entry.split("\t")
                found.append((int(line), reason, raw))
    return found


def sqs_message(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + message_id,
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1735689900000"},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:chute-prod-GivenUpEvents",
        "awsRegion": REGION,
    }


def test_ingest_touches_only_keys_the_deployed_role_may(
        lambda_env: Environment, s3: Any) -> None:
    """Every S3 call the handler makes is on inbox/ or quarantine/ keys (serverless.yml
    grants nothing else)."""
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key", "")))

    boto3.DEFAULT_SESSION = None
    session = boto3.session.Session(region_name=REGION)
    session.events.register("before-parameter-build.s3", record)
    boto3.DEFAULT_SESSION = session
    try:
        on_s3_event(put(s3, "inbox/sample.csv", SAMPLE), FakeContext())
        on_s3_event(put(s3, "inbox/bad.csv", b"x\n"), FakeContext())
    finally:
        boto3.DEFAULT_SESSION = None

    assert {name for name, _ in calls} == {"GetObject", "HeadObject", "CopyObject"}
    assert all(key.startswith(("inbox/", "quarantine/")) for _, key in calls)


def test_connection_closed_while_the_container_was_frozen_is_replaced(
        lambda_env: Environment, s3: Any) -> None:
    on_s3_event(put(s3, "inbox/first.csv", b"fullname,age,location\nAda Lovelace,36,London\n"),
                FakeContext())
    kept = handlers._ingest.conn.get_backend_pid()
    lambda_env.sql("SELECT pg_terminate_backend(%s)", (kept,))  # as an idle timeout would

    answer = on_s3_event(put(s3, "inbox/sample.csv", SAMPLE), FakeContext())

    assert answer["files"][0]["state"] == "loaded"
    assert handlers._ingest.conn.get_backend_pid() != kept
    assert lambda_env.sql("SELECT count(*) FROM people") == [(16,)]


def test_bad_object_replaced_before_its_copy_fails_rather_than_quarantining_other_bytes(
        lambda_env: Environment, s3: Any) -> None:
    event = put(s3, "inbox/bad.csv", b"name,age\nAda,36\n")

    def replace_source(**_: Any) -> None:  # someone puts the key again, mid-quarantine
        s3.put_object(Bucket=BUCKET, Key="inbox/bad.csv", Body=b"fullname,age,location\n")

    session = boto3.session.Session(region_name=REGION)
    # boto3's managed copy first reads the source's size with HeadObject, conditional
    # on the same ETag as the copy itself (moto checks only this one).
    session.events.register_first("before-call.s3.HeadObject", replace_source)
    boto3.DEFAULT_SESSION = session
    try:
        answer = on_s3_event(event, FakeContext())
    finally:
        boto3.DEFAULT_SESSION = None

    assert answer["files"][0]["state"] == "failed"
    assert [row[5:10] for row in files(lambda_env)] == [(
        "failed", None, None, None,
        f"object disappeared or was replaced: s3://{BUCKET}/inbox/bad.csv "
        "(412)")]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["KeyCount"] == 0


def test_the_key_below_inbox_routes_an_object_to_its_dataset(
        lambda_env: Environment, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The function reads the same datasets file; the key's folder plays the subfolder."""
    monkeypatch.setenv("CHUTE_DATASETS", str(REPO / "examples" / "chute.toml"))
    orders = (REPO / "examples" / "orders" / "orders-2024-06-01.csv").read_bytes()

    answers = [on_s3_event(put(s3, key, body), FakeContext())
               for key, body in (("inbox/orders/june.csv", orders),
                                 ("inbox/misc/sample.csv", SAMPLE))]

    assert [a["files"][0]["state"] for a in answers] == ["loaded", "quarantined"]
    assert lambda_env.sql("SELECT name, dataset, state, rows_loaded, rows_rejected, error "
                          "FROM chute.files ORDER BY seq") == [
        ("orders/june.csv", "orders", "loaded", 3, 3, None),
        ("misc/sample.csv", None, "quarantined", None, None,
         "no dataset matches misc/sample.csv (declared: orders: orders/*.csv, orders-*.csv; "
         "readings: readings/**/*.csv; people: *.csv)")]
    assert lambda_env.sql("SELECT order_id, amount::text FROM orders ORDER BY line") == [
        (1001, "19.99"), (1002, "5.50"), (1006, "7.25")]


def test_a_compressed_object_loads_as_its_text_and_a_truncated_one_loads_nothing(
        lambda_env: Environment, s3: Any) -> None:
    packed = gzip.compress(SAMPLE, mtime=0)
    answer = on_s3_event(put(s3, "inbox/sample.csv.gz", packed), FakeContext())
    assert answer["files"][0]["state"] == "loaded"
    assert [row[1:9] for row in files(lambda_env)] == [(
        "sample.csv.gz", f"s3://{BUCKET}/inbox/sample.csv.gz", hashlib.sha256(packed).hexdigest(),
        len(packed), "loaded", 15, 15, 0)]

    cut = gzip.compress(SAMPLE + b"Extra Row,30,Oslo\n" * 50, mtime=1)[:-20]
    answer = on_s3_event(put(s3, "inbox/cut.csv.gz", cut), FakeContext())
    assert answer["files"][0]["state"] == "quarantined"
    assert files(lambda_env)[1][9] == f"gzip data ends early after {len(cut):,} bytes"
    assert lambda_env.sql("SELECT count(*) FROM people") == [(15,)]  # none of the cut one
