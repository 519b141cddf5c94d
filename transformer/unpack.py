"""A zip archive taken apart: each CSV member becomes an arrival of its own.

For an archive the transformer has claimed (its FileArrived says `archive`):

1. Each entry is classified (chute.reading.archives): a CSV member, or skipped with why.
2. Each member not recorded yet is extracted to work/MEMBER_ID/ARCHIVE.zip/ENTRY, then
   registered, named `ARCHIVE.zip/ENTRY` and matched by that name. Its id is derived
   from the archive's and the entry's name, so taking the archive apart again after a
   crash finds the members already made and makes no others.
3. A member that cannot be read (encrypted, damaged, over the limits) or that no dataset
   matches is quarantined with its reason; the others are announced (FileArrived,
   confirmed by the broker before the archive's event is acked).
4. The archive's entries are recorded first (chute.archive_entries); once every member
   is out, the archive becomes `loaded` and moves to archive/ARCHIVE.zip/ARCHIVE.zip,
   beside its members.

The same archive again is a duplicate of the first (its bytes), and takes nothing apart;
a member is a duplicate when its bytes are another arrival's, inside an archive or not.
"""

from __future__ import annotations

import logging
import time
import uuid
import zipfile
from collections.abc import Callable
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

# Members registered in one transaction and announced before one wait for confirms, as
# the watcher announces a burst of files.
ANNOUNCE_AT_ONCE = 250


def member_id(archive_id: str, entry: str) -> str:
    return str(uuid.uuid5(uuid.UUID(archive_id), entry))


def unpack(conn: db.Connection, config: Config, folders: Folders, limits: Limits,
           event: FileArrived, publish: Callable[[list[tuple[str, dict[str, Any], bytes]]],
                                                 None]) -> int:
    """Take the claimed archive apart; returns how many members it announced. Members
    are registered and announced ANNOUNCE_AT_ONCE at a time, as they are extracted, so
    the other transformers start on the first while this one extracts the rest. Raises
    FileUnusable when the file is no zip archive that can be read."""
    started = time.monotonic()
    path = config.data_dir / event.path
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise FileUnusable(f"not a zip archive that can be read ({e})") from None
    with archive:
        entries = archives.entries(archive, event.name,
                                   lambda name: config.datasets.for_path(name) is not None)
        recorded = [(e.name, member_id(event.file_id, e.name) if e.member else None,
                     e.skipped) for e in entries]
        db.record_entries(conn, event.file_id, recorded)
        members = [(entry, file_id) for entry, file_id, _why in recorded if file_id]
        announced = 0
        for at in range(0, len(members), ANNOUNCE_AT_ONCE):
            chunk = members[at:at + ANNOUNCE_AT_ONCE]
            announced += _take_out(conn, config, folders, limits, event, archive, chunk,
                                   publish)
    db.finish_file(conn, event.file_id, "loaded", None)
    placement.archive(conn, folders, event.file_id, event.name)
    log.info("archive taken apart", extra={
        "file_id": event.file_id, "file_name": event.name, "entries": len(entries),
        "members": len(members), "announced": announced,
        "duration_ms": round((time.monotonic() - started) * 1000, 1)})
    return announced


def _take_out(conn: db.Connection, config: Config, folders: Folders, limits: Limits,
              event: FileArrived, archive: zipfile.ZipFile, members: list[tuple[str, str]],
              publish: Callable[[list[tuple[str, dict[str, Any], bytes]]], None]) -> int:
    """Extract, register and announce some members (entry, file id); how many went out.
    A member made before a crash is not extracted again, only announced if it waits."""
    existing = db.files_by_id(conn, [file_id for _entry, file_id in members])
    arrivals, problems = [], {}
    for entry, file_id in members:
        name = f"{event.name}/{claim_path(PurePosixPath(entry))}"  # type: ignore[arg-type]
        made = existing.get(file_id)
        if made is not None and (made.state != "received" or made.sha256 is not None):
            if made.state == "received" and made.dataset is None:
                problems[file_id] = config.datasets.no_match(name)
            continue
        dest = folders.work_path(file_id, name)
        info = archive.getinfo(entry)
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
    records = {r.file_id: r for r in db.register_files(conn, arrivals)} if arrivals else {}
    records = existing | records
    events = []
    for _entry, file_id in members:
        record = records.get(file_id)
        if record is None or record.state != "received":
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
        events.append((FILES, *FileArrived(
            file_id=file_id, seq=record.seq, name=record.name, path=record.path,
            sha256=record.sha256, size=record.size_bytes, dataset=record.dataset).encode()))
    publish(events)
    return len(events)
