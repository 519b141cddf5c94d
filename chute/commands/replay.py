"""`chute replay FILE_ID...` or `chute replay --dataset NAME --rejected`: the rejected
rows of loaded files go through the current declaration again (a rule relaxed, a new
allowed value, a new spelling of nothing), without a rebuild.

Each file is read from the archive, checked against its sha256, transformed whole
under the current declaration (so every row keeps the id and line it had), and only
the lines rejected before are used: chute.postgres.rebuilds.replay_file. One file per
transaction; a replay killed half-way has replayed whole files only, and running it
again replays the rest (a line that loaded is no longer a reject).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass

from chute.errors import FileUnusable, RebuildError
from chute.postgres import db, rebuilds
from chute.reading.streams import HashingReader, Limits
from chute.reading.transform import COLUMNAR_FROM_BYTES, transform
from chute.runtime.config import Config


@dataclass(frozen=True)
class FileReplayed:
    file_id: str
    name: str
    passed: int
    still_rejected: int


def replay(config: Config, dataset_name: str | None, file_ids: list[str],
           each: Callable[[FileReplayed], None] | None = None) -> list[FileReplayed]:
    if dataset_name is not None and config.datasets.get(dataset_name) is None:
        raise RebuildError(f"no dataset {dataset_name!r} in {config.datasets.source}")
    conn = db.connect(config.database_url)
    try:
        files = rebuilds.replayable(conn, dataset_name, file_ids)
        if file_ids:
            found = {f.file_id for _d, f in files}
            unknown = [f for f in file_ids if f not in found]
            if unknown:
                raise RebuildError(f"not a loaded file with rejects: {', '.join(unknown)}")
        for name in dict.fromkeys(d for d, _f in files):
            dataset = config.datasets.get(name)
            if dataset is None:
                raise RebuildError(f"dataset {name!r} is not declared in "
                                   f"{config.datasets.source}")
            refusal = rebuilds.unfit(conn, dataset)
            if refusal:
                raise RebuildError(f"{refusal}: replay cannot load into this table; run "
                                   f"\"chute rebuild {name}\"")
            rebuilds.lock(conn, dataset)
        done = []
        for name, file in files:
            result = _replay_one(conn, config, name, file)
            done.append(result)
            if each is not None:
                each(result)
        return done
    finally:
        conn.close()


def _replay_one(conn: db.Connection, config: Config, name: str,
                file: rebuilds.ArchivedFile) -> FileReplayed:
    dataset = config.datasets[name]
    try:
        raw = os.fdopen(os.open(config.data_dir / file.path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError as e:
        raise RebuildError(f"{file.name} (file {file.file_id}): cannot read {file.path}: "
                           f"{e.strerror}") from None
    with raw, db.transaction(conn) as cur:
        hashing = HashingReader(raw)
        stream = io.BufferedReader(hashing, buffer_size=1 << 16)
        try:
            outcome = rebuilds.replay_file(cur, dataset, file, transform(
                stream, dataset, file.file_id, file.seq, file.sha256,
                file.batch_size or config.batch_size,
                columnar=file.size >= COLUMNAR_FROM_BYTES, limits=Limits.of(config)))
        except FileUnusable as e:
            raise RebuildError(f"{file.name} (file {file.file_id}): under the current "
                               f"declaration: {e}") from None
        while stream.read(1 << 20):
            pass
        if hashing.digest.hexdigest() != file.sha256:
            raise RebuildError(f"{file.name} (file {file.file_id}): {file.path} is not the "
                               "file that was loaded (its sha256 differs); nothing replayed")
    return FileReplayed(file.file_id, file.name, outcome.passed, outcome.still_rejected)
