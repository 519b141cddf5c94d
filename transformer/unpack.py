"""A zip archive taken apart: each CSV member becomes an arrival of its own.

For an archive the transformer has claimed (its FileArrived says `archive`):

1. Each entry is classified (chute.reading.archives): a CSV member, or skipped with why.
2. Each member not recorded yet is extracted to work/MEMBER_ID/ARCHIVE.zip/ENTRY, then
   registered, named `ARCHIVE.zip/ENTRY` and matched by that name. Its id is derived
   from the archive's and the entry's name, so taking the archive apart again after a
   crash finds the members already made and makes no others.
3. A member that cannot be read (encrypted, damaged, over the limits) or that no dataset
   matches is quarantined with its reason; the others are announced (FileArrived, sent
   with the handler's closing messages, before the archive's event is acked).
4. The archive's entries are recorded (chute.archive_entries) and the archive becomes
   `loaded` and moves to archive/ARCHIVE.zip/ARCHIVE.zip, beside its members.

The same archive again is a duplicate of the first (its bytes), and takes nothing apart;
a member is a duplicate when its bytes are another arrival's, inside an archive or not.
"""

from __future__ import annotations

import logging
import uuid
import zipfile
from pathlib import PurePosixPath
from typing import Any

from chute.errors import FileUnusable
from chute.postgres import db
from chute.rabbitmq.broker import FILES
from chute.rabbitmq.messages import FileArrived
from chute.reading import archives
from chute.reading.streams import Limits
from chute.runtime import metrics, placement
from chute.runtime.config import Config
from chute.runtime.folders import Folders, claim_path

log = logging.getLogger(__name__)


def member_id(archive_id: str, entry: str) -> str:
    return str(uuid.uuid5(uuid.UUID(archive_id), entry))


def unpack(conn: db.Connection, config: Config, folders: Folders, limits: Limits,
           event: FileArrived, closing: list[tuple[str, dict[str, Any], bytes]]) -> int:
    """Take the claimed archive apart; returns how many members it announced. Raises
    FileUnusable when the file is no zip archive that can be read."""
    path = config.data_dir / event.path
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise FileUnusable(f"not a zip archive that can be read ({e})") from None
    with archive:
        entries = archives.entries(archive, event.name,
                                   lambda name: config.datasets.for_path(name) is not None)
        recorded: list[tuple[str, str | None, str | None]] = []
        arrivals, problems, announced = [], {}, 0
        for entry in entries:
            if not entry.member:
                recorded.append((entry.name, None, entry.skipped))
                continue
            file_id = member_id(event.file_id, entry.name)
            recorded.append((entry.name, file_id, None))
            name = f"{event.name}/{claim_path(PurePosixPath(entry.name))}"  # type: ignore[arg-type]
            made = db.get_file(conn, file_id)
            if made is not None and (made.state != "received" or made.sha256 is not None):
                if made.state == "received" and made.dataset is None:
                    problems[file_id] = config.datasets.no_match(name)
                continue  # made before a crash: announced below if still waiting
            dest = folders.work_path(file_id, name)
            info = archive.getinfo(entry.name)
            sha256, size = None, info.file_size
            try:
                sha256, size = archives.extract(archive, info, dest, limits)
            except FileUnusable as e:
                problems[file_id] = str(e)
            dataset = config.datasets.for_path(name)
            if dataset is None and file_id not in problems:
                problems[file_id] = config.datasets.no_match(name)
            arrivals.append((file_id, name, folders.relative(dest), sha256, size,
                             dataset.name if dataset else None))
    db.register_files(conn, arrivals)
    db.record_entries(conn, event.file_id, recorded)
    members = db.files_by_id(conn, [m for _entry, m, _why in recorded if m is not None])
    for file_id, record in members.items():
        if record.state != "received":
            continue
        problem = problems.get(file_id)
        if problem is not None:
            db.finish_file(conn, file_id, "quarantined", problem)
            placement.quarantine(conn, folders, file_id, record.name, problem)
            metrics.FILES.labels("quarantined").inc()
            log.warning("archive member quarantined", extra={
                "file_id": file_id, "file_name": record.name, "reason": problem})
            continue
        assert record.dataset is not None and record.sha256 is not None  # no problem
        closing.append((FILES, *FileArrived(
            file_id=file_id, seq=record.seq, name=record.name, path=record.path,
            sha256=record.sha256, size=record.size_bytes, dataset=record.dataset).encode()))
        announced += 1
    db.finish_file(conn, event.file_id, "loaded", None)
    placement.archive(conn, folders, event.file_id, event.name)
    log.info("archive taken apart", extra={
        "file_id": event.file_id, "file_name": event.name, "entries": len(entries),
        "members": sum(1 for e in entries if e.member), "announced": announced})
    return announced
