"""Zip archives: which entries are members, and each member's bytes or why not."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from archive_files import damage, make_zip, mark_encrypted, set_method

from chute.errors import FileUnusable
from chute.reading.archives import entries, extract
from chute.reading.streams import DEFAULT_LIMITS, Limits
from chute.runtime.folders import stored_name

CSV = b"ride,city\n1,Oslo\n2,Bergen\n"


def test_entries_are_members_or_skipped_with_why() -> None:
    data = make_zip({"rides/": b"", "rides/mon.csv": CSV, "rides/tue.CSV.gz": gzip.compress(CSV),
                     "README.txt": b"hello", "notes/x.txt": b"x", ".hidden.csv": CSV,
                     "../escape.csv": CSV, "listed.dat": b"1,2\n"})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        found = entries(archive, "in/bundle.zip", lambda name: name == "in/bundle.zip/listed.dat")
    assert [(e.name, e.member, e.skipped) for e in found] == [
        ("rides/", False, "a folder"),
        ("rides/mon.csv", True, None),
        ("rides/tue.CSV.gz", True, None),
        ("README.txt", False, "not a CSV file"),
        ("notes/x.txt", False, "not a CSV file"),
        (".hidden.csv", False, "a hidden file"),
        ("../escape.csv", False, "an unsafe path (absolute, or with ..)"),
        ("listed.dat", True, None),  # a dataset's match fits ARCHIVE.zip/ENTRY
    ]


def test_a_member_is_extracted_whole_with_its_sha256(tmp_path: Path) -> None:
    data = make_zip({"a.csv": CSV})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sha256, size = extract(archive, archive.getinfo("a.csv"), tmp_path / "x" / "a.csv",
                               DEFAULT_LIMITS)
    assert (sha256, size) == (hashlib.sha256(CSV).hexdigest(), len(CSV))
    assert (tmp_path / "x" / "a.csv").read_bytes() == CSV
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a.csv"]


@pytest.mark.parametrize(("broken", "reason"), [
    (lambda d: mark_encrypted(d, "a.csv"),
     "encrypted: chute reads no password-protected member"),
    (lambda d: set_method(d, "a.csv", 99),
     "compression method 99 is not one zip readers share (stored, deflate, bzip2, lzma)"),
    (lambda d: damage(d, "a.csv"), "damaged in the archive (Bad CRC-32 for file 'a.csv')"),
])
def test_a_member_that_cannot_be_read_is_refused_and_leaves_nothing(
        tmp_path: Path, broken: object, reason: str) -> None:
    data = broken(make_zip({"a.csv": CSV * 10}, zipfile.ZIP_STORED))  # type: ignore[operator]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        with pytest.raises(FileUnusable) as refused:
            extract(archive, archive.getinfo("a.csv"), tmp_path / "a.csv", DEFAULT_LIMITS)
    assert str(refused.value) == reason
    assert list(tmp_path.iterdir()) == []


def test_a_member_that_expands_past_the_limits_is_refused(tmp_path: Path) -> None:
    data = make_zip({"big.csv": b"ride,city\n" + b"1,Oslo\n" * 400_000})  # 2.8 MB, deflated
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("big.csv")
        with pytest.raises(FileUnusable, match="expands more than 50 times its"):
            extract(archive, info, tmp_path / "big.csv",
                    Limits(max_bytes=1 << 40, max_ratio=50, ratio_from=1 << 20))
        with pytest.raises(FileUnusable, match="expands to more than 1,048,576 bytes"):
            extract(archive, info, tmp_path / "big.csv",
                    Limits(max_bytes=1 << 20, max_ratio=1e9, ratio_from=1 << 40))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "stored"), [
    ("bundle.zip", "bundle.zip/bundle.zip"),
    ("in/Bundle.ZIP", "in/Bundle.ZIP/Bundle.ZIP"),
    ("bundle.zip/rides/mon.csv", "bundle.zip/rides/mon.csv"),
    ("orders/a.csv", "orders/a.csv"),
])
def test_an_archive_is_stored_in_a_folder_of_its_name_beside_its_members(
        name: str, stored: str) -> None:
    assert stored_name(name) == stored
