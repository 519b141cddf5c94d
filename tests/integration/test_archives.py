"""Zip archives through the real services: each CSV member an arrival of its own, named
ARCHIVE.zip/ENTRY and matched by that name; the others listed and skipped; a member
that cannot be read quarantined while the others load; the archive's own record."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_files import damage, make_zip, mark_encrypted

from harness import Environment, Services, running_stack, wait_until

DATASETS = """
[datasets.rides]
match = ["**/rides/*.csv"]
[datasets.rides.columns]
ride = { type = "integer", required = true }
city = { type = "text" }
"""
MONDAY = b"ride,city\n1,Oslo\n2,Bergen\n"
TUESDAY = b"ride,city\n3,Oslo\nx,Lima\n"
ALONE = b"ride,city\n9,Rome\n"  # also dropped on its own: the member is its duplicate


def bundle() -> bytes:
    data = make_zip({"rides/": b"", "rides/mon.csv": MONDAY,
                     "rides/tue.csv.gz": gzip.compress(TUESDAY, mtime=0), "rides/alone.csv": ALONE,
                     "README.txt": b"from the supplier", "other/x.csv": MONDAY + b"3,Rome\n",
                     "rides/broken.csv": b"ride,city\n" + b"4,Oslo\n" * 20,
                     "rides/secret.csv": b"ride,city\n5,Oslo\n"}, zipfile.ZIP_STORED)
    return mark_encrypted(damage(data, "rides/broken.csv"), "rides/secret.csv")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
          ) -> Iterator[tuple[Environment, Services]]:
    root = tmp_path_factory.mktemp("archives")
    (root / "chute.toml").write_text(DATASETS)
    with running_stack(root / "stack", request, CHUTE_DATASETS=str(root / "chute.toml")
                       ) as (environment, services):
        environment.drop("rides/alone.csv", ALONE)
        environment.wait_final("rides/alone.csv", 60)
        environment.drop("in/bundle.zip", bundle())
        yield environment, services


def member(environment: Environment, entry: str) -> dict[str, Any]:
    return environment.wait_final(f"in/bundle.zip/{entry}", 60)


def test_each_csv_member_is_an_arrival_of_its_own(stack: tuple[Environment, Services]
                                                 ) -> None:
    environment, _ = stack
    monday, tuesday = member(environment, "rides/mon.csv"), member(environment,
                                                                   "rides/tue.csv.gz")
    assert (monday["state"], monday["dataset"], monday["rows_loaded"]) == ("loaded", "rides", 2)
    assert (tuesday["state"], tuesday["rows_loaded"], tuesday["rows_rejected"]) == (
        "loaded", 1, 1)  # a compressed member, read as its text
    rejects = environment.get(f"/files/{tuesday['file_id']}/rejects").json()["items"]
    assert [(r["line"], r["raw"]) for r in rejects] == [(3, "x,Lima")]
    assert environment.sql("SELECT ride, city FROM rides ORDER BY ride") == [
        (1, "Oslo"), (2, "Bergen"), (3, "Oslo"), (9, "Rome")]
    # Members are archived beside the archive, in a folder of its name.
    archived = environment.data_dir / "archive" / "in" / "bundle.zip"
    assert (archived / "rides" / "mon.csv").read_bytes() == MONDAY
    assert (archived / "bundle.zip").read_bytes() == bundle()


def test_a_member_that_cannot_be_read_or_matched_is_quarantined_the_others_load(
        stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    outcomes = {entry: member(environment, entry) for entry in
                ("rides/broken.csv", "rides/secret.csv", "other/x.csv")}
    assert {entry: (o["state"], o["error"]) for entry, o in outcomes.items()} == {
        "rides/broken.csv": ("quarantined", "damaged in the archive (Bad CRC-32 for file "
                                            "'rides/broken.csv')"),
        "rides/secret.csv": ("quarantined", "encrypted: chute reads no password-protected "
                                            "member"),
        "other/x.csv": ("quarantined", "no dataset matches in/bundle.zip/other/x.csv "
                                       "(declared: rides: **/rides/*.csv; people: *.csv)"),
    }
    quarantined = environment.data_dir / "quarantine" / "in" / "bundle.zip"
    assert (quarantined / "other" / "x.csv.reason.txt").is_file()


def test_the_archive_has_a_record_of_its_entries(stack: tuple[Environment, Services]
                                                ) -> None:
    environment, _ = stack
    archive = environment.wait_final("in/bundle.zip", 60)
    for entry in ("rides/mon.csv", "rides/tue.csv.gz", "rides/broken.csv",
                  "rides/secret.csv", "other/x.csv", "rides/alone.csv"):
        member(environment, entry)
    archive = environment.get(f"/files/{archive['file_id']}").json()
    assert (archive["state"], archive["dataset"], archive["archive_id"]) == (
        "loaded", None, None)
    listed = {e["entry"]: (e["state"], e["skipped"]) for e in archive["entries"]}
    assert listed == {
        "rides/": (None, "a folder"), "README.txt": (None, "not a CSV file"),
        "rides/mon.csv": ("loaded", None), "rides/tue.csv.gz": ("loaded", None),
        "rides/alone.csv": ("duplicate", None),  # the same bytes arrived on their own
        "other/x.csv": ("quarantined", None), "rides/broken.csv": ("quarantined", None),
        "rides/secret.csv": ("quarantined", None),
    }
    monday = member(environment, "rides/mon.csv")
    assert environment.get(f"/files/{monday['file_id']}").json()["archive_id"] == \
        archive["file_id"]
    page = environment.get("/").text
    assert "zip archive: 6 members (1 duplicate, 2 loaded, 3 quarantined), 2 skipped" in page


def test_the_same_archive_again_is_a_duplicate_and_takes_nothing_apart(
        stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    environment.wait_final("in/bundle.zip", 60)
    environment.drop("again/bundle.zip", bundle())
    again = environment.wait_final("again/bundle.zip", 60)
    assert again["state"] == "duplicate"
    assert environment.get(f"/files/{again['file_id']}").json()["entries"] is None
    assert environment.get("/files", params={"name": "again/bundle.zip/rides/mon.csv"}
                           ).json()["items"] == []


def test_a_file_that_is_no_zip_is_quarantined_with_why(stack: tuple[Environment, Services]
                                                       ) -> None:
    environment, _ = stack
    environment.drop("fake.zip", b"ride,city\n1,Oslo\n")
    fake = environment.wait_final("fake.zip", 60)
    assert fake["state"] == "quarantined"
    assert fake["error"] == "not a zip archive that can be read (File is not a zip file)"
    assert (environment.data_dir / "quarantine" / "fake.zip" / "fake.zip").is_file()


def test_infer_reads_a_zipped_csv(tmp_path: Path) -> None:
    zipped = tmp_path / "rides-2024.zip"
    zipped.write_bytes(make_zip({"rides/mon.csv": MONDAY}))
    result = subprocess.run([str(Path(sys.executable).parent / "chute"), "infer", str(zipped)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'ride = { type = "integer", required = true }' in result.stdout
    assert "from rides-2024.zip/rides/mon.csv" in result.stdout


def test_a_transformer_killed_while_it_takes_an_archive_apart_loses_and_doubles_nothing(
        tmp_path: Path) -> None:
    (tmp_path / "chute.toml").write_text(DATASETS)
    environment = Environment(tmp_path / "stack", CHUTE_DATASETS=str(tmp_path / "chute.toml"))
    services = Services(environment)
    try:
        services.start("api")
        services.start("watcher")
        transformer = services.start("transformer")
        services.start("loader")
        services.wait_for_api()
        count = 400
        members = {f"rides/day{n:03d}.csv": b"ride,city\n" + b"".join(
            b"%d,City%d\n" % (n * 100 + i, i) for i in range(100)) for n in range(count)}
        environment.drop("big.zip", make_zip(members))
        # Killed while it extracts the members, before it has registered them.
        work = environment.data_dir / "work"
        wait_until(lambda: len(list(work.glob("*/big.zip/rides/*.csv"))) >= 20, 60,
                   interval=0.002, what="the archive's members to be extracted")
        os.kill(transformer.pid, signal.SIGKILL)
        transformer.wait()
        assert environment.sql("SELECT count(*) FROM chute.files WHERE name LIKE "
                               "'big.zip/%%'") == [(0,)]  # none registered yet
        services.start("transformer")
        wait_until(lambda: environment.sql(
            "SELECT count(*) FROM chute.files WHERE name LIKE 'big.zip/%%' "
            "AND state = 'loaded'")[0][0] == count, 180, what="every member to load")
        assert environment.wait_final("big.zip", 60)["state"] == "loaded"
        assert environment.sql("SELECT count(*), count(DISTINCT ride) FROM rides") == [
            (count * 100, count * 100)]
        assert environment.sql("SELECT count(*) FROM chute.archive_entries") == [(count,)]
    finally:
        services.stop_all()
        environment.cleanup()
