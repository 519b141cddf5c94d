"""Moving a finished file out of work/ (chute.runtime.placement): the destination recorded,
then a rename that never replaces a file, so that a crash between two steps never
leaves the recorded path behind; and a deadlock is a rolled-back transaction, not a
lost connection."""

from __future__ import annotations

import os
import threading

import psycopg2.errors
from test_redelivery import claim, people

from chute.postgres import db
from chute.runtime import placement
from chute.runtime.folders import Folders
from harness import Environment


def _path(environment: Environment, file_id: str) -> str:
    return environment.sql("SELECT path FROM chute.files WHERE file_id = %s", (file_id,))[0][0]


def test_a_move_cut_short_after_its_destination_was_recorded_ends_there(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "cut.csv", people(3, "Cut"), 10)
    work = environment.data_dir / "work" / file_id / "cut.csv"
    # The first attempt recorded archive/cut.csv, then died before the rename.
    assert db.move_paths(conn, [(file_id, f"work/{file_id}/cut.csv", "archive/cut.csv")]) \
        == {file_id}

    dest = placement.archive(conn, folders, file_id, "cut.csv")
    assert dest == environment.data_dir / "archive" / "cut.csv"
    assert _path(environment, file_id) == "archive/cut.csv"
    assert not work.exists() and not work.parent.exists()
    # Once moved, a repeated attempt changes nothing.
    assert placement.archive(conn, folders, file_id, "cut.csv") is None
    assert dest.read_bytes() == people(3, "Cut")


def test_a_recorded_destination_taken_meanwhile_is_never_replaced(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "same.csv", people(2, "Mine"), 10)
    assert db.move_paths(conn, [(file_id, f"work/{file_id}/same.csv", "archive/same.csv")])
    # Then, before the rename, another arrival of the same name took archive/same.csv.
    theirs = environment.data_dir / "archive" / "same.csv"
    theirs.write_bytes(b"another file's bytes\n")

    dest = placement.archive(conn, folders, file_id, "same.csv")

    assert dest == environment.data_dir / "archive" / f"same.{file_id[:8]}.csv"
    assert theirs.read_bytes() == b"another file's bytes\n"
    assert dest.read_bytes() == people(2, "Mine")
    assert _path(environment, file_id) == f"archive/same.{file_id[:8]}.csv"


def test_an_older_chutes_link_left_by_a_crash_is_taken_as_the_move(
        environment: Environment, conn: db.Connection) -> None:
    """chute before this version moved by hard link, record, unlink: a crash after the
    link left the file in both places, which this version finishes, not doubles."""
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "old.csv", people(2, "Old"), 10)
    work = environment.data_dir / "work" / file_id / "old.csv"
    (environment.data_dir / "archive").mkdir(exist_ok=True)
    os.link(work, environment.data_dir / "archive" / "old.csv")

    assert placement.archive(conn, folders, file_id, "old.csv") == \
        environment.data_dir / "archive" / "old.csv"
    assert sorted(p.name for p in (environment.data_dir / "archive").iterdir()) == ["old.csv"]
    assert _path(environment, file_id) == "archive/old.csv" and not work.exists()


def test_two_files_of_one_name_archived_at_once_each_keep_their_bytes(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    other = db.connect(environment.database_url)
    ids = [claim(environment, conn, "twin.csv", people(1, f"Twin{i}"), 10)[0]
           for i in range(2)]
    start = threading.Barrier(2)
    moved: dict[str, object] = {}

    def move(connection: db.Connection, file_id: str) -> None:
        start.wait(10)
        moved[file_id] = placement.archive(connection, folders, file_id, "twin.csv")

    threads = [threading.Thread(target=move, args=pair)
               for pair in zip((conn, other), ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other.close()

    assert len(set(moved.values())) == 2 and None not in moved.values()
    for i, file_id in enumerate(ids):
        path = environment.data_dir / _path(environment, file_id)
        assert path.read_bytes() == people(1, f"Twin{i}")


def test_quarantine_records_the_path_and_puts_the_reason_beside_the_file(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "bad.csv", people(2, "Bad"), 10)

    dest = placement.quarantine(conn, folders, file_id, "bad.csv", "a reason")

    assert dest == environment.data_dir / "quarantine" / "bad.csv"
    assert _path(environment, file_id) == "quarantine/bad.csv"
    assert (environment.data_dir / "quarantine" / "bad.csv.reason.txt").read_text() == \
        "a reason\n"
    assert not (environment.data_dir / "work" / file_id).exists()


def test_a_move_that_fails_is_recorded_on_its_file_and_leaves_it_in_work(
        environment: Environment, conn: db.Connection) -> None:
    folders = Folders(environment.data_dir)
    file_id, _messages = claim(environment, conn, "sub/stuck.csv", people(1, "Stuck"), 10)
    (environment.data_dir / "archive" / "sub").write_text("a file where a folder must be\n")

    assert placement.archive(conn, folders, file_id, "sub/stuck.csv") is None

    error = environment.sql("SELECT move_error FROM chute.files WHERE file_id = %s",
                            (file_id,))[0][0]
    assert error.startswith("cannot move to archive/: "), error
    assert (environment.data_dir / "work" / file_id / "sub" / "stuck.csv").exists()
    # Fixed: the next attempt moves it, and the error goes.
    (environment.data_dir / "archive" / "sub").unlink()
    assert placement.archive(conn, folders, file_id, "sub/stuck.csv") == \
        environment.data_dir / "archive" / "sub" / "stuck.csv"
    assert environment.sql("SELECT move_error FROM chute.files WHERE file_id = %s",
                           (file_id,)) == [(None,)]


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
