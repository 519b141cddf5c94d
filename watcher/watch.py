"""The watcher's loop: events and rescans in, claims and FileArrived events out.

watchdog's observer thread only queues paths; the main thread owns the broker and
database connections (neither is thread-safe) and does all the work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from chute import db, metrics, placement
from chute.broker import FILES, Broker, BrokerUnavailable
from chute.config import Config
from chute.datasets import Datasets
from chute.db import DatabaseUnavailable
from chute.folders import Claimed, Folders, claim_name
from chute.messages import FileArrived
from chute.service import Stop, run_with_reconnect
from watcher.readiness import files_open_now, is_candidate, is_finished

log = logging.getLogger(__name__)

try:
    from watchdog.observers import inotify_buffer
except (ImportError, OSError):  # not Linux: another observer, no such buffer
    inotify_buffer = None
if inotify_buffer is not None:
    # watchdog holds an unpaired "moved from" event for 0.5 s, hoping to pair it with its
    # "moved to", and every later event waits behind it. Each claim moves a file out of
    # the inbox (an unpaired "moved from"), so every file after the first waited 0.5 s
    # (measured: 100-row files, drop -> registered 23 ms, then ~400 ms). chute needs no
    # pairing: a file renamed within the inbox arrives as a creation, which is handled.
    inotify_buffer.InotifyBuffer.delay = 0.0

RESCAN_SECONDS = 5.0  # catches files whose events were missed or not yet finished
# Files registered in one transaction and published before one wait for confirms: a
# burst costs a commit and a broker sync per this many files, not per file. Small
# enough that the first files of a burst go out within milliseconds.
ANNOUNCE_AT_ONCE = 100


class InboxEvents(FileSystemEventHandler):
    """Runs in watchdog's thread: queue (path, just created?) and return at once."""

    def __init__(self, inbox: Path, paths: queue.Queue[tuple[Path, bool]]) -> None:
        self.inbox = inbox
        self.paths = paths

    def on_closed(self, event: FileSystemEvent) -> None:
        """Closed after writing (IN_CLOSE_WRITE)."""
        self.paths.put((Path(str(event.src_path)), False))

    def on_moved(self, event: FileSystemEvent) -> None:
        """Renamed within the inbox, e.g. from `x.csv.part` to `x.csv`."""
        dest = Path(str(event.dest_path))
        if self.inbox in dest.parents:
            self.paths.put((dest, False))

    def on_created(self, event: FileSystemEvent) -> None:
        """Created in place, or renamed in from outside the inbox."""
        if not event.is_directory:
            self.paths.put((Path(str(event.src_path)), True))


def run(config: Config, stop: Stop) -> None:
    folders = Folders(config.data_dir)
    folders.check()  # start() checked too, but the folder may have changed since
    paths: queue.Queue[tuple[Path, bool]] = queue.Queue()
    announced: set[str] = set()  # confirmed in this process: no need to announce again
    observer = Observer()
    # Recursive: a dataset's files may arrive in a subfolder (orders/2024-06.csv).
    observer.schedule(InboxEvents(folders.inbox, paths), str(folders.inbox), recursive=True)
    observer.start()

    def session() -> None:
        try:
            _session(config, folders, paths, announced, stop)
        except (BrokerUnavailable, DatabaseUnavailable):
            raise
        except OSError:
            # The data folder itself (work/ gone, permissions changed)? Then no retry can
            # help: DataFolderUnusable stops the watcher with one line, not a loop.
            folders.check()
            raise

    try:
        run_with_reconnect(session, stop)
    finally:
        observer.stop()
        observer.join(timeout=5)


def _session(config: Config, folders: Folders, paths: queue.Queue[tuple[Path, bool]],
             announced: set[str], stop: Stop) -> None:
    conn = db.connect(config.database_url)
    broker = Broker(config.amqp_url, config.namespace)
    inbox = Inbox(conn, broker, folders, config.datasets, announced)
    try:
        inbox.recover()
        next_scan = 0.0
        while not stop():
            if time.monotonic() >= next_scan:
                inbox.rescan()
                next_scan = time.monotonic() + RESCAN_SECONDS
            events = _drain(paths, timeout=0.2)
            if not events:
                broker.poll(0)  # keeps heartbeats flowing
                continue
            candidates = [(path, just_created) for path, just_created in events
                          if inbox.wants(path) and path.is_file()]
            if candidates:
                open_files = files_open_now()  # one /proc scan for all waiting events
                inbox.take([path for path, just_created in candidates
                            if is_finished(path, open_files, just_created)])
    finally:
        broker.close()
        conn.close()


