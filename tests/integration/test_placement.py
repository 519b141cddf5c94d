"""Moving a finished file out of work/ (chute.placement): link, record, unlink, so that
a crash between two steps never leaves the recorded path behind; and a deadlock is a
rolled-back transaction, not a lost connection."""

from __future__ import annotations

import threading

import psycopg2.errors
from test_redelivery import claim, people

from chute import db, placement
from chute.folders import Folders
from harness import Environment


def test_a_move_cut_short_after_the_link_is_recorded_by_the_next_attempt(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "cut.csv", people(3, "Cut"), 10)
    work = environment.data_dir / "work" / file_id / "cut.csv"

    # The first attempt linked the file into archive/, then died before recording it.
    linked = folders.link_to_archive(file_id, "cut.csv")
    assert linked == environment.data_dir / "archive" / "cut.csv" and work.exists()
    assert environment.sql("SELECT path FROM chute.files WHERE file_id = %s", (file_id,)) == [
        (f"work/{file_id}/cut.csv",)]

    assert placement.archive(conn, folders, file_id, "cut.csv") == linked
    assert environment.sql("SELECT path FROM chute.files WHERE file_id = %s", (file_id,)) == [
        ("archive/cut.csv",)]
    assert not work.exists() and not work.parent.exists()
    # Once moved, a repeated attempt changes nothing.
    assert placement.archive(conn, folders, file_id, "cut.csv") is None
    assert linked.read_bytes() == people(3, "Cut")


def test_quarantine_records_the_path_before_the_file_leaves_work(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "bad.csv", people(2, "Bad"), 10)
    linked = folders.link_to_quarantine(file_id, "bad.csv", "a reason")  # then a crash

    assert placement.quarantine(conn, folders, file_id, "bad.csv", "a reason") == linked
    assert environment.sql("SELECT path FROM chute.files WHERE file_id = %s", (file_id,)) == [
        ("quarantine/bad.csv",)]
    assert not (environment.data_dir / "work" / file_id).exists()


def test_a_deadlock_is_raised_as_itself_not_as_a_lost_connection(
        environment: Environment, conn: db.Connection) -> None:
    first, _m = claim(environment, conn, "one.csv", people(1, "One"), 10)
    second, _m = claim(environment, conn, "two.csv", people(1, "Two"), 10)
    other = db.connect(environment.database_url)
    both_locked = threading.Barrier(2)
    errors: list[BaseException] = []

    def lock(connection: db.Connection, mine: str, theirs: str) -> None:
        try:
            with db.transaction(connection) as cur:
                cur.execute("SELECT FROM chute.files WHERE file_id = %s FOR UPDATE", (mine,))
                both_locked.wait(10)
                cur.execute("SELECT FROM chute.files WHERE file_id = %s FOR UPDATE", (theirs,))
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    threads = [threading.Thread(target=lock, args=(conn, first, second)),
               threading.Thread(target=lock, args=(other, second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [type(e) for e in errors] == [psycopg2.errors.DeadlockDetected]
    # Both connections are still there, and usable.
    for connection in (conn, other):
        with db.transaction(connection) as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    other.close()
