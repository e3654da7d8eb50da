"""The reconcile loop: one `Reconciler.run()` per cycle, woken by the poll interval, a GitHub
push, file events of a local repository, or a write to etcd by someone else. Only the leader
applies.

A standby that receives the webhook relays it through a key every replica watches; the leader
acts on it directly.

A cycle where the branch did not move and nobody else wrote to etcd does no Git or etcd work
beyond one `rev-parse` (and a fetch on the poll for a URL); a cycle after a small commit reads
only the units that commit changed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import EtcdError, GitconfError, GitError
from ..etcdstore import EtcdStore, connect
from ..gitsource import GitSource
from ..reconcile import Reconciler, Request, Result
from ..records import Keys
from .http import Endpoints, make_server, serve
from .leader import LeaderElection
from .metrics import Metrics

log = logging.getLogger("gitconf.daemon")


@dataclass
class DaemonConfig:
    repo: str
    branch: str = "main"
    interval: float = 30.0
    listen: str = "127.0.0.1:8080"
    etcd: str | None = None
    prefix: str = "/config"
    lease_ttl: int = 10
    actor: str | None = None
    worktree: bool = False
    webhook_secret: str | None = None
    max_backoff: float = 60.0
    max_ops: int = 128


class JsonFormatter(logging.Formatter):
    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "msg": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("gitconf")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.keys = Keys(cfg.prefix)
        self.metrics = Metrics()
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = cfg.actor or f"gitconf-daemon@{socket.gethostname()}"
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.source: GitSource | None = None
        self.store: EtcdStore | None = None
        self.leader: LeaderElection | None = None
        self.etcd_ok = False
        self.git_ok = True
        self.first_done = False
        self.last_error: str | None = None
        self.last_head: str | None = None
        self.last_ok = False
        self.force = True  # the first cycle always runs
        self._lock = threading.Lock()
        self._events: set[int] = set()  # revisions of writes seen by the etcd watch
        self._own: set[int] = set()  # revisions of our own writes
        self.reconciler: Reconciler | None = None
        self._watch_id: Any = None
        self._watch_broken = True
        self._watch_from = 0
        self._reported: set[str] = set()
        self._observer: Any = None
        self._debounce: threading.Timer | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        host, _, port = self.cfg.listen.rpartition(":")
        server = make_server(host or "127.0.0.1", int(port), Endpoints(
            self.ready, self.metrics.render, self.cfg.branch, self.cfg.webhook_secret,
            self._on_push, lambda: self.metrics.errors.labels("webhook").inc()))
        self.port = server.server_address[1]
        serve(server)
        log.info("listening on http://%s:%d", host or "127.0.0.1", self.port,
                 extra={"identity": self.identity, "repo": self._shown_repo()})
        backoff = 0.0
        try:
            while not self.stop.is_set():
                try:
                    self._setup()
                    if self.leader is not None and self.leader.leading:
                        self._maybe_cycle()
                    backoff = 0.0
                    timeout = self.cfg.interval
                except Exception as exc:  # a daemon survives what it did not foresee too
                    if not isinstance(exc, GitconfError):
                        log.exception("unexpected error in the reconcile loop")
                    self._failed(exc)
                    backoff = min(self.cfg.max_backoff, max(0.5, backoff * 2 or 0.5))
                    timeout = backoff * (0.5 + random.random() / 2)  # jittered
                    log.warning("cycle failed, retrying in %.1fs: %s", timeout, exc)
                self._sleep(timeout)
        finally:
            self._shutdown(server)
        return 0

    def _sleep(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                if self.source is not None and self.source.url:
                    self.force = True  # the poll: fetch the remote
                return
            if self.wake.wait(min(left, 0.5)):
                self.wake.clear()
                return

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current transaction", signum)
        self.stop.set()
        self.wake.set()

    def _shutdown(self, server: Any) -> None:
        if self._observer is not None:
            self._observer.stop()
        if self.leader is not None:
            self.leader.resign()
        if self.store is not None:
            if self._watch_id is not None:
                self.store.cancel_watch(self._watch_id)
            self.store.close()
        server.shutdown()
        log.info("stopped")

    def _shown_repo(self) -> str:
        return self.source.describe() if self.source else self.cfg.repo

    # -- setup (retried until it works) ---------------------------------------------------

    def _setup(self) -> None:
        if self.source is None:
            self.source = GitSource.open(self.cfg.repo)
            if self.source.url is None:
                self._watch_files()
        if self.store is None:
            self.store = connect(self.cfg.etcd)
            self.store.revision()
            self.etcd_ok = True
        if self.leader is None:
            self.leader = LeaderElection(self.store, self.keys.leader, self.identity,
                                         self.cfg.lease_ttl, self._on_leader, self._on_etcd)
            self.leader.start()
        if self._watch_broken:
            self._start_watch()

    def _on_leader(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.force = True
            self.first_done = False
        self.wake.set()

    def _on_etcd(self, ok: bool) -> None:
        self.etcd_ok = ok

    # -- triggers -------------------------------------------------------------------------

    def _on_push(self, after: str) -> None:
        """A verified push: tell every replica through etcd (the leader may be another one)."""
        log.info("webhook: push to %s (%s)", self.cfg.branch, after[:12])
        self.force = True
        self.wake.set()
        if self.store is not None and not (self.leader and self.leader.leading):
            try:
                self.store.put(self.keys.trigger, json.dumps(
                    {"after": after, "at": time.time(), "by": self.identity}).encode())
            except EtcdError as exc:
                log.warning("webhook: could not relay the push through etcd: %s", exc)

    def _start_watch(self) -> None:
        assert self.store is not None
        if self._watch_id is not None:
            self.store.cancel_watch(self._watch_id)
        start = self._watch_from or self.store.revision() + 1
        trigger, last_applied = self.keys.trigger, self.keys.last_applied
        leader = self.keys.leader

        def callback(resp: Any) -> None:
            if isinstance(resp, Exception):
                log.warning("etcd watch interrupted: %s", resp)
                self._watch_broken = True
                self.force = True
                self.wake.set()
                return
            wake = False
            with self._lock:
                for ev in resp.events:
                    rev = ev.mod_revision
                    self._watch_from = max(self._watch_from, rev + 1)
                    if ev.key == trigger:
                        self.force = True
                        wake = True
                    elif ev.key not in (last_applied, leader) and rev not in self._own:
                        self._events.add(rev)
                        wake = True
            if wake:
                self.wake.set()

        self._watch_id = self.store.watch_prefix(self.keys.root_b, start, callback)
        self._watch_from = start
        self._watch_broken = False

    def _watch_files(self) -> None:
        """New commits on a local repository (and, with --worktree, edited files)."""
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

        assert self.source is not None
        git_dir = str(self.source.git_dir)
        work = str(self.source.work_tree) if self.cfg.worktree and self.source.work_tree else None
        daemon = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
                for p in paths:
                    if not p:
                        continue
                    if p.startswith(git_dir):
                        rel = p[len(git_dir):].lstrip("/")
                        if rel.startswith(("refs/", "packed-refs", "HEAD")):
                            daemon._debounced()
                            return
                    elif work and p.startswith(work) and "/.git" not in p[len(work):]:
                        daemon._debounced()
                        return

        observer = Observer()
        kinds: list[type[FileSystemEvent]] = [
            FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent,
            FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        observer.schedule(Handler(), git_dir, recursive=True, event_filter=kinds)
        if work:
            observer.schedule(Handler(), work, recursive=True, event_filter=kinds)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _debounced(self) -> None:
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = threading.Timer(0.2, self._file_trigger)
        self._debounce.daemon = True
        self._debounce.start()

    def _file_trigger(self) -> None:
        self.force = True
        self.wake.set()

    # -- the cycle ------------------------------------------------------------------------

    def _maybe_cycle(self) -> None:
        assert self.source is not None and self.store is not None and self.leader is not None
        forced, self.force = self.force, False
        if forced and self.source.url:
            try:
                self.source.fetch()
            except GitError:
                self.force = True
                raise
        head = self.source.branch_head(self.cfg.branch)
        if head is None:
            raise GitError(f"branch {self.cfg.branch!r} not found in {self.source.describe()}")
        self.git_ok = True
        with self._lock:
            foreign = self._events - self._own
            self._events.clear()
        idle = (self.first_done and self.last_ok and head == self.last_head and not foreign
                and not self._watch_broken and not (forced and self.cfg.worktree))
        if idle:
            self.metrics.reconciles.labels("idle").inc()
            return
        self._cycle(head)

    def _cycle(self, head: str) -> None:
        assert self.source is not None and self.store is not None and self.leader is not None
        fence = self.leader.fence()
        if fence is None:
            return
        started = time.perf_counter()
        req = Request(ref=head, actor=self.actor, drift_policy=None, cancel=self.stop,
                      fence=fence, worktree=self.cfg.worktree, max_ops=self.cfg.max_ops)
        if self.reconciler is None or self.reconciler.store is not self.store:
            self.reconciler = Reconciler(self.source, self.store, self.keys)
        try:
            result = self.reconciler.run(req)
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        with self._lock:
            self._own.update(result.own_revisions)
            # events of our own writes that arrived before we knew their revisions are dropped
            # now; after that, revisions the watch has already delivered can match no event,
            # and a daemon that runs for months must not keep every revision it ever wrote
            self._events -= self._own
            self._own = {r for r in self._own if r >= self._watch_from}
        self._report(result, head, time.perf_counter() - started)

    def _report(self, result: Result, head: str, elapsed: float) -> None:
        m = self.metrics
        self.etcd_ok = True
        self.last_head = head
        self.first_done = True
        self.last_error = None
        self.last_ok = result.ok and not result.cancelled
        for d in result.deploys:
            log.info("deployed %s #%d (%s): +%d ~%d -%d", d.unit, d.deploy, d.version,
                     len(d.added), len(d.changed), len(d.deleted),
                     extra={"unit": str(d.unit), "deploy": d.deploy, "commit": head})
        m.deploys.inc(len(result.deploys))
        for unit in result.reverted:
            log.info("drift in %s reverted to Git", unit, extra={"unit": str(unit)})
        m.drift.labels("reverted").inc(len(result.reverted))
        drifted = {str(up.unit) for up in result.drifted}
        for up in result.drifted:
            if str(up.unit) not in self._reported:
                m.drift.labels("reported").inc()
                log.warning("drift in %s left in place (policy): %s", up.unit,
                            ", ".join(c.key for c in up.changes[:10]),
                            extra={"unit": str(up.unit)})
        self._reported = drifted
        for unit, reason in result.plan.failed:
            log.error("%s not applied: %s", unit, reason, extra={"unit": str(unit)})
        if result.plan.failed:
            m.errors.labels("invalid").inc(len(result.plan.failed))
        for unit, reason in result.plan.skipped:
            log.info("%s skipped: %s", unit, reason, extra={"unit": str(unit)})
        m.units.labels("failed").set(len(result.plan.failed))
        m.units.labels("pinned").set(len(result.plan.skipped))
        m.units.labels("drifted").set(len(drifted))
        m.set_commit(head[:12])
        m.reconciles.labels("success").inc()
        m.last_success.set(time.time())
        log.info("reconciled %s in %.3fs: %d deploy(s), %d unit(s) examined", head[:12],
                 elapsed, len(result.deploys), result.units_examined)

    def _failed(self, exc: Exception) -> None:
        self.last_error = str(exc)
        self.last_ok = False
        self.metrics.reconciles.labels("error").inc()
        if isinstance(exc, GitError):
            self.git_ok = False
            self.metrics.errors.labels("git").inc()
        elif isinstance(exc, EtcdError):
            self.etcd_ok = False
            self._watch_broken = True
            self.metrics.errors.labels("etcd").inc()
        else:
            self.metrics.errors.labels("internal").inc()

    # -- readiness ------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        leading = bool(self.leader and self.leader.leading)
        detail: dict[str, Any] = {"leader": leading, "etcd": self.etcd_ok, "git": self.git_ok,
                                  "first_reconcile": self.first_done,
                                  "last_error": self.last_error, "identity": self.identity}
        if not self.etcd_ok:
            return False, {**detail, "status": "etcd unreachable"}
        if leading:
            if not self.git_ok:
                return False, {**detail, "status": "git source failing"}
            if not self.first_done:
                return False, {**detail, "status": "first reconcile not finished"}
            return True, {**detail, "status": "leader"}
        return True, {**detail, "status": "standby"}


def run_daemon(cfg: DaemonConfig, log_format: str = "text") -> int:
    setup_logging(log_format)
    return Daemon(cfg).run()


