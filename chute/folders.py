"""The data directory: inbox/ (watched), work/ (claimed), archive/, quarantine/.

A file is claimed by renaming it from inbox/NAME to work/FILE_ID/NAME: the rename is
atomic, so two watchers can never both claim it, and the file id travels in the path,
so a watcher that dies right after the rename finds the claim again on restart.

A file's NAME is its path under inbox/ ("orders/2024-06.csv" for a file in a subfolder):
the dataset is chosen by it, so it is kept through work/ and into archive/ and
quarantine/, where the subfolders reappear. From the claim on, each part of the name is
one that every later step can hold: valid UTF-8 (the database and the messages cannot
carry other bytes) and short enough to take a suffix and `.reason.txt` within the 255
bytes a file name may have.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NAME_BYTES_MAX = 200  # room for ".{id8}" and ".reason.txt" within 255 bytes


def claim_name(name: str) -> str:
    """The name a file goes by once claimed: bytes that are not UTF-8 become U+FFFD, and
    an over-long name loses the end of its stem (its extension is kept)."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(name.encode()) <= NAME_BYTES_MAX:
        return name
    _stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and len(ext) <= 16 else ""
    room = NAME_BYTES_MAX - len(suffix.encode())
    return name[: len(name) - len(suffix)].encode()[:room].decode("utf-8", "ignore") + suffix


def claim_path(relative: Path) -> str:
    """The name a file under inbox/ goes by once claimed: its parts, each a claim_name,
    joined by "/"."""
    return "/".join(claim_name(part) for part in relative.parts)


class DataFolderUnusable(Exception):
    """This process cannot write the data folder: no file can be taken or finished, so
    the worker stops with this one line rather than failing file after file."""


@dataclass(frozen=True)
class Claimed:
    file_id: str
    path: Path
    name: str  # its path under inbox/, "/"-separated


def reason_path(quarantined: Path) -> Path:
    """Where a quarantined file's reason is written: beside it, NAME.reason.txt."""
    return quarantined.with_name(quarantined.name + ".reason.txt")


class Folders:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.inbox = data_dir / "inbox"
        self.work = data_dir / "work"
        self.archive = data_dir / "archive"
        self.quarantine = data_dir / "quarantine"

    def problem(self) -> str | None:
        """Why this process cannot use the data folder, or None when it can.

        Each folder is created if missing and written to (a hidden file, which the watcher
        ignores, created and removed): permission bits, ACLs, read-only mounts and
        missing capabilities all show, whoever the process runs as.
        """
        for folder in (self.root, self.inbox, self.work, self.archive, self.quarantine):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".chute-write-check-")
                os.close(fd)
                os.unlink(probe)
            except FileExistsError:
                return f"{folder} is not a folder"
            except OSError as e:
                return f"cannot write {folder} ({e.strerror or e}): {_ownership(folder)}"
        return None

    def check(self) -> None:
        """Raise DataFolderUnusable when this process cannot use the data folder."""
        problem = self.problem()
        if problem:
            raise DataFolderUnusable(problem)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def claim(self, path: Path) -> Claimed | None:
        """Move an inbox file into work/; None when another watcher took it first."""
        file_id = str(uuid.uuid4())
        folder = self.work / file_id
        name = claim_path(path.relative_to(self.inbox))
        dest = folder / name
        dest.parent.mkdir(parents=True)
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            _remove_empty(dest.parent, self.work)
            return None
        except OSError:
            _remove_empty(dest.parent, self.work)  # nothing was claimed: leave no folders
            raise
        return Claimed(file_id, dest, name)

    def claimed(self) -> Iterator[Claimed]:
        """Claims found in work/, for recovery at start; empty leftovers are removed."""
        for folder in sorted(self.work.iterdir()):
            if not folder.is_dir():
                continue
            files = [entry for entry in sorted(folder.rglob("*"))
                     if entry.is_file() and not entry.name.endswith(".reason.txt")]
            if not files:
                shutil.rmtree(folder, ignore_errors=True)  # died between mkdir and rename
                continue
            for entry in files:
                yield Claimed(folder.name, entry, entry.relative_to(folder).as_posix())

    def work_path(self, file_id: str, name: str) -> Path:
        return self.work / file_id / name

    def link_to_archive(self, file_id: str, name: str) -> Path | None:
        return self._link_out(file_id, name, self.archive)

    def link_to_quarantine(self, file_id: str, name: str, reason: str) -> Path | None:
        dest = self._link_out(file_id, name, self.quarantine)
        if dest is not None:
            # The reason file is written after the link: the file itself is what matters.
            reason_path(dest).write_text(reason + "\n")
        return dest

    def _link_out(self, file_id: str, name: str, target: Path) -> Path | None:
        """The first half of moving a claimed file to `target`: a second name for it
        there, keeping its name unless another file has it; `release` is the second.

        Returns None if the file is no longer in work/ (moved by an earlier attempt):
        moving is idempotent. A link made by an earlier attempt that stopped before the
        release is found and returned again. Never replaces a file already in `target`:
        two workers finishing files of the same name at once each keep theirs.
        """
        source = self.work_path(file_id, name)
        folder, _, base = name.rpartition("/")
        stem, dot, ext = base.rpartition(".")
        suffixed = f"{stem}.{file_id[:8]}.{ext}" if dot else f"{base}.{file_id[:8]}"
        (target / folder).mkdir(parents=True, exist_ok=True)
        for candidate in (base, suffixed):
            dest = target / folder / candidate
            try:
                # A hard link, unlike a rename, fails if the name is taken, and in one step.
                os.link(source, dest)
            except FileNotFoundError:
                return None
            except FileExistsError:
                if not _same_file(source, dest):
                    continue  # another file's name: try the next
                # else: an earlier attempt linked it and stopped before the release
            return dest
        raise FileExistsError(f"{target}: both {name} and its suffixed name are taken")

    def release(self, file_id: str, name: str) -> None:
        """The second half of a move: the file's name in work/ goes, and its folder."""
        source = self.work_path(file_id, name)
        try:
            os.unlink(source)
        except FileNotFoundError:
            pass  # a concurrent attempt moved it too, to the same place
        _remove_empty(source.parent, self.work)


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to (not including) `top`, while empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        return False


def _ownership(path: Path) -> str:
    """Who owns `path` (or its nearest existing parent) and who we are, for a message."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = path.stat()
    except OSError:
        return f"this process runs as uid {os.getuid()}"
    return (f"{path} belongs to uid {st.st_uid} gid {st.st_gid} with mode "
            f"{st.st_mode & 0o7777:o}; this process runs as uid {os.getuid()} gid {os.getgid()}")
