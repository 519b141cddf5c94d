"""A finished file leaves work/, and chute.files.path says where it went.

`chute retry` finds a quarantined file by that path, so every move out of work/ goes
through here, in three steps: a hard link in archive/ or quarantine/, the path recorded,
the name in work/ removed. Each is idempotent, and a crash between two leaves a state
the next attempt (a redelivery, or the watcher's recovery) completes: a link made
earlier is found again and recorded; a file gone from work/ was recorded before.
"""

from __future__ import annotations

from pathlib import Path

from chute import db
from chute.folders import Folders


def archive(conn: db.Connection, folders: Folders, file_id: str, name: str) -> Path | None:
    """Move a file to archive/ and record it; its new path, or None when an earlier
    attempt moved it already."""
    moved, failed = archive_all(conn, folders, [(file_id, name)])
    if failed:
        raise failed[0][2]
    return moved[0][2] if moved else None


def archive_all(conn: db.Connection, folders: Folders, files: list[tuple[str, str]]
                ) -> tuple[list[tuple[str, str, Path]], list[tuple[str, str, OSError]]]:
    """archive() for several files (file_id, name), their paths recorded in one
    transaction: (the files moved now with where to, the files that could not be moved
    and why). A file moved already is in neither list."""
    linked, failed = [], []
    for file_id, name in files:
        try:
            dest = folders.link_to_archive(file_id, name)
        except OSError as e:
            failed.append((file_id, name, e))
            continue
        if dest is not None:
            linked.append((file_id, name, dest))
    _record(conn, folders, linked)
    return linked, failed


def quarantine(conn: db.Connection, folders: Folders, file_id: str, name: str,
               reason: str) -> Path | None:
    dest = folders.link_to_quarantine(file_id, name, reason)
    if dest is None:
        return None
    _record(conn, folders, [(file_id, name, dest)])
    return dest


def _record(conn: db.Connection, folders: Folders, linked: list[tuple[str, str, Path]]
            ) -> None:
    """Record where linked files went, then remove them from work/: a crash in between
    leaves the file in both places, and the next attempt finds its link and records
    it again, so the recorded path is never left behind."""
    if not linked:
        return
    db.set_paths(conn, [(file_id, folders.relative(dest)) for file_id, _name, dest in linked])
    for file_id, name, _dest in linked:
        folders.release(file_id, name)
