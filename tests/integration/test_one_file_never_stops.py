"""No single file can stop the pipeline: files of other owners, files the services may
not read, links out of the inbox, FIFOs, a full disk, a file changed under a claim.

Each test drops the troublesome file first and an ordinary one after it: the ordinary
one must load whatever became of the first. The services run as root here unless a
test says otherwise; tests about owners run them as SERVICE_UID, without root's
capabilities, as docker/entrypoint.sh does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import SAMPLE
from harness import Environment, Services, free_port, wait_until

RESCAN_PAUSE = 6.0  # longer than the watcher's rescan, so that one runs
SERVICE_UID = 4321  # the services, and the owner of the data folder
OTHER_UID = 5678  # someone else who drops files


def people(n: int, tag: str) -> bytes:
    return ("fullname,age,location\n" + "".join(
        f"{tag} Person{i},{20 + i},Town{i}\n" for i in range(n))).encode()


@pytest.fixture
def shared_environment(request: pytest.FixtureRequest) -> Iterator[Environment]:
    """An environment in a folder other users may enter (pytest's tmp_path is root's
    alone), its data folder owned by SERVICE_UID."""
    root = Path(tempfile.mkdtemp(prefix="chute-owners-"))
    root.chmod(0o755)
    environment = Environment(root)
    for path in [environment.data_dir, *environment.data_dir.rglob("*")]:
        os.chown(path, SERVICE_UID, SERVICE_UID)
    yield environment
    environment.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def drop_as(environment: Environment, name: str, content: bytes, uid: int,
            mode: int = 0o644) -> Path:
    """A file written by `uid` with `mode`, renamed into the inbox whole."""
    staging = environment.data_dir / ".staging"
    staging.mkdir(exist_ok=True)
    tmp = staging / name
    tmp.write_bytes(content)
    os.chown(tmp, uid, uid)
    tmp.chmod(mode)
    target = environment.inbox / name
    os.rename(tmp, target)
    return target


def nothing_left_in_work(environment: Environment) -> bool:
    work = environment.data_dir / "work"
    return not work.exists() or not any(work.iterdir())


def test_files_of_any_owner_load_and_reach_the_archive_and_an_unreadable_one_is_quarantined(
        shared_environment: Environment, request: pytest.FixtureRequest) -> None:
    """The issue's outage: services running as one user, files dropped by root and by
    another user. Before, the move to archive/ was a hard link, which Linux forbids for a
    file one does not own (fs.protected_hardlinks): the file stayed in work/ for ever,
    and the watcher's recovery failed, restarted and took no file again."""
    environment = shared_environment
    services = Services(environment)
    try:
        services.start_all(as_uid=SERVICE_UID)
        drop_as(environment, "by-root.csv", SAMPLE, 0)
        drop_as(environment, "by-other.csv", people(4, "Other"), OTHER_UID)
        drop_as(environment, "secret.csv", people(3, "Secret"), 0, mode=0o600)

        assert environment.wait_final("by-root.csv")["rows_loaded"] == 15
        assert environment.wait_final("by-other.csv")["rows_loaded"] == 4
        secret = environment.wait_final("secret.csv")
        assert secret["state"] == "quarantined"
        assert secret["error"] == "cannot read: permission denied (owner uid 0, mode 600)"
        assert secret["sha256"] is None  # never read

        # Dropped after all that, by the services' own user: taken as usual.
        drop_as(environment, "third.csv", people(2, "Third"), SERVICE_UID)
        assert environment.wait_final("third.csv")["rows_loaded"] == 2

        archive = environment.data_dir / "archive"
        wait_until(lambda: nothing_left_in_work(environment), 30, what="work/ to empty")
        assert sorted(p.name for p in archive.iterdir()) == [
            "by-other.csv", "by-root.csv", "third.csv"]
        assert (archive / "by-root.csv").read_bytes() == SAMPLE
        assert (archive / "by-root.csv").stat().st_uid == 0  # moved, not copied
        quarantined = environment.data_dir / "quarantine" / "secret.csv"
        assert quarantined.stat().st_mode & 0o777 == 0o600
        assert (environment.data_dir / "quarantine" / "secret.csv.reason.txt").read_text() \
            == "cannot read: permission denied (owner uid 0, mode 600)\n"
        assert environment.get("/ready").status_code == 200
        for _name, process in services.processes:
            assert process.poll() is None
    finally:
        services.stop_all()
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(services.logs())


