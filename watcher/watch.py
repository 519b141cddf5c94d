"""The watcher's loop: events and rescans in, claims and FileArrived events out.

watchdog's observer thread only queues paths; the main thread owns the broker and
database connections (neither is thread-safe) and does all the work.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from chute.datasets.declarations import Dataset, Datasets, is_zip_name
from chute.errors import BrokerUnavailable, DatabaseUnavailable
from chute.postgres import db
from chute.rabbitmq.broker import CONTROL, FILES, Broker
from chute.rabbitmq.messages import FileArrived
from chute.runtime import metrics, placement
from chute.runtime.config import Config
from chute.runtime.folders import Claimed, Folders, claim_name
from chute.runtime.health import HEALTH, WAITING
from chute.runtime.service import Stop, run_with_reconnect
from watcher.backoff import Backoff
from watcher.control import Commands, handle_control
from watcher.inspection import Readable, Unread, inspect
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
# A claim left in work/ this long is repaired by the watcher (moved out, announced) even
# while the watcher runs: a loader that could not archive a file, a move cut short.
# Younger ones are in the hands of a transformer or a loader.
REPAIR_AFTER_SECONDS = 30.0
# Below this many bytes free, the data folder's disk is full: the watcher says so in
# /ready (a quarantine's reason, a followed link's copy cannot be written).
DISK_FULL_BYTES = 1 << 20


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
    commands = Commands()  # the console's replays and rebuilds, across reconnects
    observer = Observer()
    # Recursive: a dataset's files may arrive in a subfolder (orders/2024-06.csv).
    observer.schedule(InboxEvents(folders.inbox, paths), str(folders.inbox), recursive=True)
    observer.start()

    def session() -> None:
        try:
            _session(config, folders, paths, announced, commands, stop)
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
             announced: set[str], commands: Commands, stop: Stop) -> None:
    conn = db.connect(config.database_url)
    broker = Broker(config.amqp_url, config.namespace)
    # The console's actions arrive here, served by the same polls as the heartbeats.
    broker.consume(CONTROL, 1,
                   lambda delivery: handle_control(config, broker, delivery, commands))
    inbox = Inbox(conn, broker, folders, config, announced)
    try:
        inbox.repair(after_seconds=0.0)  # what a watcher that died left
        next_scan = 0.0
        while not stop():
            commands.reap()
            if time.monotonic() >= next_scan:
                _check_disk(folders)
                inbox.rescan()
                inbox.repair(after_seconds=REPAIR_AFTER_SECONDS)
                next_scan = time.monotonic() + RESCAN_SECONDS
            events = _drain(paths, timeout=0.2)
            if not events:
                broker.poll(0)  # keeps heartbeats flowing
                continue
            candidates = [(path, just_created) for path, just_created in events
                          if inbox.wants(path) and _takeable(path)]
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
                 config: Config, announced: set[str]) -> None:
        self.conn = conn
        self.broker = broker
        self.folders = folders
        self.datasets: Datasets = config.datasets
        self.follow_links_under = config.follow_links_under
        self.announced = announced
        # Steps that failed for one file, tried again after a growing pause: claims (by
        # inbox path) and repairs (by file id). Per process: a restart tries all again.
        self.claims_failing = Backoff("claim")
        self.repairs_failing = Backoff("repair")
        self.seen_in_work: dict[str, float] = {}  # file id -> first seen (monotonic)

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
                 if self.wants(p) and _takeable(p)]
        open_files = files_open_now() if paths else None  # no /proc scan for an empty inbox
        self.take([path for path in paths if is_finished(path, open_files)])

    def take(self, paths: list[Path]) -> None:
        """Claim finished files and announce them, ANNOUNCE_AT_ONCE at a time."""
        claims = []
        for path in paths:
            if not self.claims_failing.due(str(path)):
                continue
            try:
                claimed = self.folders.claim(path)
            except OSError as e:
                self.folders.check()  # if no file can be claimed, stop (see run)
                # One file we cannot move must not stop the others: it stays in the inbox
                # and is tried again after a pause that grows, saying why each time.
                self.claims_failing.failed(str(path), claim_name(path.name), e)
                continue
            self.claims_failing.succeeded(str(path))
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

        A crash part-way leaves claims in work/ that repair() announces again."""
        if not claims:
            return
        started = time.monotonic()
        found: list[tuple[Claimed, Readable | Unread, Dataset | None]] = []
        for claimed in claims:
            try:
                seen = inspect(claimed.path, self.follow_links_under)
            except OSError as e:  # of the moment (a full disk): it stays, and is repaired
                self.repairs_failing.failed(claimed.file_id, claimed.name, e)
                continue
            # A zip archive has no dataset: the transformer takes it apart into members.
            found.append((claimed, seen, None if is_zip_name(claimed.name)
                          else self.datasets.for_path(claimed.name)))
        found, records = self._register(found)
        events = []
        for (claimed, seen, dataset), record in zip(found, records, strict=True):
            metrics.FILES_RECEIVED.labels(record.dataset or "none").inc()
            archive = is_zip_name(claimed.name)
            reason = (seen.reason if isinstance(seen, Unread)
                      else None if dataset is not None or archive
                      else self.datasets.no_match(claimed.name))
            if record.state == "received" and reason is not None:
                db.finish_file(self.conn, record.file_id, "quarantined", reason)
                placement.quarantine(self.conn, self.folders, record.file_id, record.name,
                                     reason)
                metrics.FILES.labels("quarantined").inc()
                log.warning("file quarantined", extra={
                    "file_id": record.file_id, "file_name": record.name,
                    "dataset": record.dataset, "reason": reason})
                continue
            if record.state != "received" or (dataset is None and not archive):
                continue  # announced before as something else: repair() finishes it
            # The event says what was registered (a file announced again after a crash
            # keeps its first record): the transformer checks the bytes against it.
            assert record.sha256 is not None  # a file that was read
            events.append((FileArrived(file_id=record.file_id, seq=record.seq,
                                       name=record.name, path=record.path,
                                       sha256=record.sha256, size=record.size_bytes,
                                       dataset=dataset.name if dataset else "",
                                       archive=archive), record))
        self.broker.publish_many([(FILES, *event.encode()) for event, _record in events])
        seconds = time.monotonic() - started
        for event, record in events:
            self.announced.add(record.file_id)
            metrics.FILE_SECONDS.observe(seconds / len(claims))
            log.info("file received", extra={
                "file_id": record.file_id, "file_name": record.name,
                "dataset": record.dataset, "bytes": event.size, "sha256": record.sha256,
                "duration_ms": round(seconds * 1000, 1), "announced_with": len(events)})

    def _register(self, found: list[tuple[Claimed, Readable | Unread, Dataset | None]]
                  ) -> tuple[list[tuple[Claimed, Readable | Unread, Dataset | None]],
                             list[db.FileRecord]]:
        """Register a burst in one transaction; if the database refuses it for a reason
        of its own (not a lost connection), each file alone, so that a file it refuses
        waits in work/ for repair() and the others go on."""
        def arrival(item: tuple[Claimed, Readable | Unread, Dataset | None]
                    ) -> tuple[str, str, str, str | None, int, str | None]:
            claimed, seen, dataset = item
            return (claimed.file_id, claimed.name, self.folders.relative(claimed.path),
                    seen.sha256 if isinstance(seen, Readable) else None, seen.size,
                    dataset.name if dataset else None)

        if len(found) > 1:
            try:
                return found, db.register_files(self.conn, [arrival(item) for item in found])
            except ConnectionError:
                raise
            except Exception:  # noqa: BLE001 - each file alone below, and fails alone
                log.warning("registering a burst failed: one file at a time", exc_info=True)
        kept, records = [], []
        for item in found:
            try:
                records.extend(db.register_files(self.conn, [arrival(item)]))
            except ConnectionError:
                raise
            except Exception as e:  # noqa: BLE001 - this file waits, the others go on
                self.repairs_failing.failed(item[0].file_id, item[0].name, e)
                continue
            kept.append(item)
        return kept, records

    def repair(self, after_seconds: float) -> None:
        """Finish what was left in work/: claims never announced (a watcher that died,
        or lost its connection), finished files whose move out did not happen (a crash,
        or a move that failed). At the start of every session for every claim, and then
        at each rescan for claims in work/ for `after_seconds` or more.

        Each file is on its own: a step that fails for one is recorded on it, and tried
        again after a growing pause (Backoff), while the others go on.
        """
        now = time.monotonic()
        in_work = list(self.folders.claimed())
        self.seen_in_work = {c.file_id: self.seen_in_work.get(c.file_id, now) for c in in_work}
        claims = [c for c in in_work if now - self.seen_in_work[c.file_id] >= after_seconds
                  and self.repairs_failing.due(c.file_id)]
        if not claims:
            return
        records = db.files_by_id(self.conn, [c.file_id for c in claims])
        unannounced = []
        for claimed in claims:
            record = records.get(claimed.file_id)
            if record is None or record.state == "received":
                if claimed.file_id not in self.announced:
                    unannounced.append(claimed)
                continue
            if record.state in ("loaded", "duplicate"):
                placement.archive(self.conn, self.folders, claimed.file_id, claimed.name)
            elif record.state == "quarantined":
                placement.quarantine(self.conn, self.folders, claimed.file_id, claimed.name,
                                     record.error or "")
            else:
                continue  # processing (a transformer has it) or failed (until retried)
            if os.path.lexists(claimed.path):  # recorded on the file by placement
                self.repairs_failing.failed(claimed.file_id, claimed.name,
                                            OSError("the move out of work/ failed"))
            else:
                self.repairs_failing.succeeded(claimed.file_id)
        for start in range(0, len(unannounced), ANNOUNCE_AT_ONCE):
            self.announce(unannounced[start:start + ANNOUNCE_AT_ONCE])


def _takeable(path: Path) -> bool:
    """Anything but a folder: a link, FIFO or device is claimed, then quarantined unread
    (watcher.inspection), never left to sit in the inbox unexplained."""
    try:
        return not stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _check_disk(folders: Folders) -> None:
    """Say in /ready while the data folder's disk is full; clear it once it is not."""
    try:
        fs = os.statvfs(folders.root)
    except OSError:
        return
    free = fs.f_bavail * fs.f_frsize
    if free < DISK_FULL_BYTES:
        HEALTH.report(WAITING, f"the data folder's disk is full ({free:,} bytes free at "
                      f"{folders.root})", "disk")
    else:
        HEALTH.clear(WAITING, "disk")


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
