"""A finished file leaves work/, and chute.files.path says where it went.

`chute retry` finds a quarantined file by that path, so every move out of work/ goes
through here. Both steps are idempotent: a move repeated after a crash is a no-op
(the file is already gone from work/) and leaves the recorded path as it was.
"""

from __future__ import annotations

from pathlib import Path

from chute import db
from chute.folders import Folders


def archive(conn: db.Connection, folders: Folders, file_id: str, name: str) -> Path | None:
    return _record(conn, folders, file_id, folders.to_archive(file_id, name))


def archive_all(conn: db.Connection, folders: Folders, files: list[tuple[str, str]]
                ) -> tuple[list[tuple[str, str]], list[tuple[str, str, OSError]]]:
    """archive() for several files (file_id, name), their paths recorded in one
    transaction: (the files moved now, the files that could not be moved and why). A
    file moved already (None from the move) is in neither list."""
    moved, failed, paths = [], [], []
    for file_id, name in files:
        try:
            dest = folders.to_archive(file_id, name)
        except OSError as e:
            failed.append((file_id, name, e))
            continue
        if dest is not None:
            moved.append((file_id, name))
            paths.append((file_id, folders.relative(dest)))
    if paths:
        db.set_paths(conn, paths)
    return moved, failed


def quarantine(conn: db.Connection, folders: Folders, file_id: str, name: str,
               reason: str) -> Path | None:
    return _record(conn, folders, file_id, folders.to_quarantine(file_id, name, reason))


def _record(conn: db.Connection, folders: Folders, file_id: str,
            dest: Path | None) -> Path | None:
    if dest is not None:
        db.set_path(conn, file_id, folders.relative(dest))
    return dest
