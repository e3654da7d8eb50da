"""What the loader reads from: a set of repo-relative paths and their bytes.

A working tree on disk (`validate`, pre-commit, `--worktree`) and a Git commit (`gitsource.GitTree`)
both satisfy `Tree`, so one loader serves every command.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol


class Tree(Protocol):
    def paths(self) -> list[str]:
        """Every file path, relative to the repository root, with `/`."""
        ...

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """The contents of `paths`, in the order asked."""
        ...


class FileTree:
    """A directory on disk; `.git` and other dot-directories are not part of the config."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def paths(self) -> list[str]:
        out: list[str] = []
        root = str(self.root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, root)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            out.extend(prefix + f for f in sorted(filenames))
        return out

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p, (self.root / p).read_bytes()


class MemoryTree:
    """A dict of path -> bytes: what tests and the in-place editor use to load a tree they made."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def paths(self) -> list[str]:
        return sorted(self.files)

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p, self.files[p]
