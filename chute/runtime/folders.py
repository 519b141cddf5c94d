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

import ctypes
import errno
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chute.datasets.declarations import is_zip_name
from chute.errors import DataFolderUnusable

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


def stored_name(name: str) -> str:
    """A file's path in archive/ or quarantine/: its name, but a zip archive's is a
    folder of its name holding it, beside the members taken from it
    (bundle.zip/bundle.zip, bundle.zip/more/carshare.csv)."""
    if is_zip_name(name):
        return f"{name}/{name.rpartition('/')[2]}"
    return name


def claim_path(relative: Path) -> str:
    """The name a file under inbox/ goes by once claimed: its parts, each a claim_name,
    joined by "/"."""
    return "/".join(claim_name(part) for part in relative.parts)


@dataclass(frozen=True)
class Claimed:
    file_id: str
    path: Path
    name: str  # its path under inbox/, "/"-separated


def cannot_read(st: os.stat_result) -> str:
    """The reason a file this process may not read is quarantined: whose it is, its mode."""
    return (f"cannot read: permission denied (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o})")


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
            # Not followed: a claimed link, FIFO or device is a claim too (the watcher
            # quarantines it unread); hidden names are a move's temporary files.
            files = [entry for entry in sorted(folder.rglob("*"))
                     if not entry.is_dir() or entry.is_symlink()
                     if not entry.name.endswith(".reason.txt")
                     and not entry.name.startswith(".")]
            if not files:
                shutil.rmtree(folder, ignore_errors=True)  # died between mkdir and rename
                continue
            for entry in files:
                yield Claimed(folder.name, entry, entry.relative_to(folder).as_posix())

    def work_path(self, file_id: str, name: str) -> Path:
        return self.work / file_id / name

    def free_name(self, file_id: str, name: str, target: Path) -> Path:
        """Where a claimed file would go in `target` (archive/ or quarantine/): its own
        name (see stored_name), or, if another file has that, its name with the file id
        in it. Free now; the move itself (rename_noreplace) is what makes sure it still
        is."""
        folder, _, base = stored_name(name).rpartition("/")
        stem, dot, ext = base.rpartition(".")
        for tag in (file_id[:8], file_id):
            candidates = (base, f"{stem}.{tag}.{ext}" if dot else f"{base}.{tag}")
            for candidate in candidates:
                dest = target / folder / candidate
                if not os.path.lexists(dest):
                    return dest
        raise FileExistsError(f"{target}: {name} and its names with the file id are taken")

    def old_link(self, file_id: str, name: str, target: Path) -> Path | None:
        """A second name of the claimed file in `target`, left by a chute before 2026-12
        that moved files by hard link and stopped before removing the first name."""
        source = self.work_path(file_id, name)
        folder, _, base = stored_name(name).rpartition("/")
        stem, dot, ext = base.rpartition(".")
        tag = file_id[:8]
        for candidate in (base, f"{stem}.{tag}.{ext}" if dot else f"{base}.{tag}"):
            if same_file(source, target / folder / candidate):
                return target / folder / candidate
        return None

    def reason_in_work(self, file_id: str, name: str, reason: str) -> Path:
        """Write a quarantine reason into the file's folder in work/, whole or not at all
        (a hidden temporary file, renamed): it follows the file once the file has moved.
        A full disk fails here, before anything has moved."""
        path = reason_path(self.work_path(file_id, name))
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(reason + "\n")
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        return path

    def settle(self, file_id: str, name: str, dest: Path, reason: Path | None) -> None:
        """After a file's move to `dest`: its reason beside it, its folder in work/ gone."""
        if reason is not None:
            try:
                os.replace(reason, reason_path(dest))
            except FileNotFoundError:
                pass  # a concurrent attempt moved it, to the same place
        _remove_empty(self.work_path(file_id, name).parent, self.work)


def rename_noreplace(source: Path, dest: Path) -> None:
    """Rename `source` to `dest` in one step, failing with FileExistsError when `dest`
    exists: two files of the same name finishing at once each keep theirs.

    A rename, unlike the hard link that did this before, needs no ownership of the file:
    Linux's fs.protected_hardlinks (on by default) forbids linking a file one does not
    own, and an inbox is written by other users. renameat2(RENAME_NOREPLACE) is Linux's
    (3.15+; ext4, xfs, btrfs, tmpfs, overlayfs); elsewhere, or on a filesystem without
    it, a hard link and unlink, and where that too is refused, a rename checked first.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(dest),
                      _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(source), None, str(dest))
    try:
        os.link(source, dest)
    except PermissionError:
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest)) from None
        os.rename(source, dest)
        return
    os.unlink(source)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28+
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
    _renameat2.restype = ctypes.c_int


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to (not including) `top`, while empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def same_file(a: Path, b: Path) -> bool:
    """Two names of one file (links not followed: two links are two files)."""
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
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
