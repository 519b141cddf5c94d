import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chute.errors import MessageDecodeError
from chute.rabbitmq.messages import SCHEMA_VERSION, FileArrived, FileDone, RowBatch


def test_file_arrived_round_trips() -> None:
    event = FileArrived(file_id="f", seq=3, name="a b.csv", path="work/f/a b.csv",
                        sha256="00" * 32, size=10, dataset="orders")

    assert FileArrived.decode(*event.encode()) == event


@given(rows=st.binary(), rejects=st.binary(), batch_no=st.integers(0, 2**31 - 1))
def test_row_batch_round_trips(rows: bytes, rejects: bytes, batch_no: int) -> None:
    batch = RowBatch(file_id="f", dataset="people", batch_no=batch_no, row_count=1, reject_count=2,
                     rows=rows, rejects=rejects)

    assert RowBatch.decode(*batch.encode()) == batch


def test_every_message_names_its_file_in_the_headers() -> None:
    for message in (FileDone(file_id="f", batches=1, rows_total=2),
                    RowBatch("f", "people", 0, 0, 0, b"", b"")):
        assert message.encode()[0]["file_id"] == "f"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (None, b"{}"),
        ({"kind": "file.arrived", "v": 99}, b"{}"),
        ({"kind": "file.arrived", "v": SCHEMA_VERSION}, b"not json"),
        ({"kind": "file.arrived", "v": SCHEMA_VERSION}, b"[1]"),
        ({"kind": "file.arrived", "v": SCHEMA_VERSION}, b'{"file_id": "x"}'),
        ({"kind": "file.done", "v": SCHEMA_VERSION}, b"{}"),
    ],
)
def test_undecodable_file_events_raise_one_error_type(headers: dict | None, body: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        FileArrived.decode(headers, body)


def test_a_batch_without_its_headers_is_undecodable() -> None:
    with pytest.raises(MessageDecodeError):
        RowBatch.decode({"kind": "row.batch", "v": SCHEMA_VERSION}, b"rows")


def test_a_batch_of_the_text_format_version_is_refused() -> None:
    """Version 1 batches held COPY text: loading one as binary tuples would fail, so it is
    refused (and dead-lettered by the loader) with the reason."""
    headers, body = RowBatch("f", "people", 0, 0, 0, b"", b"").encode()
    with pytest.raises(MessageDecodeError, match="unsupported row.batch schema version 1"):
        RowBatch.decode(headers | {"v": 1}, body)


def test_a_last_batch_carries_its_files_totals_and_closes_it() -> None:
    batch = RowBatch(file_id="f", dataset="people", batch_no=2, row_count=1, reject_count=0,
                     rows=b"r", rejects=b"", batches_total=3, rows_total=7)
    decoded = RowBatch.decode(*batch.encode())
    assert decoded == batch
    assert decoded.done == FileDone(file_id="f", batches=3, rows_total=7)
    plain = RowBatch.decode(*replace(batch, batches_total=None, rows_total=None).encode())
    assert plain.done is None


def test_a_batch_of_version_3_is_still_read_and_closes_nothing() -> None:
    headers, body = RowBatch(file_id="f", dataset="people", batch_no=0, row_count=1,
                             reject_count=0, rows=b"r", rejects=b"").encode()
    decoded = RowBatch.decode(headers | {"v": 3}, body)
    assert decoded.rows == b"r" and decoded.done is None


_ARRIVED = {"file_id": "f", "seq": 1, "name": "a.csv", "path": "work/f/a.csv",
            "sha256": "0" * 64, "size": 10, "dataset": "people"}


@pytest.mark.parametrize(("field", "value"), [
    ("seq", "1"), ("size", 10.0), ("size", True), ("name", 5), ("dataset", None)])
def test_a_file_event_with_a_field_of_the_wrong_type_is_undecodable(
        field: str, value: object) -> None:
    """Before, only the keys were checked: such a message went round the retries and failed
    later, in a handler; now it goes to the dead-letter queue at once."""
    headers, _body = FileArrived(**_ARRIVED).encode()
    body = json.dumps(_ARRIVED | {field: value}).encode()
    with pytest.raises(MessageDecodeError, match=f"bad file.arrived body: .*{field}"):
        FileArrived.decode(headers, body)


@pytest.mark.parametrize(("header", "value"), [
    ("batch_no", "3"), ("row_count", 1.5), ("file_id", 7), ("rows_bytes", 999),
    ("rows_bytes", -1), ("batches_total", "2")])
def test_a_batch_with_a_header_of_the_wrong_type_or_size_is_undecodable(
        header: str, value: object) -> None:
    headers, body = RowBatch("f", "people", 3, 1, 0, b"rows", b"", 4, 1).encode()
    with pytest.raises(MessageDecodeError, match=f"bad row.batch headers: .*{header}"):
        RowBatch.decode(headers | {header: value}, body)
