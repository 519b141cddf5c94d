"""What a claimed file is, decided before a byte of it is read.

Anyone who can write into the inbox could otherwise make chute read any file the
service can read: a symbolic link to /etc/passwd, a hard link to another user's file, a
FIFO that blocks the reader for ever. So a claim is looked at with lstat, never through
a link, and only a regular file with one name, opened with O_NOFOLLOW, is read. The
rest is quarantined unread, with the reason.

A link whose target lies under a folder of CHUTE_FOLLOW_LINKS_UNDER is followed once:
its target's bytes are copied in place of the link in work/, so the archive holds the
bytes that were loaded, never a link whose target may change after the load.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from chute.runtime.folders import cannot_read

_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISDIR, "a folder"),
)


@dataclass(frozen=True)
class Readable:
    sha256: str
    size: int


@dataclass(frozen=True)
class Unread:
    """Quarantined without reading: why, and the size lstat gave."""
    reason: str
    size: int


def inspect(path: Path, follow_under: tuple[Path, ...]) -> Readable | Unread:
    """Hash a claimed file that may be read, or say why it is not read. Raises OSError
    only for a problem of the moment (a full disk while copying a followed link)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        real = Path(os.path.realpath(path))
        if not any(folder == real or folder in real.parents for folder in follow_under):
            return Unread(f"a symbolic link (to {target}): not followed", st.st_size)
        if not real.is_file():
            return Unread(f"a symbolic link (to {target}): its target is not a file",
                          st.st_size)
        _copy_in_place_of_link(path, real)
        st = os.lstat(path)
    for is_kind, kind in _NOT_REGULAR:
        if is_kind(st.st_mode):
            return Unread(f"{kind}, not a regular file: not read", 0)
    if st.st_nlink > 1:
        return Unread(f"a hard link (one of {st.st_nlink} names of the same file): not "
                      "read, as its bytes may belong to someone else", st.st_size)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        return Unread(cannot_read(st), st.st_size)
    with os.fdopen(fd, "rb") as f:
        try:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:  # a failing disk: the bytes cannot be had
            return Unread(f"cannot read: {(e.strerror or str(e)).lower()}", st.st_size)
        return Readable(digest, os.fstat(f.fileno()).st_size)


def _copy_in_place_of_link(link: Path, real: Path) -> None:
    """The target's bytes in place of the link, whole or not at all: copied beside it
    under a hidden name (which recovery ignores), then renamed over the link."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.copy")
    try:
        # O_NOFOLLOW: a target swapped for a link since realpath is not followed.
        with os.fdopen(os.open(real, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source, \
                open(temporary, "wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        os.replace(temporary, link)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
