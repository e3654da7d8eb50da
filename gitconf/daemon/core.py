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
from ..etcdstore import connect
from ..gitsource import GitSource, redact
from ..model import UnitId
from ..reconcile import Reconciler, Request
from ..records import Keys, RecordError, TriggerRecord
from ..store import Store
from .http import Endpoints, make_server, serve
from .leader import LeaderElection
from .logs import setup_logging
from .metrics import Metrics
from .overrides import OverrideUpkeep
from .reporting import Health, report
from .triggers import EtcdWatch, FileWatch, Wakeup

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


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.keys = Keys(cfg.prefix)
        self.metrics = Metrics()
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = cfg.actor or f"gitconf-daemon@{socket.gethostname()}"
        self.stop = threading.Event()
        self.wakeup = Wakeup()
        self.source: GitSource | None = None
        self.store: Store | None = None
        self.leader: LeaderElection | None = None
        self.reconciler: Reconciler | None = None
        self.watch: EtcdWatch | None = None
        self.files: FileWatch | None = None
        self.upkeep: OverrideUpkeep | None = None
        self.health = Health()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        host, _, port = self.cfg.listen.rpartition(":")
        server = make_server(host or "127.0.0.1", int(port), Endpoints(
            self.ready, self.metrics.render, self.cfg.branch, self.cfg.webhook_secret,
            self._on_push, lambda: self.metrics.errors.labels("webhook").inc(),
            self._on_pull_request))
        self.port = server.server_address[1]
        serve(server)
        log.info("listening on http://%s:%d", host or "127.0.0.1", self.port,
                 extra={"identity": self.identity, "repo": self._shown_repo()})
        try:
            self._loop()
        finally:
            self._shutdown(server)
        return 0

    def _loop(self) -> None:
        backoff = 0.0
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

    def _sleep(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                if self.source is not None and self.source.url:
                    self.wakeup.force = True  # the poll: fetch the remote
                return
            if self.wakeup.event.wait(min(left, 0.5)):
                self.wakeup.event.clear()
                return

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current transaction", signum)
        self.stop.set()
        self.wakeup.wake()

    def _shutdown(self, server: Any) -> None:
        if self.files is not None:
            self.files.stop()
        if self.leader is not None:
            self.leader.resign()
        if self.store is not None:
            if self.watch is not None:
                self.watch.stop()
            self.store.close()
        server.shutdown()
        log.info("stopped")

    def _shown_repo(self) -> str:
        return self.source.describe() if self.source else redact(self.cfg.repo)

    # -- setup (retried until it works) ---------------------------------------------------

    def _setup(self) -> None:
        if self.source is None:
            self.source = GitSource.open(self.cfg.repo)
            if self.source.url is None:
                self.files = FileWatch(self.source, self.cfg.worktree, self.wakeup)
                self.files.start()
        if self.store is None:
            self.store = connect(self.cfg.etcd)
            self.store.revision(within=self.keys.root_b)
            self.health.etcd_ok = True
        if self.leader is None:
            self.leader = LeaderElection(self.store, self.keys.leader, self.identity,
                                         self.cfg.lease_ttl, self._on_leader, self._on_etcd)
            self.leader.start()
        if self.watch is None:
            self.watch = EtcdWatch(self.store, self.keys, self.wakeup, self._on_trigger)
        if self.watch.broken:
            self.watch.start()

    def _on_leader(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.health.first_done = False
        self.wakeup.wake(force=leading)

    def _on_etcd(self, ok: bool) -> None:
        self.health.etcd_ok = ok

    # -- triggers -------------------------------------------------------------------------

    def _on_push(self, after: str) -> None:
        """A verified push: tell every replica through etcd (the leader may be another one)."""
        log.info("webhook: push to %s (%s)", self.cfg.branch, after[:12])
        self.wakeup.wake(force=True)
        if self.store is not None and not (self.leader and self.leader.leading):
            try:
                self.store.put(self.keys.trigger,
                               TriggerRecord(after, time.time(), self.identity).to_json())
            except EtcdError as exc:
                log.warning("webhook: could not relay the push through etcd: %s", exc)

    def _on_trigger(self, value: bytes) -> None:
        """A webhook relayed through `_system/trigger` by another replica (called by the watch
        with its lock held: set flags only)."""
        try:
            relayed = TriggerRecord.from_json(value)
        except RecordError:
            relayed = None
        if relayed is not None and relayed.kind == "pull_request" and self.upkeep is not None:
            self.upkeep.poke(relayed.number)
        self.wakeup.force = True

    def _on_pull_request(self, number: int, delivery: str) -> None:
        """A verified `pull_request` webhook (closed or merged): look at overrides now, on
        whichever replica leads."""
        log.info("webhook: pull request #%d changed (delivery %s)", number, delivery)
        if self.upkeep is not None:
            self.upkeep.poke(number)
        self.wakeup.wake()
        if self.store is not None and not (self.leader and self.leader.leading):
            try:
                self.store.put(self.keys.trigger, TriggerRecord(
                    "", time.time(), self.identity, "pull_request", number, delivery).to_json())
            except EtcdError as exc:
                log.warning("webhook: could not relay the pull request through etcd: %s", exc)

    # -- the cycle ------------------------------------------------------------------------

    def _maybe_cycle(self) -> None:
        assert self.source is not None and self.watch is not None
        forced = self.wakeup.take_force()
        if forced and self.source.url:
            try:
                self.source.fetch()
            except GitError:
                self.wakeup.force = True
                raise
        head = self.source.branch_head(self.cfg.branch)
        if head is None:
            raise GitError(f"branch {self.cfg.branch!r} not found in {self.source.describe()}")
        self.health.git_ok = True
        foreign = self.wakeup.take_foreign()
        h = self.health
        idle = (h.first_done and h.last_ok and head == h.last_head and not foreign
                and not self.watch.broken and not (forced and self.cfg.worktree))
        due = self._upkeep().due(head) if h.first_done else set()
        if due:
            self._cycle(head, due)  # overrides that ended: their units, now
        if idle:
            self.metrics.reconciles.labels("idle").inc()
            return
        self._cycle(head)

    def _upkeep(self) -> OverrideUpkeep:
        assert self.source is not None and self.store is not None
        if self.upkeep is None or self.upkeep.store is not self.store:
            self.upkeep = OverrideUpkeep(self.source, self.store, self.keys, self.cfg.branch,
                                         self.metrics)
        return self.upkeep

    def _cycle(self, head: str, units: set[UnitId] | None = None) -> None:
        assert self.source is not None and self.store is not None and self.leader is not None
        assert self.watch is not None
        fence = self.leader.fence()
        if fence is None:
            return
        started = time.perf_counter()
        upkeep = self._upkeep()
        req = Request(ref=head, actor=self.actor, drift_policy=None, cancel=self.stop,
                      fence=fence, worktree=self.cfg.worktree, max_ops=self.cfg.max_ops,
                      units=units, pull_request_state=upkeep.pull_requests(head).state)
        if self.reconciler is None or self.reconciler.store is not self.store:
            self.reconciler = Reconciler(self.source, self.store, self.keys)
        try:
            result = self.reconciler.run(req)
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self.wakeup.record_own(result.own_revisions, self.watch.watched_from)
        if units is None:
            self.health.succeeded(head, result)
        report(result, head, time.perf_counter() - started, self.metrics, self.health)
        upkeep.after(result, head)

    def _failed(self, exc: Exception) -> None:
        self.health.last_error = str(exc)
        self.health.last_ok = False
        self.metrics.reconciles.labels("error").inc()
        if isinstance(exc, GitError):
            self.health.git_ok = False
            self.metrics.errors.labels("git").inc()
        elif isinstance(exc, EtcdError):
            self.health.etcd_ok = False
            if self.watch is not None:
                self.watch.broken = True
            self.metrics.errors.labels("etcd").inc()
        else:
            self.metrics.errors.labels("internal").inc()

    # -- readiness ------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return self.health.ready(bool(self.leader and self.leader.leading), self.identity)


def run_daemon(cfg: DaemonConfig, log_format: str = "text") -> int:
    setup_logging(log_format)
    return Daemon(cfg).run()