class Inbox:
    """Claims and announcements, over one database and one broker connection."""

    def __init__(self, conn: db.Connection, broker: Broker, folders: Folders,
                 datasets: Datasets, announced: set[str]) -> None:
        self.conn = conn
        self.broker = broker
        self.folders = folders
        self.datasets = datasets
        self.announced = announced

    def wants(self, path: Path) -> bool:
        """A file somewhere under inbox/ that is ours to take: `*.csv` (any case) or a
        name some dataset's `match` fits; hidden files and folders are left alone."""
        try:
            relative = path.relative_to(self.folders.inbox)
        except ValueError:
            return False
        if any(part.startswith(".") for part in relative.parts):
            return False
        return is_candidate(path) or self.datasets.for_path(relative.as_posix()) is not None

    def rescan(self) -> None:
        """Take every finished file in the inbox: those there at start, and any whose
        events were missed."""
        paths = [p for p in sorted(self.folders.inbox.rglob("*"))
                 if self.wants(p) and p.is_file()]
        open_files = files_open_now() if paths else None  # no /proc scan for an empty inbox
        self.take([path for path in paths if is_finished(path, open_files)])

    def take(self, paths: list[Path]) -> None:
        """Claim finished files and announce them, ANNOUNCE_AT_ONCE at a time."""
        claims = []
        for path in paths:
            try:
                claimed = self.folders.claim(path)
            except OSError as e:
                self.folders.check()  # if no file can be claimed, stop (see run)
                # One file we cannot move must not stop the others: it stays in the inbox,
                # is tried again at the next rescan, and says why each time.
                log.error("cannot claim file", extra={"file_name": claim_name(path.name),
                                                      "error": repr(e)})
                continue
            if claimed is not None:
                claims.append(claimed)
            if len(claims) >= ANNOUNCE_AT_ONCE:
                self.announce(claims)
                claims = []
        self.announce(claims)

    def announce(self, claims: list[Claimed]) -> None:
        """Register claimed files and publish their FileArrived events (both idempotent),
        a burst at a time: one transaction and one wait for the broker's confirms for
        them all. A file no dataset matches is quarantined, saying so.

        A crash part-way leaves claims in work/ that recover() announces again."""
        if not claims:
            return
        started = time.monotonic()
        found = []
        for claimed in claims:
            sha256, size = _digest(claimed.path)
            dataset = self.datasets.for_path(claimed.name)
            found.append((claimed, sha256, size, dataset))
        records = db.register_files(self.conn, [
            (c.file_id, c.name, self.folders.relative(c.path), sha256, size,
             dataset.name if dataset else None) for c, sha256, size, dataset in found])
        events = []
        for (claimed, _sha256, _size, dataset), record in zip(found, records, strict=True):
            metrics.FILES_RECEIVED.labels(record.dataset or "none").inc()
            if dataset is None:
                reason = self.datasets.no_match(claimed.name)
                db.finish_file(self.conn, record.file_id, "quarantined", reason)
                placement.quarantine(self.conn, self.folders, record.file_id, record.name,
                                     reason)
                metrics.FILES.labels("quarantined").inc()
                log.warning("file quarantined", extra={
                    "file_id": record.file_id, "file_name": record.name, "dataset": None,
                    "reason": reason})
                continue
            # The event says what was registered (a file announced again after a crash
            # keeps its first record): the transformer checks the bytes against it.
            events.append((FileArrived(file_id=record.file_id, seq=record.seq,
                                       name=record.name, path=record.path,
                                       sha256=record.sha256, size=record.size_bytes,
                                       dataset=dataset.name), record))
        self.broker.publish_many([(FILES, *event.encode()) for event, _record in events])
        seconds = time.monotonic() - started
        for event, record in events:
            self.announced.add(record.file_id)
            metrics.FILE_SECONDS.observe(seconds / len(claims))
            log.info("file received", extra={
                "file_id": record.file_id, "file_name": record.name,
                "dataset": record.dataset, "bytes": event.size, "sha256": record.sha256,
                "duration_ms": round(seconds * 1000, 1), "announced_with": len(events)})

    def recover(self) -> None:
        """Finish what a watcher that died, or lost its connection, left: claims never
        announced, moves not done. Runs at the start of every session."""
        claims = list(self.folders.claimed())
        records = db.files_by_id(self.conn, [c.file_id for c in claims])
        unannounced = []
        for claimed in claims:
            record = records.get(claimed.file_id)
            if record is None or record.state == "received":
                if claimed.file_id not in self.announced:
                    unannounced.append(claimed)
            elif record.state in ("loaded", "duplicate"):
                placement.archive(self.conn, self.folders, claimed.file_id, claimed.name)
            elif record.state == "quarantined":
                placement.quarantine(self.conn, self.folders, claimed.file_id, claimed.name,
                                     record.error or "")
        for start in range(0, len(unannounced), ANNOUNCE_AT_ONCE):
            self.announce(unannounced[start:start + ANNOUNCE_AT_ONCE])


def _drain(paths: queue.Queue[tuple[Path, bool]], timeout: float) -> list[tuple[Path, bool]]:
    """Every queued event: the first waited for up to `timeout`, the rest at once."""
    try:
        events = [paths.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            events.append(paths.get_nowait())
        except queue.Empty:
            return events


def _digest(path: Path) -> tuple[str, int]:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest(), os.fstat(f.fileno()).st_size
