"""Files arriving in the inbox, through the real watcher: a file is taken once it is
complete, however it got there, and only the files that are ours are taken."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Environment, Services, running_stack, wait_until
from watcher.watch import RESCAN_SECONDS

HEADER = b"fullname,age,location\n"
TIMEOUT = 60.0
# Long enough for the watcher to have rescanned the inbox at least once: what it has not
# taken by then it did not take for lack of a look.
PAST_A_RESCAN = RESCAN_SECONDS + 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[tuple[Environment, Services]]:
    with running_stack(tmp_path_factory.mktemp("arrivals"), request) as running:
        yield running


def registered(environment: Environment) -> list[str]:
    return [name for (name,) in environment.sql("SELECT name FROM chute.files ORDER BY seq")]


def loaded_names(environment: Environment, name: str) -> list[tuple[str, str | None]]:
    return environment.sql(
        """SELECT p.first_name, p.last_name FROM people p JOIN chute.files f
           ON f.seq = p.file_seq WHERE f.name = %s ORDER BY f.seq, p.line""", (name,))


def assert_loaded(environment: Environment, name: str, rows: int) -> dict[str, object]:
    state = environment.wait_final(name, TIMEOUT)
    assert (state["state"], state["rows_loaded"], state["rows_rejected"]) == ("loaded", rows, 0)
    return state


def test_file_written_slowly_in_place_is_taken_only_after_close(
    stack: tuple[Environment, Services],
) -> None:
    environment, _services = stack
    path = environment.inbox / "slow.csv"
    with path.open("wb") as f:
        f.write(HEADER)
        f.flush()
        time.sleep(1)
        f.write(b"Ann Smith,30,Oslo\n")
        f.flush()
        time.sleep(PAST_A_RESCAN)
        assert path.exists() and "slow.csv" not in registered(environment)
        f.write(b"Bob Jones,31,Rome\n")

    assert_loaded(environment, "slow.csv", 2)
    assert loaded_names(environment, "slow.csv") == [("Ann", "Smith"), ("Bob", "Jones")]


def test_copy_is_taken(stack: tuple[Environment, Services], tmp_path: Path) -> None:
    environment, _services = stack
    source = tmp_path / "copied.csv"
    source.write_bytes(HEADER + b"Cy Copy,30,Oslo\n")

    shutil.copyfile(source, environment.inbox / "copied.csv")  # not copy(): see test_pipeline

    assert_loaded(environment, "copied.csv", 1)
    assert (environment.data_dir / "archive" / "copied.csv").read_bytes() == source.read_bytes()


def test_rename_from_outside_is_taken(stack: tuple[Environment, Services]) -> None:
    environment, _services = stack
    environment.drop("renamed.csv", HEADER + b"Rene Rename,30,Oslo\n")  # written, renamed in

    assert_loaded(environment, "renamed.csv", 1)


def test_partial_download_is_taken_once_renamed(stack: tuple[Environment, Services]) -> None:
    environment, _services = stack
    part = environment.inbox / "download.csv.part"
    with part.open("wb") as f:
        f.write(HEADER + b"Dora Download,30,Oslo\n")
    time.sleep(PAST_A_RESCAN)
    assert part.exists() and "download.csv.part" not in registered(environment)

    os.rename(part, environment.inbox / "download.csv")

    assert_loaded(environment, "download.csv", 1)
    assert not part.exists()


def test_names_with_spaces_accents_and_upper_case_extension(
    stack: tuple[Environment, Services],
) -> None:
    environment, _services = stack
    name = "Données clients.CSV"
    environment.drop(name, HEADER + b"Zo\xc3\xab \xc3\x9cnal,30,K\xc3\xb6ln\n")

    assert_loaded(environment, name, 1)
    assert loaded_names(environment, name) == [("Zoë", "Ünal")]
    assert (environment.data_dir / "archive" / name).exists()


def test_names_that_are_not_utf8_or_too_long_are_made_safe(
    stack: tuple[Environment, Services],
) -> None:
    # The database and the messages hold only UTF-8, and the archive must be able to add
    # a suffix: such names are changed when claimed, never a reason to stop the watcher.
    environment, _services = stack
    latin1 = os.fsdecode("Données.csv".encode("latin-1"))
    environment.drop(latin1, HEADER + b"Lat One,30,Oslo\n")
    environment.drop("n" * 240 + ".csv", HEADER + b"Len Long,30,Oslo\n")

    assert_loaded(environment, "Donn\ufffdes.csv", 1)
    assert_loaded(environment, "n" * 196 + ".csv", 1)
    archived = {p.name for p in (environment.data_dir / "archive").iterdir()}
    assert {"Donn\ufffdes.csv", "n" * 196 + ".csv"} <= archived


def test_same_bytes_again_are_a_duplicate_and_new_bytes_a_new_arrival(
    stack: tuple[Environment, Services],
) -> None:
    environment, _services = stack
    name = "Réunion 2024.csv"
    first = HEADER + b"Dee Duplicate,30,Oslo\n"
    environment.drop(name, first)
    assert_loaded(environment, name, 1)

    environment.drop(name, first)
    wait_until(lambda: [s for (s,) in environment.sql(
        "SELECT state FROM chute.files WHERE name = %s ORDER BY seq", (name,))]
        == ["loaded", "duplicate"], TIMEOUT, what="the second arrival to be a duplicate")
    environment.drop(name, HEADER + b"Bob Jones,31,Rome\n")

    wait_until(lambda: [s for (s,) in environment.sql(
        "SELECT state FROM chute.files WHERE name = %s ORDER BY seq", (name,))]
        == ["loaded", "duplicate", "loaded"], TIMEOUT, what="the third arrival to load")
    assert loaded_names(environment, name) == [("Dee", "Duplicate"), ("Bob", "Jones")]


def test_files_that_are_not_ours_are_left_alone(stack: tuple[Environment, Services]) -> None:
    environment, _services = stack
    inbox = environment.inbox
    content = HEADER + b"Mark Marker,30,Oslo\n"
    left_alone = [".hidden.csv", "notes.txt", "people.csv.part", "people.csv~", "nocsv"]
    for name in left_alone:
        (inbox / name).write_bytes(content)
    (inbox / ".hidden").mkdir()
    (inbox / ".hidden" / "inner.csv").write_bytes(content)

    time.sleep(PAST_A_RESCAN)
    environment.drop("marker.csv", content)  # taken: so the watcher is looking
    assert_loaded(environment, "marker.csv", 1)

    assert sorted(p.name for p in inbox.iterdir()) == sorted([*left_alone, ".hidden"])
    assert [p.name for p in (inbox / ".hidden").iterdir()] == ["inner.csv"]
    assert not set(registered(environment)) & {*left_alone, ".hidden/inner.csv"}
    for name in left_alone:
        (inbox / name).unlink()
    shutil.rmtree(inbox / ".hidden")


def test_a_csv_in_a_subfolder_no_dataset_matches_is_quarantined_saying_so(
        stack: tuple[Environment, Services]) -> None:
    """people takes *.csv at the inbox's top level only; subfolders belong to datasets."""
    environment, _services = stack
    (environment.inbox / "folder.csv").mkdir()
    (environment.inbox / "folder.csv" / "inner.csv").write_bytes(HEADER + b"Ida In,3,Oslo\n")

    state = environment.wait_final("folder.csv/inner.csv", TIMEOUT)

    assert (state["state"], state["dataset"]) == ("quarantined", None)
    assert state["error"] == ("no dataset matches folder.csv/inner.csv (declared: people: "
                              "*.csv)")
    moved = environment.data_dir / "quarantine" / "folder.csv" / "inner.csv"
    assert moved.read_bytes() == HEADER + b"Ida In,3,Oslo\n"
    assert (moved.parent / "inner.csv.reason.txt").read_text() == state["error"] + "\n"
    assert list((environment.inbox / "folder.csv").iterdir()) == []
    shutil.rmtree(environment.inbox / "folder.csv")


def test_files_that_arrive_while_the_watcher_is_down_are_taken_at_start(
    stack: tuple[Environment, Services],
) -> None:
    environment, services = stack
    watcher = next(p for name, p in services.processes if name == "watcher" and p.poll() is None)
    assert services.stop(watcher) == 0
    environment.drop("while-down.csv", HEADER + b"Wanda While,30,Oslo\n")
    (environment.inbox / "copied-while-down.csv").write_bytes(HEADER + b"Wes While,31,Rome\n")
    held = (environment.inbox / "held-open.csv").open("wb")  # still being written at start
    try:
        held.write(HEADER + b"Cy Young,32,Lima\n")
        held.flush()

        services.start("watcher")

        assert_loaded(environment, "while-down.csv", 1)
        assert_loaded(environment, "copied-while-down.csv", 1)
        time.sleep(PAST_A_RESCAN)
        assert "held-open.csv" not in registered(environment)
        held.write(b"Di Prince,33,Paris\n")
    finally:
        held.close()

    assert_loaded(environment, "held-open.csv", 2)
    assert loaded_names(environment, "held-open.csv") == [("Cy", "Young"), ("Di", "Prince")]
