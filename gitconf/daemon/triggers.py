"""What wakes the reconcile loop, besides its poll interval: writes to etcd by anyone else
(drift, relayed webhooks) and new commits or edited files of a local repository.

Every trigger sets the same `Wakeup`; the loop decides what to do. The etcd watch keeps the
revisions it saw so that the loop can tell its own writes from someone else's: a cycle whose
branch did not move and that saw no foreign write does no work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

from ..gitsource import GitSource
from ..records import Keys
from ..store import EtcdCompacted, KeyEvent, Store, Witness

log = logging.getLogger("gitconf.daemon")

WITNESS_LIMIT = 10_000  # others' writes under the prefix the watch keeps for the next pass


class Wakeup:
    """Shared between the triggers and the loop: `force` asks for a full cycle (fetch and
    reconcile even if nothing seems to have moved), `event` wakes the loop's sleep."""

    def __init__(self) -> None:
        self.force = True  # the first cycle always runs
        self.event = threading.Event()
        self.lock = threading.Lock()
        self.foreign: set[int] = set()  # revisions of writes seen by the etcd watch
        self.own: set[int] = set()  # revisions of our own writes

    def wake(self, force: bool = False) -> None:
        if force:
            self.force = True
        self.event.set()

    def take_force(self) -> bool:
        forced, self.force = self.force, False
        return forced

    def take_foreign(self) -> set[int]:
        with self.lock:
            foreign = self.foreign - self.own
            self.foreign.clear()
        return foreign

    def record_own(self, revisions: list[int], watched_up_to: int) -> None:
        """Our writes' revisions: events of them that arrived before we knew them are dropped
        now; after that, revisions the watch has already delivered can match no event, and a
        daemon that runs for months must not keep every revision it ever wrote."""
        with self.lock:
            self.own.update(revisions)
            self.foreign -= self.own
            self.own = {r for r in self.own if r >= watched_up_to}


class EtcdWatch:
    """A watch on the whole prefix from the last revision seen; restarted after errors from
    where it stopped (or from now, when that history is gone)."""

    def __init__(self, store: Store, keys: Keys, wakeup: Wakeup,
                 on_trigger: Callable[[bytes], None]):
        self.store = store
        self.keys = keys
        self.wakeup = wakeup
        self.on_trigger = on_trigger
        self.broken = True
        self.resync = False  # the watch was interrupted: the next cycle is a full look
        self.watched_from = 0  # the next revision the watch will deliver
        self._id: Any = None
        self._since = 0  # the first revision of the watch's unbroken run
        self._seen: list[KeyEvent] = []  # others' writes from `_since` on, for the passes

    def start(self) -> None:
        if self._id is not None:
            self.store.cancel_watch(self._id)
        start = self.watched_from or self.store.revision(within=self.keys.root_b) + 1
        if not self.watched_from:  # a new run: what came before it was not seen
            with self.wakeup.lock:
                self._since, self._seen = start, []
        self._id = self.store.watch_prefix(self.keys.root_b, start, self._callback)
        self.watched_from = start
        self.broken = False

    def witness(self) -> Witness:
        """What the watch has seen of others' writes under the prefix, for a pass: no etcd
        history to replay for the revisions it covers."""
        with self.wakeup.lock:
            return Witness(self._since, self.watched_from - 1, tuple(self._seen))

    def forget(self, through: int, own: Collection[int] = ()) -> None:
        """Drop what no pass will ask for again: the writes up to `through`, a revision a
        pass read as examined from the last-applied record, and gitconf's own (`own`)."""
        with self.wakeup.lock:
            if through >= self._since:
                self._since = through + 1
            self._seen = [e for e in self._seen
                          if e.mod_revision > through and e.mod_revision not in own]

    def stop(self) -> None:
        if self._id is not None:
            self.store.cancel_watch(self._id)
            self._id = None

    def _remember(self, event: KeyEvent) -> None:
        """Keep a write of someone else's for the passes (with `wakeup.lock` held). Past
        `WITNESS_LIMIT` unclaimed ones the watch stops vouching for the revisions so far
        (etcd's history answers for them) instead of holding a flood in memory."""
        if len(self._seen) >= WITNESS_LIMIT:
            self._since, self._seen = event.mod_revision + 1, []
            return
        self._seen.append(KeyEvent(event.key, event.mod_revision, event.deleted))

    def _callback(self, resp: Any) -> None:
        if isinstance(resp, Exception):
            log.warning("etcd watch interrupted: %s", resp)
            if isinstance(resp, EtcdCompacted) or "compacted" in str(resp):
                # what happened in between is gone from etcd's history: watch from now, and
                # let the next cycle look at every unit (drift is still told by the unit
                # records, not by the history)
                self.watched_from = 0
            self.broken = True
            self.resync = True
            self.wakeup.wake(force=True)
            return
        quiet = (self.keys.last_applied, self.keys.leader)
        wake = False
        with self.wakeup.lock:
            for ev in resp.events:
                rev = ev.mod_revision
                self.watched_from = max(self.watched_from, rev + 1)
                if ev.key == self.keys.trigger:
                    self.on_trigger(ev.value)
                    wake = True
                elif ev.key not in quiet and rev not in self.wakeup.own:
                    self.wakeup.foreign.add(rev)
                    self._remember(ev)
                    wake = True
        if wake:
            self.wakeup.event.set()


class FileWatch:
    """New commits on a local repository (and, with --worktree, edited files), debounced."""

    def __init__(self, source: GitSource, worktree: bool, wakeup: Wakeup, debounce: float = 0.2):
        self.git_dir = str(source.git_dir)
        self.work = str(source.work_tree) if worktree and source.work_tree else None
        self.wakeup = wakeup
        self.debounce = debounce
        self._timer: threading.Timer | None = None
        self._observer: Any = None

    def relevant(self, path: str) -> bool:
        if path.startswith(self.git_dir):
            rel = path[len(self.git_dir):].lstrip("/")
            return rel.startswith(("refs/", "packed-refs", "HEAD"))
        return bool(self.work) and path.startswith(str(self.work)) and \
            "/.git" not in path[len(str(self.work)):]

    def start(self) -> None:
        from watchdog.events import (
            DirCreatedEvent,
            DirDeletedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = (str(event.src_path), str(getattr(event, "dest_path", "") or ""))
                if any(p and watch.relevant(p) for p in paths):
                    watch._debounced()

        # only what signals a change: the default filter overflows the kernel's queue on
        # large trees and loses real events (DEPENDENCY-FACTS.md)
        kinds: list[type[FileSystemEvent]] = [
            FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent,
            FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        observer = Observer()
        observer.schedule(Handler(), self.git_dir, recursive=True, event_filter=kinds)
        if self.work:
            observer.schedule(Handler(), self.work, recursive=True, event_filter=kinds)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()

    def _debounced(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.debounce, self.wakeup.wake, kwargs={"force": True})
        self._timer.daemon = True
        self._timer.start()
