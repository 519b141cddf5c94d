"""The transformer's claim (db.begin_processing_many): one arrival per content, and the
batches already loaded of a file handled before, read with the claim."""

from __future__ import annotations

import hashlib
import uuid

from test_redelivery import PEOPLE, claim, people

from chute.postgres import db
from harness import Environment


def register(environment: Environment, conn: db.Connection, name: str, content: bytes
             ) -> tuple[str, str]:
    file_id = str(uuid.uuid4())
    sha256 = hashlib.sha256(content).hexdigest()
    db.register_file(conn, file_id, name, f"work/{file_id}/{name}", sha256, len(content),
                     "people")
    return file_id, sha256


def test_a_second_arrival_of_the_same_bytes_is_a_duplicate_of_the_first(
        environment: Environment, conn: db.Connection) -> None:
    content = people(4, "Same")
    first = register(environment, conn, "a.csv", content)
    second = register(environment, conn, "b.csv", content)
    other = register(environment, conn, "c.csv", people(4, "Other"))

    claims = db.begin_processing_many(conn, [first, second, other], 10)

    # The group takes files in sha256 order, then file id: which of the two equal files
    # is claimed first is that order's, and the other is its duplicate.
    original, duplicate = sorted([first[0], second[0]])
    assert claims[original] == ("process", 10, set())
    assert claims[duplicate] == ("duplicate", 0, set())
    assert claims[other[0]] == ("process", 10, set())
    assert environment.sql(
        "SELECT duplicate_of::text, rows_total FROM chute.files WHERE file_id = %s",
        (duplicate,)) == [(original, 0)]


def test_a_file_claimed_again_gets_the_batches_already_loaded(
        environment: Environment, conn: db.Connection) -> None:
    file_id, messages = claim(environment, conn, "again.csv", people(25, "Again"), 10)
    first, second, third, _done = messages
    db.load_batch(conn, PEOPLE, first)
    db.load_batch(conn, PEOPLE, third)
    [(sha256,)] = environment.sql("SELECT sha256 FROM chute.files WHERE file_id = %s",
                                  (file_id,))

    # A redelivered event: the file is processing already, two batches are in.
    assert db.begin_processing_many(conn, [(file_id, sha256)], 99) == {
        file_id: ("process", 10, {0, 2})}
    assert environment.sql("SELECT attempts FROM chute.files WHERE file_id = %s",
                           (file_id,)) == [(2,)]
