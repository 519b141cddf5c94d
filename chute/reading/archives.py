"""Zip archives: which entries are CSV members, and each member's bytes, extracted.

A member is an entry whose name (its path inside the archive) is a CSV file: `*.csv`,
also compressed (`*.csv.gz`), or one a dataset's `match` fits as `ARCHIVE.zip/ENTRY`.
Folders and other files are skipped, with why. Entries with an unsafe path (absolute,
`..`, a drive letter) are skipped too: their name could not be a path under work/.

Extraction streams each member (zipfile, bounded memory) through the same limits as a
compressed file (streams.Limits): a member that expands past them, is encrypted, uses a
compression method zipfile cannot read, or fails its CRC is refused with the reason.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chute.datasets.declarations import without_compression
from chute.errors import FileUnusable
from chute.reading.streams import READ_SIZE, Limits

READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                    zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_ENCRYPTED = 0x1  # general purpose bit 0


@dataclass(frozen=True)
class Entry:
    """One entry of an archive: a member (a CSV file to load), or skipped, with why."""

    name: str  # as the archive writes it
    member: bool
    skipped: str | None = None


def entries(archive: zipfile.ZipFile, archive_name: str,
            matched: Callable[[str], bool]) -> list[Entry]:
    """Every entry, in the archive's order. `matched(path)` says whether a dataset's
    `match` fits a member's full name (`ARCHIVE.zip/ENTRY`)."""
    found = []
    for info in archive.infolist():
        name = info.filename
        path = PurePosixPath(name)
        if info.is_dir():
            found.append(Entry(name, False, "a folder"))
        elif path.is_absolute() or ".." in path.parts or ":" in name or "\\" in name:
            found.append(Entry(name, False, "an unsafe path (absolute, or with ..)"))
        elif any(part.startswith(".") for part in path.parts):
            found.append(Entry(name, False, "a hidden file"))
        elif (without_compression(name).lower().endswith(".csv")
              or matched(f"{archive_name}/{name}")):
            found.append(Entry(name, True))
        else:
            found.append(Entry(name, False, "not a CSV file"))
    return found


def unreadable(info: zipfile.ZipInfo) -> str | None:
    """Why a member cannot be read at all, before any byte of it is."""
    if info.flag_bits & _ENCRYPTED:
        return "encrypted: chute reads no password-protected member"
    if info.compress_type not in READABLE_METHODS:
        return (f"compression method {info.compress_type} is not one zip readers share "
                "(stored, deflate, bzip2, lzma)")
    return None


def extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path,
            limits: Limits) -> tuple[str, int]:
    """Write a member's bytes to `dest` (via a hidden name, then a rename, so that a
    crash never leaves half a member under its name): its sha256 and size. Raises
    FileUnusable, with nothing left behind, when it cannot be read whole."""
    problem = unreadable(info)
    if problem is not None:
        raise FileUnusable(problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    digest, size = hashlib.sha256(), 0
    packed = max(info.compress_size, 1)
    try:
        with archive.open(info) as member, partial.open("wb") as out:
            while data := member.read(READ_SIZE):
                size += len(data)
                if size > limits.max_bytes:
                    raise FileUnusable(f"expands to more than {limits.max_bytes:,} bytes "
                                       "(CHUTE_MAX_DECOMPRESSED_BYTES)")
                if size > limits.ratio_from and size > limits.max_ratio * packed:
                    raise FileUnusable(f"expands more than {limits.max_ratio:g} times its "
                                       f"{packed:,} bytes in the archive "
                                       "(CHUTE_MAX_COMPRESSION_RATIO)")
                digest.update(data)
                out.write(data)
        os.replace(partial, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno:
            raise  # the disk, not the member: the archive is tried again
        raise FileUnusable(f"damaged in the archive ({e})") from None
    except FileUnusable:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size
