"""Wiring shared by the commands: open the repository, connect to etcd, pick the prefix."""

from __future__ import annotations

import os
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


@contextmanager
def reconciler_for(repo: str, etcd: str | None, prefix: str) -> Iterator[Reconciler]:
    from ..reconcile import Reconciler

    source = open_source(repo)
    with store_for(etcd) as store:
        yield Reconciler(source, store, keys_for(prefix))
