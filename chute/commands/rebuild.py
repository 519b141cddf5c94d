"""`chute rebuild DATASET`: the dataset's table made again from its archive under the
current declaration, beside the live one, then swapped in at once.

Every archived file of the dataset goes, in arrival order, through the transformer's
core (chute.reading.transform, which gives each row the id its file's bytes and line
give) and into the new table by the loader's own statements (db.copy_rows, and
db.upsert_rows for a key), one file per transaction (chute.postgres.rebuilds says how
the swap keeps readers and the running pipeline whole). Files are read from where the
ledger says they are, and must hash to the sha256 recorded when they arrived.

A file missing from the archive, or whose bytes changed, stops the rebuild before the
swap, naming each such file (--skip-missing goes on without them, each recorded as
`failed` with why). A file whose header no longer fits (a new required column, say) is
`quarantined` with the reason, as the pipeline would do with it.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from chute.errors import FileChanged, FileUnusable, RebuildError
from chute.postgres import db, rebuilds
from chute.postgres.rebuilds import ArchivedFile, Rebuild
from chute.rabbitmq.broker import FILES, Broker
from chute.rabbitmq.messages import FileArrived
from chute.reading.streams import HashingReader, Limits
from chute.reading.transform import COLUMNAR_FROM_BYTES, transform
from chute.runtime.config import Config

# A pass that leaves at most this many files loaded meanwhile ends the catch-up: the swap
# loads those itself, holding the dataset's loaders for that long.
# The transform runs in a thread beside the COPY (ahead). A forked process per large
# file was tried and measured slower on people (1.54x the first load, against 1.03x):
# pickling each batch to the parent costs more than the GIL it frees.
SWAP_WHEN_FEWER = 3
CATCH_UP_PASSES = 5


@dataclass(frozen=True)
class Outcome:
    rebuild_id: int
    files: int  # loaded into the new table
    skipped: list[str]  # "NAME: why" of each file left out
    kept_as: str
    resent: int  # files sent through the pipeline after the swap


Progress = Callable[[int, int], None]  # (files done, files in all)


def rebuild(config: Config, name: str, skip_missing: bool = False,
            progress: Progress | None = None) -> Outcome:
    dataset = config.datasets.get(name)
    if dataset is None:
        raise RebuildError(f"no dataset {name!r} in {config.datasets.source} (declared: "
                           f"{', '.join(d.name for d in config.datasets)})")
    conn = db.connect(config.database_url)
    try:
        db.apply_schema(conn, config.datasets, config.reader_role)
        rebuilds.lock(conn, dataset)
        run = rebuilds.begin(conn, dataset, config.reader_role)
        report = progress or (lambda _done, _total: None)
        for _ in range(CATCH_UP_PASSES):
            files = rebuilds.pending(conn, run)
            if not files:
                break
            missing = {f.file_id: why for f in files if (why := _archive_problem(config, f))}
            if missing and not skip_missing:
                rebuilds.raise_if_missing([f"{f.name} (file {f.file_id}): {missing[f.file_id]}"
                                           for f in files if f.file_id in missing])
            done, total = rebuilds.progress(conn, run)
            report(done, total)
            for file in files:
                with db.transaction(conn) as cur:
                    _load_or_skip(cur, config, run, file, missing.get(file.file_id))
                done += 1
                report(done, total)
            if len(rebuilds.pending(conn, run)) < SWAP_WHEN_FEWER:
                break

        def catch_up(cur: Any, late: list[ArchivedFile]) -> None:
            for file in late:
                problem = _archive_problem(config, file)
                if problem and not skip_missing:  # rolls the swap back
                    rebuilds.raise_if_missing([f"{file.name} (file {file.file_id}): {problem}"])
                _load_or_skip(cur, config, run, file, problem)

        swapped = rebuilds.swap(conn, run, config.reader_role, catch_up)
        loaded, skipped = rebuilds.summary(conn, run)
    finally:
        conn.close()
    _send_again(config, swapped.restarted)
    return Outcome(run.rebuild_id, loaded, skipped, swapped.kept_as, len(swapped.restarted))


def _load_or_skip(cur: Any, config: Config, run: Rebuild, file: ArchivedFile,
                  missing: str | None) -> None:
    """Load a file into the rebuild's table, or record it left out: missing from the
    archive (--skip-missing), or quarantined under the new declaration."""
    if missing is not None:
        rebuilds.skip_file(cur, run, file, f"not in the table rebuilt by chute rebuild "
                           f"--skip-missing: {missing}", "failed")
    else:
        _load(cur, config, run, file)


def _archive_problem(config: Config, file: ArchivedFile) -> str | None:
    """Why an archived file cannot be read as it was loaded (cheap: by its size; the
    sha256 is checked while it is read), or None."""
    try:
        size = (config.data_dir / file.path).lstat().st_size
    except FileNotFoundError:
        return f"missing from {file.path}"
    except OSError as e:
        return f"cannot read {file.path}: {e.strerror}"
    if size != file.size:
        return f"{file.path} has {size} bytes, {file.size} were loaded"
    return None


def _load(cur: Any, config: Config, run: Rebuild, file: ArchivedFile) -> None:
    """Load one archived file into the rebuild's table in the caller's transaction (one
    whose header no longer fits is recorded quarantined). A file whose bytes are not the
    ones loaded raises RebuildError (the transaction rolls back)."""
    path = config.data_dir / file.path
    try:
        raw = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError as e:
        raise RebuildError(f"{file.name} (file {file.file_id}): cannot read {file.path}: "
                           f"{e.strerror}") from None
    with raw:
        hashing = HashingReader(raw)
        stream = io.BufferedReader(hashing, buffer_size=1 << 16)
        messages = transform(stream, run.target, file.file_id, file.seq, file.sha256,
                             file.batch_size or config.batch_size,
                             columnar=file.size >= COLUMNAR_FROM_BYTES,
                             limits=Limits.of(config))
        try:
            rebuilds.load_file(cur, run, file, ahead(messages))
        except FileUnusable as e:
            rebuilds.skip_file(cur, run, file, str(e), "quarantined")
            return
        while stream.read(1 << 20):
            pass  # the hash covers the whole file
    if hashing.digest.hexdigest() != file.sha256:
        raise RebuildError(str(FileChanged(
            f"{file.name} (file {file.file_id}): {file.path} is not the file that was "
            f"loaded (sha256 {hashing.digest.hexdigest()}, {file.sha256} when loaded); "
            "nothing was swapped")))


T = TypeVar("T")


def ahead(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """`items`, computed by a thread of their own up to `depth` ahead: the next batches
    are cut while the server copies this one (pyarrow and the socket release the GIL),
    as the transformer and the loader overlap in the pipeline. An exception in `items`
    is raised here, in order; closing this iterator early stops the thread."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def offer(entry: tuple[str, Any]) -> bool:
        """Hand over one entry; False once the consumer has gone."""
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            offer(("error", e))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


def _send_again(config: Config, files: list[db.FileRecord]) -> None:
    """The files that waited for the rebuild (held, or restarted by the swap) go through
    the pipeline into the new table. A FileArrived for a file handled meanwhile is
    harmless: the transformer sees its state. Were this lost (a crash right here), the
    watcher's repair at its next start sends every `received` file again."""
    if not files:
        return
    broker = Broker(config.amqp_url, config.namespace)
    try:
        broker.publish_many([(FILES, *FileArrived(
            file_id=r.file_id, seq=r.seq, name=r.name, path=r.path, sha256=r.sha256 or "",
            size=r.size_bytes, dataset=r.dataset or "").encode()) for r in files])
    finally:
        broker.close()
