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


def quarantine(conn: db.Connection, folders: Folders, file_id: str, name: str,
               reason: str) -> Path | None:
    return _record(conn, folders, file_id, folders.to_quarantine(file_id, name, reason))


def _record(conn: db.Connection, folders: Folders, file_id: str,
            dest: Path | None) -> Path | None:
    if dest is not None:
        db.set_path(conn, file_id, folders.relative(dest))
    return dest
