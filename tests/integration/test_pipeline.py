"""The whole pipeline, end to end: a file in the inbox -> rows over HTTP."""

from __future__ import annotations

import shutil
import uuid

from conftest import SAMPLE
from harness import REPO, Environment, Services, wait_until

SAMPLE_ROWS = [
    line.split(",") for line in SAMPLE.decode().splitlines()[1:]
]


def test_sample_is_loaded_in_file_order(environment: Environment, stack: Services) -> None:
    # copyfile, as `cp` does: copy() also sets the mode after closing the file, by which
    # time the watcher may have claimed (moved) it.
    shutil.copyfile(REPO / "data" / "sample.csv",
                    environment.inbox / "sample.csv")

    state = environment.wait_final("sample.csv")

    assert state["state"] == "loaded"
    assert (state["rows_total"], state["rows_loaded"], state["rows_rejected"]) == (15, 15, 0)
    rows = environment.get("/read/first-chunk", params={"num_records": 15}).json()
    assert [[r["first_name"] + " " + r["last_name"], r["age"], r["location"]] for r in rows] \
        == [[name, int(age), location] for name, age, location in SAMPLE_ROWS]
    assert all(str(uuid.UUID(r["id"])) == r["id"] for r in rows)
    assert all(type(r["age"]) is int for r in rows)
    assert (environment.data_dir / "archive" / "sample.csv").read_bytes() == SAMPLE
    assert list(environment.inbox.iterdir()) == []


def test_old_client_request_still_works(environment: Environment, stack: Services) -> None:
    environment.drop("sample.csv", SAMPLE)
    environment.wait_final("sample.csv")

    old = environment.get("/read/first-chunk?db_name=x&user=y&password=z"
                          "&table_name=people&num_records=5")
    assert old.status_code == 200
    assert [r["first_name"] for r in old.json()] == ["John", "Jane", "Michael", "Emily", "David"]

    bad = environment.get("/read/first-chunk?num_records=abc")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_request"
    assert "num_records" in bad.json()["error"]["message"]

    other_table = environment.get("/read/first-chunk?table_name=secrets")
    assert other_table.status_code == 404
    assert "password" not in "".join(p.read_text() for p in environment.logs.iterdir())


def test_same_bytes_again_are_a_duplicate(environment: Environment, stack: Services) -> None:
    environment.drop("sample.csv", SAMPLE)
    first = environment.wait_final("sample.csv")
    environment.drop("sample.csv", SAMPLE)

    second = wait_until(
        lambda: (s := environment.file_state("sample.csv"))["file_id"] != first["file_id"]
        and s["state"] == "duplicate" and s,
        what="the second arrival to be a duplicate")

    assert second["rows_loaded"] == 0
    assert environment.sql("SELECT count(*) FROM people") == [(15,)]
    archived = sorted(p.name for p in (environment.data_dir / "archive").iterdir())
    assert len(archived) == 2 and "sample.csv" in archived


def test_same_name_with_new_bytes_is_a_new_arrival(environment: Environment,
                                                  stack: Services) -> None:
    environment.drop("people.csv", b"fullname,age,location\nAda Lovelace,36,London\n")
    environment.wait_final("people.csv")
    environment.drop("people.csv", b"fullname,age,location\nAlan Turing,41,Wilmslow\n")

    wait_until(lambda: len(environment.get("/files", params={"name": "people.csv",
                                                             "state": "loaded"}
                                           ).json()["items"]) == 2,
               what="both arrivals to load")
    assert environment.sql("SELECT first_name FROM people ORDER BY file_seq, line") == [
        ("Ada",), ("Alan",)]


def test_files_already_in_the_inbox_are_taken_at_start(environment: Environment,
                                                      services: Services) -> None:
    (environment.inbox / "early.csv").write_bytes(SAMPLE)

    services.start_all()

    assert environment.wait_final("early.csv")["rows_loaded"] == 15


def test_competing_workers_load_every_row_once(environment: Environment,
                                               services: Services) -> None:
    services.start_all(transformers=2, loaders=2)
    header = b"fullname,age,location\n"
    for n in range(8):
        body = b"".join(b"Person%d Number%d,%d,Town %d\n" % (n, i, i % 100, n)
                        for i in range(2500))
        environment.drop(f"batch-{n}.csv", header + body)

    for n in range(8):
        assert environment.wait_final(f"batch-{n}.csv", 60)["rows_loaded"] == 2500
    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [
        (20000, 20000)]


def test_services_stop_cleanly_on_sigterm(environment: Environment, stack: Services) -> None:
    codes = [stack.stop(process) for _name, process in stack.processes]

    assert codes == [0, 0, 0, 0]

