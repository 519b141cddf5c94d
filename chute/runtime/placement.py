"""A finished file leaves work/, and chute.files.path says where it went.

`chute retry` finds a quarantined file by that path, so every move out of work/ goes
through here, in two steps: the destination recorded (only if the recorded path is
still the one this mover read), then a rename that never replaces a file
(folders.rename_noreplace). The rename needs no ownership of the file, only write access
to the folders, so a file dropped by another user moves like any other.

Crash safety: the path is recorded before the file moves, so at every instant the
file is either still in work/ (and the next attempt, a redelivery or the watcher's
repair, moves it to the recorded path) or at the recorded path. A file gone from work/
has moved: nothing to do. Two movers of one file (a loader and the watcher's repair)
both rename to the one recorded path; the second finds the file gone.

A move that fails (a folder it may not write, a full disk, a name taken three ways)
never stops anything else: it is recorded on its file (`move_error`, the metric
chute_file_move_failures_total) and the file stays in work/, where the watcher's repair
tries it again after a pause that grows (watcher.watch.Repairs).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from chute.errors import MoveFailed
from chute.postgres import db
from chute.runtime import metrics
from chute.runtime.folders import Folders, rename_noreplace

log = logging.getLogger(__name__)

# Attempts within one move when concurrent movers keep taking the chosen name.
MOVE_TRIES = 5


def archive(conn: db.Connection, folders: Folders, file_id: str, name: str) -> Path | None:
    """Move a file to archive/ and record it; its new path, or None when it was moved
    before, or cannot be moved now (recorded on the file: see MoveFailed)."""
    moved, _failed = archive_all(conn, folders, [(file_id, name)])
    return moved[0][2] if moved else None


def archive_all(conn: db.Connection, folders: Folders, files: list[tuple[str, str]]
                ) -> tuple[list[tuple[str, str, Path]], list[tuple[str, str, str]]]:
    """archive() for several files (file_id, name): (the files moved now, with where to;
    the files that could not be moved, with why). A file moved before is in neither.

    The common case costs one transaction for them all: each file's own name (or its
    name with the id) recorded against the work path it was claimed at, then renamed.
    A file whose record or name turns out taken is moved alone (move_out).
    """
    chosen, alone = [], []
    for file_id, name in files:
        source = folders.work_path(file_id, name)
        if not os.path.lexists(source):
            continue  # moved already: its path was recorded first
        try:
            if folders.old_link(file_id, name, folders.archive) is not None:
                raise FileExistsError  # moved alone, which knows what to do with it
            dest = folders.free_name(file_id, name, folders.archive)
        except OSError:
            alone.append((file_id, name))
            continue
        chosen.append((file_id, name, source, dest))
    recorded = db.move_paths(conn, [(file_id, folders.relative(source), folders.relative(dest))
                                    for file_id, _name, source, dest in chosen])
    moved, failed = [], []
    for file_id, name, source, dest in chosen:
        if file_id not in recorded:
            alone.append((file_id, name))  # another mover recorded first, or a retry
            continue
        try:
            rename_noreplace(source, dest)
        except FileNotFoundError:
            continue  # a concurrent mover took it to the same recorded path
        except FileExistsError:
            alone.append((file_id, name))  # the name was taken since: choose again
            continue
        except OSError as e:
            failed.append((file_id, name, _failure(conn, file_id, folders.archive, e)))
            continue
        folders.settle(file_id, name, dest, None)
        moved.append((file_id, name, dest))
    for file_id, name in alone:
        try:
            dest = move_out(conn, folders, file_id, name, folders.archive)
        except MoveFailed as e:
            failed.append((file_id, name, str(e)))
            continue
        if dest is not None:
            moved.append((file_id, name, dest))
    return moved, failed


def quarantine(conn: db.Connection, folders: Folders, file_id: str, name: str,
               reason: str) -> Path | None:
    """Move a file to quarantine/ with its reason beside it (NAME.reason.txt), and
    record it; its new path, or None (as archive)."""
    try:
        return move_out(conn, folders, file_id, name, folders.quarantine, reason)
    except MoveFailed:
        return None


def move_out(conn: db.Connection, folders: Folders, file_id: str, name: str,
             target: Path, reason: str | None = None) -> Path | None:
    """Move one claimed file to `target`: its new path, None if it had moved before.
    Raises MoveFailed (after recording it on the file) when it cannot move now."""
    source = folders.work_path(file_id, name)
    try:
        for _attempt in range(MOVE_TRIES):
            if not os.path.lexists(source):
                return None  # moved already, to the path recorded before it moved
            recorded = db.get_path(conn, file_id)
            if recorded is None:
                raise FileNotFoundError(f"no file {file_id} in chute.files")
            dest = folders.root / recorded
            linked = folders.old_link(file_id, name, target)
            if linked is not None:  # an older chute's hard link, then a crash
                if dest == linked or db.move_paths(
                        conn, [(file_id, recorded, folders.relative(linked))]):
                    os.unlink(source)
                    folders.settle(file_id, name, linked, None)
                    return linked
                continue
            if target not in dest.parents or os.path.lexists(dest):
                # Not chosen yet (the work path is recorded), or taken since: choose.
                dest = folders.free_name(file_id, name, target)
                if not db.move_paths(conn, [(file_id, recorded, folders.relative(dest))]):
                    continue  # another mover recorded first: follow its choice
            written = folders.reason_in_work(file_id, name, reason) if reason is not None \
                else None
            try:
                rename_noreplace(source, dest)
            except FileNotFoundError:
                return None  # a concurrent mover took it to the same recorded path
            except FileExistsError:
                continue
            # Cleared before the reason appears beside it: whoever sees the reason
            # sees the move done (and a failure to place the reason records anew).
            db.set_move_error(conn, file_id, None)
            folders.settle(file_id, name, dest, written)
            return dest
        raise FileExistsError(f"{target}: names for {name} kept being taken")
    except OSError as e:
        raise MoveFailed(_failure(conn, file_id, target, e)) from e


def _failure(conn: db.Connection, file_id: str, target: Path, error: OSError) -> str:
    """Record why a file cannot leave work/ now, on the file and in the metrics."""
    where = target.name
    detail = f"{error.strerror} ({error.filename})" if error.strerror and error.filename \
        else str(error) or type(error).__name__
    text = f"cannot move to {where}/: {detail}"
    metrics.MOVE_FAILURES.labels(where).inc()
    db.set_move_error(conn, file_id, text)
    log.error("cannot move a finished file", extra={"file_id": file_id, "to": where,
                                                    "error": text})
    return text
