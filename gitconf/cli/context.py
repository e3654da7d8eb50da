"""Wiring shared by the commands: open the repository, connect to etcd, pick the prefix."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..etcdstore import EtcdStore
    from ..gitsource import GitSource
    from ..reconcile import Reconciler
    from ..records import Keys


def default_prefix() -> str:
    return os.environ.get("GITCONF_PREFIX", "/config")


@contextmanager
def store_for(etcd: str | None) -> Iterator[EtcdStore]:
    from ..etcdstore import connect

    store = connect(etcd)
    try:
        yield store
    finally:
        store.close()


def open_source(repo: str) -> GitSource:
    from ..gitsource import GitSource

    return GitSource.open(repo)


def keys_for(prefix: str) -> Keys:
    from ..records import Keys

    return Keys(prefix)


def warn_uncommitted(source: GitSource, ref: str, force: bool = False) -> None:
    """Commands read commits, not files: say so when the files differ from what is read. Only
    for a person at a terminal: `git status` costs time in proportion to the tree."""
    if ref != "HEAD" or not (force or sys.stderr.isatty()):
        return
    dirty = source.uncommitted()
    if dirty:
        from .app import err

        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        err(f"note: reading HEAD; uncommitted changes to {shown} are not included "
            "(commit them, or use `gitconf daemon --worktree` for local development)")


@contextmanager
def reconciler_for(repo: str, etcd: str | None, prefix: str,
                   ref: str | None = None) -> Iterator[Reconciler]:
    from ..reconcile import Reconciler

    source = open_source(repo)
    if ref is not None:
        warn_uncommitted(source, ref)
    with store_for(etcd) as store:
        yield Reconciler(source, store, keys_for(prefix))
