"""The data directory: inbox/ (watched), work/ (claimed), archive/, quarantine/.

A file is claimed by renaming it from inbox/NAME to work/FILE_ID/NAME: the rename is
atomic, so two watchers can never both claim it, and the file id travels in the path,
so a watcher that dies right after the rename finds the claim again on restart.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Claimed:
    file_id: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


class Folders:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.inbox = data_dir / "inbox"
        self.work = data_dir / "work"
        self.archive = data_dir / "archive"
        self.quarantine = data_dir / "quarantine"

    def ensure(self) -> None:
        for folder in (self.inbox, self.work, self.archive, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def claim(self, path: Path) -> Claimed | None:
        """Move an inbox file into work/; None when another watcher took it first."""
        file_id = str(uuid.uuid4())
        folder = self.work / file_id
        folder.mkdir()
        try:
            os.rename(path, folder / path.name)
        except FileNotFoundError:
            folder.rmdir()
            return None
        return Claimed(file_id, folder / path.name)

    def claimed(self) -> Iterator[Claimed]:
        """Claims found in work/, for recovery at start; empty leftovers are removed."""
        for folder in sorted(self.work.iterdir()):
            if not folder.is_dir():
                continue
            entries = list(folder.iterdir())
            if not entries:
                folder.rmdir()  # a watcher died between mkdir and rename
                continue
            for entry in entries:
                if entry.is_file() and not entry.name.endswith(".reason.txt"):
                    yield Claimed(folder.name, entry)

    def work_path(self, file_id: str, name: str) -> Path:
        return self.work / file_id / name

    def to_archive(self, file_id: str, name: str) -> Path | None:
        return self._move_out(file_id, name, self.archive)

    def to_quarantine(self, file_id: str, name: str, reason: str) -> Path | None:
        dest = self._move_out(file_id, name, self.quarantine)
        if dest is not None:
            # The reason file is written after the move: the file itself is what matters.
            dest.with_name(dest.name + ".reason.txt").write_text(reason + "\n")
        return dest

    def _move_out(self, file_id: str, name: str, target: Path) -> Path | None:
        """Move a claimed file to `target`, keeping its name unless another file has it.

        Returns None if the file is no longer in work/ (already moved by an earlier,
        interrupted attempt): moving is idempotent.
        """
        source = self.work_path(file_id, name)
        dest = target / name
        if dest.exists():
            stem, dot, ext = name.rpartition(".")
            dest = target / (f"{stem}.{file_id[:8]}.{ext}" if dot else f"{name}.{file_id[:8]}")
        try:
            os.replace(source, dest)
        except FileNotFoundError:
            return None
        try:
            source.parent.rmdir()
        except OSError:
            pass
        return dest
