"""What the loader reads from: a set of repo-relative paths and their bytes.

A working tree on disk (`validate`, pre-commit, `--worktree`) and a Git commit (`gitsource.GitTree`)
both satisfy `Tree`, so one loader serves every command.

Only regular files are read. A symbolic link (to a file, to a directory, or dangling) is never
followed and a FIFO, socket or device is never opened (opening a FIFO blocks for ever): such
entries are left out of `paths()` and listed by `refused()`, each with a problem code, for the
loader to report where it would have read a config file. Git submodules are skipped silently.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

SYMLINK = "symlink"
NOT_A_FILE = "not-a-file"


class Refused(NamedTuple):
    """An entry of the tree that is not a regular file, so it is never read."""

    path: str  # relative to the repository root, with `/`
    code: str  # SYMLINK or NOT_A_FILE
    message: str


def symlink_entry(path: str) -> Refused:
    return Refused(path, SYMLINK,
                   f"{path} is a symbolic link; gitconf reads only regular files")


def special_entry(path: str, kind: str) -> Refused:
    return Refused(path, NOT_A_FILE,
                   f"{path} is {kind}, not a regular file; gitconf reads only regular files")


class RefusedFile(OSError):
    """Asked to read an entry that is not a regular file. An `OSError`, as reading a file that
    vanished would be, so callers showing source lines treat both alike."""

    def __init__(self, entry: Refused):
        super().__init__(entry.message)
        self.entry = entry


class Tree(Protocol):
    def paths(self) -> list[str]:
        """Every regular file path, relative to the repository root, with `/`."""
        ...

    def refused(self) -> list[Refused]:
        """Entries that are not regular files (symbolic links, FIFOs, sockets, devices): never
        read, never in `paths()`."""
        ...

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """The contents of `paths`, in the order asked; `RefusedFile` for a path that is not a
        regular file."""
        ...


class FileTree:
    """A directory on disk; `.git` and other dot-directories are not part of the config."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._refused: list[Refused] | None = None

    def paths(self) -> list[str]:
        files: list[str] = []
        refused: list[Refused] = []
        _scan(str(self.root), "", files, refused)
        self._refused = refused
        return files

    def refused(self) -> list[Refused]:
        """What the last `paths()` left out (scanning now if it has not run)."""
        if self._refused is None:
            self.paths()
        assert self._refused is not None
        return list(self._refused)

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p, read_regular(self.root, p)


def _scan(top: str, prefix: str, files: list[str], refused: list[Refused]) -> None:
    """Files of a directory in sorted order, then each sub-directory in turn (the order
    `os.walk` gives). `DirEntry` answers from the directory listing: no file is opened."""
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    subdirs: list[os.DirEntry[str]] = []
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_symlink():
            refused.append(symlink_entry(rel))
        elif entry.is_dir(follow_symlinks=False):
            if not entry.name.startswith("."):
                subdirs.append(entry)
        elif entry.is_file(follow_symlinks=False):
            files.append(rel)
        else:
            refused.append(special_entry(rel, _kind(entry.path)))
    for entry in subdirs:
        _scan(entry.path, prefix + entry.name + "/", files, refused)


def _kind(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FD = os.open in os.supports_dir_fd and bool(_O_NOFOLLOW and _O_DIRECTORY)


def read_regular(root: str | os.PathLike[str], rel: str) -> bytes:
    """The bytes of the regular file `root/rel`, without following a symbolic link anywhere on
    the way (each directory is opened relative to its parent with O_NOFOLLOW) and without
    opening anything that is not a regular file. `RefusedFile` otherwise."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise RefusedFile(special_entry(rel, "not a path inside the repository"))
    if not _DIR_FD:  # no openat(): check each component, then open (a race remains here)
        _check_components(Path(root), parts)
        return _read_fd(os.open(Path(root, *parts), os.O_RDONLY | _O_NONBLOCK), rel)
    dir_fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for i, part in enumerate(parts[:-1]):
            sub = _open_at(dir_fd, part, "/".join(parts[:i + 1]), last=False)
            os.close(dir_fd)
            dir_fd = sub
        fd = _open_at(dir_fd, parts[-1], rel, last=True)
    finally:
        os.close(dir_fd)
    return _read_fd(fd, rel)


def _open_at(dir_fd: int, name: str, rel: str, last: bool) -> int:
    """Open `name` inside `dir_fd` once `lstat` says it is a directory (on the way) or a
    regular file (`last`)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    _refuse_odd(st.st_mode, rel, last)
    flags = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | (_O_NONBLOCK if last else _O_DIRECTORY)
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:  # replaced by a link since the stat: still never followed
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RefusedFile(symlink_entry(rel)) from None
        raise


def _refuse_odd(mode: int, rel: str, last: bool) -> None:
    if stat.S_ISLNK(mode):
        raise RefusedFile(symlink_entry(rel))
    if last and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise RefusedFile(special_entry(rel, kind))
    if not last and not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", rel)


def _check_components(root: Path, parts: list[str]) -> None:
    for i in range(len(parts)):
        st = os.lstat(root.joinpath(*parts[:i + 1]))
        _refuse_odd(st.st_mode, "/".join(parts[:i + 1]), last=i == len(parts) - 1)


def _read_fd(fd: int, rel: str) -> bytes:
    """Read (and close) an open descriptor once `fstat` confirms a regular file (the entry may
    have been swapped between the check and the open)."""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RefusedFile(special_entry(rel, "not a regular file"))
        return f.read()