def test_a_symbolic_link_is_not_followed_and_its_target_never_read(
        environment: Environment, stack: Services, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_bytes(people(3, "Secret"))
    # relatime updates the access time at the first read after this: so a read shows.
    mtime = secret.stat().st_mtime
    os.utime(secret, (mtime - 86_400, mtime))
    (environment.inbox / "link.csv").symlink_to(secret)
    (environment.inbox / "passwd.csv").symlink_to("/etc/passwd")
    (environment.inbox / "dangling.csv").symlink_to("/no/such/file.csv")

    link = environment.wait_final("link.csv")
    assert link["state"] == "quarantined"
    assert link["error"] == f"a symbolic link (to {secret}): not followed"
    assert environment.wait_final("passwd.csv")["error"] == \
        "a symbolic link (to /etc/passwd): not followed"
    assert environment.wait_final("dangling.csv")["error"] == \
        "a symbolic link (to /no/such/file.csv): not followed"
    environment.drop("after.csv", people(2, "After"))
    assert environment.wait_final("after.csv")["rows_loaded"] == 2

    assert secret.stat().st_atime == mtime - 86_400  # never opened
    quarantined = environment.data_dir / "quarantine" / "link.csv"
    assert quarantined.is_symlink() and not secret.is_symlink()
    names = {row[0] for row in environment.sql("SELECT first_name FROM people")}
    assert names == {"After"}


def test_a_link_into_an_allowed_folder_is_followed_and_the_archive_holds_its_bytes(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    allowed = tmp_path / "exports"
    allowed.mkdir()
    (allowed / "today.csv").write_bytes(people(3, "Linked"))
    outside = tmp_path / "outside.csv"
    outside.write_bytes(people(1, "Outside"))
    services.start_all()
    for name, process in list(services.processes):
        if name == "watcher":
            services.stop(process)
    services.start("watcher", CHUTE_FOLLOW_LINKS_UNDER=str(allowed))

    (environment.inbox / "today.csv").symlink_to(allowed / "today.csv")
    (environment.inbox / "escape.csv").symlink_to(allowed / ".." / "outside.csv")

    assert environment.wait_final("today.csv")["rows_loaded"] == 3
    assert environment.wait_final("escape.csv")["state"] == "quarantined"
    archived = environment.data_dir / "archive" / "today.csv"
    assert not archived.is_symlink() and archived.read_bytes() == people(3, "Linked")
    # The archive is the loaded bytes: a later change to the target does not reach it.
    (allowed / "today.csv").write_bytes(people(1, "Changed"))
    assert archived.read_bytes() == people(3, "Linked")


def test_fifos_and_hard_links_are_quarantined_unread_and_folders_left_alone(
        environment: Environment, stack: Services, tmp_path: Path) -> None:
    os.mkfifo(environment.inbox / "pipe.csv")  # reading it would block for ever
    outside = tmp_path / "theirs.csv"
    outside.write_bytes(people(2, "Theirs"))
    os.link(outside, environment.inbox / "hard.csv")
    (environment.inbox / "folder.csv").mkdir()
    environment.drop("after.csv", people(2, "After"))

    assert environment.wait_final("after.csv")["rows_loaded"] == 2
    pipe = environment.wait_final("pipe.csv")
    assert (pipe["state"], pipe["error"]) == (
        "quarantined", "a FIFO (named pipe), not a regular file: not read")
    hard = environment.wait_final("hard.csv")
    assert hard["state"] == "quarantined"
    assert hard["error"].startswith("a hard link (one of 2 names of the same file): not read")
    assert (environment.inbox / "folder.csv").is_dir()
    assert environment.file_state("folder.csv") is None
    names = {row[0] for row in environment.sql("SELECT first_name FROM people")}
    assert names == {"After"}


def _metrics_port_health(port: int) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_a_worker_in_a_restart_loop_shows_in_ready_and_its_health_check(
        environment: Environment, services: Services) -> None:
    services.start("api")
    services.wait_for_api()
    port = free_port()
    services.start("watcher", CHUTE_METRICS_PORT=str(port))
    wait_until(lambda: _metrics_port_health(port) == 200, 30, what="the watcher's /health")
    environment.drop("first.csv", people(2, "First"))  # registered: the watcher is at work
    wait_until(lambda: environment.file_state("first.csv"), 30, what="first.csv's record")
    # Something no retry of the watcher's can mend: its ledger is not where it looks.
    environment.sql("ALTER TABLE chute.files RENAME TO files_elsewhere")
    try:
        environment.drop("sample.csv", SAMPLE)  # the watcher's session now fails at once
        message = wait_until(lambda: _ready_problem(environment), 120,
                             what="/ready to name the restarting watcher")
        assert "watcher is restarting: " in message
        assert "sessions failed in a row, the last with UndefinedTable" in message
        assert _metrics_port_health(port) == 503
    finally:
        environment.sql("ALTER TABLE chute.files_elsewhere RENAME TO files")
    assert "watcher is restarting" in environment.get("/").text  # until mended for a while
    # Mended: the file loads (a transformer and a loader now), and once a session has
    # run a while, the report goes.
    services.start("transformer")
    services.start("loader")
    assert environment.wait_final("sample.csv")["rows_loaded"] == 15
    assert environment.wait_final("first.csv")["rows_loaded"] == 2
    wait_until(lambda: environment.get("/ready").status_code == 200, 90,
               what="/ready to be 200 again")
    assert _metrics_port_health(port) == 200


def _ready_problem(environment: Environment) -> str | None:
    answer = environment.get("/ready")
    return answer.json()["error"]["message"] if answer.status_code == 503 else None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A data folder on a tmpfs of 4 MiB (this needs root, as CI runs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_shows_in_ready_holds_back_only_what_needs_space_and_then_resumes(
        small_disk: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    environment = Environment(tmp_path, data_dir=small_disk / "data")
    services = Services(environment)
    try:
        services.start_all()
        # Staged first: once the disk is full no file can be written, only renamed in.
        staging = environment.data_dir / ".staging"
        staging.mkdir()
        (staging / "good.csv").write_bytes(people(3, "Good"))
        (staging / "stray.txt.csv").write_bytes(b"no,header,fits\n1,2,3\n")
        filler = environment.data_dir / ".filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * (64 << 10))
                    f.flush()
            except OSError:
                pass
        message = wait_until(lambda: _ready_problem(environment), 30,
                             what="/ready to say the disk is full")
        assert "watcher is waiting: the data folder's disk is full" in message

        os.rename(staging / "good.csv", environment.inbox / "good.csv")
        os.rename(staging / "stray.txt.csv", environment.inbox / "stray.txt.csv")
        # A file that loads needs no space in the data folder: it loads.
        assert environment.wait_final("good.csv")["rows_loaded"] == 3
        # A quarantined one needs its reason written beside it: it waits in work/, whole.
        stray = environment.wait_final("stray.txt.csv")
        assert stray["state"] == "quarantined"
        wait_until(lambda: (environment.get(f"/files/{stray['file_id']}").json()
                            ["move_error"] or "").startswith("cannot move to quarantine/"),
                   30, what="the failed move to be recorded")
        assert not list((environment.data_dir / "quarantine").iterdir())

        filler.unlink()
        wait_until(lambda: (environment.data_dir / "quarantine" /
                            "stray.txt.csv.reason.txt").exists(), 90,
                   what="the quarantine to finish once space is free")
        assert (environment.data_dir / "quarantine" / "stray.txt.csv.reason.txt"
                ).read_text() == stray["error"] + "\n"
        assert environment.get(f"/files/{stray['file_id']}").json()["move_error"] is None
        wait_until(lambda: environment.get("/ready").status_code == 200, 30,
                   what="/ready to be 200 once space is free")
        assert nothing_left_in_work(environment)
        assert not [p for p in environment.data_dir.rglob(".*.tmp")]
    finally:
        services.stop_all()
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(services.logs())
        environment.cleanup()


@pytest.mark.parametrize("change", ["deleted", "truncated", "rewritten"])
def test_a_file_changed_between_its_claim_and_its_transform_fails_alone(
        environment: Environment, services: Services, change: str) -> None:
    services.start("api")
    services.start("watcher")
    services.start("loader")
    services.wait_for_api()
    content = people(50, "Early")
    environment.drop("changed.csv", content)
    claimed = wait_until(lambda: list((environment.data_dir / "work").rglob("changed.csv")),
                         30, what="the claim")[0]
    wait_until(lambda: environment.file_state("changed.csv"), 30, what="the registration")
    if change == "deleted":
        claimed.unlink()
    elif change == "truncated":
        claimed.write_bytes(content[:40])
    else:
        claimed.write_bytes(content.replace(b"Early", b"Later"))
    services.start("transformer")

    changed = environment.wait_final("changed.csv")
    assert changed["state"] == "failed"
    expected = {"deleted": "file disappeared: work/",
                "truncated": "file changed after it was claimed: 40 bytes",
                "rewritten": "file changed after it was claimed: sha256 "}[change]
    assert changed["error"].startswith(expected), changed["error"]
    environment.drop("after.csv", people(2, "After"))
    assert environment.wait_final("after.csv")["rows_loaded"] == 2
    names = {row[0] for row in environment.sql("SELECT first_name FROM people")}
    assert names == {"After"}


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def test_the_clock_stepped_back_an_hour_neither_misorders_arrivals_nor_regresses_a_state(
        environment: Environment, services: Services, tmp_path: Path) -> None:
    """The workers' clock steps back an hour while they run, as an NTP correction or an
    operator's `date -s` would do to the machine (libfaketime, from Debian's faketime,
    which `make install` installs: its offset file is read at every call). As on a real
    machine, the monotonic clock does not step."""
    assert LIBFAKETIME.exists(), "make install installs Debian's faketime"
    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    clock = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
             "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    services.start("api")
    services.wait_for_api()
    for name in ("watcher", "transformer", "loader"):
        services.start(name, **clock)
    environment.drop("a.csv", people(2, "Before"))
    assert environment.wait_final("a.csv")["state"] == "loaded"

    offset.write_text("-3600\n")  # the clock steps back an hour
    for name in ("b.csv", "c.csv"):
        environment.drop(name, people(2, name[0].upper() + "After"))
        assert environment.wait_final(name)["state"] == "loaded"

    rows = environment.sql("SELECT name, seq, state FROM chute.files ORDER BY seq")
    assert [(name, state) for name, _seq, state in rows] == [
        ("a.csv", "loaded"), ("b.csv", "loaded"), ("c.csv", "loaded")]
    first = [p["first_name"] for p in environment.get("/people", params={"limit": 10}).json()
             ["items"]]
    assert first == ["Before", "Before", "BAfter", "BAfter", "CAfter", "CAfter"]
    # The step did reach the workers: the watcher's log lines went back in time.
    watcher_log = next(p for p in environment.logs.iterdir() if p.name.endswith("watcher.log"))
    times = [line.split('"time": "')[1][:23] for line in watcher_log.read_text().splitlines()
             if '"file received"' in line]
    assert len(times) == 3 and times[1] < times[0] and times[2] > times[1]
    # Nothing went back a state afterwards, nor was anything handled twice.
    time.sleep(RESCAN_PAUSE)
    assert environment.sql("SELECT name, state FROM chute.files ORDER BY seq") == [
        ("a.csv", "loaded"), ("b.csv", "loaded"), ("c.csv", "loaded")]
    assert environment.sql("SELECT count(*), count(DISTINCT id) FROM people") == [(6, 6)]
    assert nothing_left_in_work(environment)
