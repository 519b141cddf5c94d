"""Is an inbox file finished? Which files are ours to take?

A file closed after writing (inotify IN_CLOSE_WRITE) or renamed into the inbox is
finished. A file seen any other way (present at start, or created by a rename from
outside the watched tree, which inotify reports as a creation) is finished once no
process holds it open; where /proc is missing, once it has not changed for a while.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SETTLE_SECONDS = 2.0


def is_candidate(path: Path) -> bool:
    """`*.csv` in any case; hidden files and partial-download names are left alone."""
    name = path.name
    return not name.startswith(".") and name.lower().endswith(".csv")


def is_finished(path: Path, open_files: set[str] | None) -> bool:
    """`open_files` comes from `files_open_now()`; None means /proc cannot tell."""
    try:
        stat = path.stat()
    except FileNotFoundError:
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
