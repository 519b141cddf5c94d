"""Is an inbox file finished? Which files are ours to take?

A file is finished when no process holds it open: its writer closed it (inotify
IN_CLOSE_WRITE), it was renamed in whole, or it was already there at start. That is
checked in /proc on every occasion, not only taken from the event: a file may be open
twice, or closed by one writer while another still writes. Where /proc is missing, a
file is finished once it has not changed for SETTLE_SECONDS.

One case needs more than /proc: inotify reports a file created by open(O_CREAT) before
the creating process has its descriptor, so at that instant nobody holds the new, empty
file open. A file that is still empty when its creation is reported therefore waits for
its close (or the next rescan). A rename from outside the inbox is reported as a
creation too, but of a file that already has its bytes, so it is taken at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from stat import S_ISLNK

from chute.datasets.declarations import without_compression

SETTLE_SECONDS = 2.0


def is_candidate(path: Path) -> bool:
    """`*.csv` in any case, also compressed (`*.csv.gz`, `*.csv.zst` ...), and zip
    archives (`*.zip`); hidden files and partial-download names are left alone."""
    name = path.name
    plain = without_compression(name).lower()
    return not name.startswith(".") and (plain.endswith(".csv") or name.lower().endswith(".zip"))


def is_finished(path: Path, open_files: set[str] | None, just_created: bool = False) -> bool:
    """`open_files` comes from `files_open_now()`; None means /proc cannot tell.

    `just_created`: the occasion is inotify's report of the file's creation (see above).
    """
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return False
    if S_ISLNK(stat.st_mode):
        return True  # a link is whole once made; it is quarantined unread, or copied
    if just_created and stat.st_size == 0:
        return False
    if open_files is None:
        return time.time() - stat.st_mtime >= SETTLE_SECONDS
    return str(path.resolve()) not in open_files


def files_open_now() -> set[str] | None:
    """Every path some process holds open (the ones we may look at), or None without /proc."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    opened: set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # the process ended, or is not ours to look at
            continue
        for fd in fds:
            try:
                opened.add(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                continue
    return opened
