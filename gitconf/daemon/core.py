"""The reconcile loop: one `Reconciler.run()` per cycle, woken by the poll interval, a GitHub
push, file events of a local repository, or a write to etcd by someone else. Only the leader
applies.

A standby that receives the webhook relays it through a key every replica watches; the leader
acts on it directly.

A cycle where the branch did not move and nobody else wrote to etcd does no Git or etcd work
beyond one `rev-parse` (and a fetch on the poll for a URL); a cycle after a small commit reads
only the units that commit changed.

What is wrong in the configuration stops the daemon at start, with one line and exit status 2:
the listen address is taken, the repository does not exist, the branch is not in it, etcd
refuses the credentials. What may come right by itself (etcd or a remote not reachable yet, a
branch deleted later, any error once the daemon has worked) is retried with backoff.
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
from typing import Any

from .. import __version__
from ..errors import EtcdError, GitError, UsageError
from ..etcdstore import EtcdConfig, connect
from ..fastclass import dataclass
from ..followup import settings_at
from ..gitsource import URL_RE, GitSource, redact
from ..model import UnitId
from ..reconcile import DRIFT_POLICIES, Reconciler, Request
from ..records import Keys, RecordError, TriggerRecord
from ..store import EtcdAuthFailed, EtcdPermissionDenied, Store
from .http import Endpoints, Server, make_server, parse_listen, serve, shown_url
from .leader import LeaderElection
from .logs import end_streaks, setup_logging
from .metrics import Metrics
from .overrides import OverrideUpkeep
from .reporting import TRIGGERS, Cycle, Health, Outage, log_startup, report, shown_duration
from .triggers import EtcdWatch, FileWatch, Wakeup

log = logging.getLogger("gitconf.daemon")
UNKNOWN_POLICY = "from .gitconf.yaml"
# what git says when the repository will not appear by waiting (the rest may be the network)
_FOR_GOOD = ("not found", "does not appear to be a git repository", "not a git repository",
             "no such repository", "authentication failed", "could not read username",
             "could not read password", "terminal prompts disabled", "permission denied",
             "invalid username or password", "repository not exported",
             "returned error: 401", "returned error: 403", "returned error: 404")


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
    max_connections: int = 64  # HTTP connections served at once
    request_deadline: float = 10.0  # seconds for one HTTP request and its answer


class BranchNotFound(GitError):
    pass


class Causes:
    """What woke the loop since the last cycle (the `trigger` its log lines name), and the
    loop's sleep, which any trigger cuts short."""

    def __init__(self, wakeup: Wakeup, stop: threading.Event):
        self.wakeup, self.stop = wakeup, stop
        self._lock = threading.Lock()
        self._seen = {"start"}

    def add(self, cause: str) -> None:
        with self._lock:
            self._seen.add(cause)

    def take(self, fallback: str) -> str:
        with self._lock:
            seen, self._seen = self._seen, set()
        return next((c for c in TRIGGERS if c in seen), fallback)

    def sleep(self, timeout: float, cause: str, fetch: bool) -> None:
        """Until a trigger, a stop, or `timeout` (then `cause` woke the loop: the poll, or
        the retry after a failure; `fetch` forces a fetch of the remote)."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                if fetch:
                    self.wakeup.force = True
                self.add(cause)
                return
            if self.wakeup.event.wait(min(left, 0.5)):
                self.wakeup.event.clear()
                return


class Policy:
    """The drift policy `.gitconf.yaml` sets at the branch head, read once per head (from the
    reconciler's layout when it has it) for the log lines; a change is logged."""

    def __init__(self, worktree: bool):
        self.worktree = worktree
        self.head: str | None = None
        self.value = UNKNOWN_POLICY

    def at(self, source: GitSource, head: str, reconciler: Reconciler | None) -> str:
        if head == self.head:
            return self.value
        try:
            if reconciler is not None and not self.worktree:
                settings = reconciler.layouts.at(head, source.tree(head)).settings
            else:
                settings = settings_at(source, head)
            value = str(settings.get("drift", "pr"))
            policy = value if value in DRIFT_POLICIES else UNKNOWN_POLICY
        except Exception:  # the cycle reports what is wrong with the repository
            policy = UNKNOWN_POLICY
        if self.head is not None and policy != self.value:
            log.info("drift policy now %s (.gitconf.yaml at %s)", policy, head[:12])
        self.head, self.value = head, policy
        return policy


def fatal(exc: Exception, worked: set[str], repo: str, source: GitSource | None) -> bool:
    """Whether `exc` stops the daemon: a usage error always; a configuration error of Git or
    etcd until that side has worked once (after that, it may be a rotation under way)."""
    if isinstance(exc, UsageError):
        return True
    if isinstance(exc, BranchNotFound):
        return "branch" not in worked
    if isinstance(exc, (EtcdAuthFailed, EtcdPermissionDenied)):
        return "etcd" not in worked
    if isinstance(exc, GitError) and source is None:  # opening the repository failed
        text = str(exc).lower()
        return not URL_RE.match(repo) or any(s in text for s in _FOR_GOOD)
    return False


class Relay:
    """Webhooks received by this replica: acted on here, and relayed through `_system/trigger`
    to the leader when this replica is a standby."""

    def __init__(self, d: Daemon):
        self.d = d

    def push(self, after: str) -> None:
        """A verified push: tell every replica through etcd (the leader may be another one)."""
        log.info("webhook: push to %s (%s)", self.d.cfg.branch, after[:12])
        self.d.causes.add("webhook")
        self.d.wakeup.wake(force=True)
        self._relay(TriggerRecord(after, time.time(), self.d.identity), "push")

    def pull_request(self, number: int, delivery: str) -> None:
        """A verified `pull_request` webhook (closed or merged): look at overrides now, on
        whichever replica leads."""
        log.info("webhook: pull request #%d changed (delivery %s)", number, delivery)
        if self.d.passes.upkeep_ is not None:
            self.d.passes.upkeep_.poke(number)
        self.d.causes.add("webhook")
        self.d.wakeup.wake()
        self._relay(TriggerRecord("", time.time(), self.d.identity, "pull_request", number,
                                  delivery), "pull request")

    def relayed(self, value: bytes) -> None:
        """A webhook relayed by another replica (called by the watch with its lock held: set
        flags only)."""
        try:
            record = TriggerRecord.from_json(value)
        except RecordError:
            record = None
        upkeep = self.d.passes.upkeep_
        if record is not None and record.kind == "pull_request" and upkeep is not None:
            upkeep.poke(record.number)
        self.d.causes.add("webhook")
        self.d.wakeup.force = True

    def _relay(self, record: TriggerRecord, what: str) -> None:
        d = self.d
        if d.store is not None and not (d.leader and d.leader.leading):
            try:
                d.store.put(d.keys.trigger, record.to_json())
            except EtcdError as exc:
                log.warning("webhook: could not relay the %s through etcd: %s", what, exc)


class Passes:
    """The leader's reconcile passes, with the reconciler and the override upkeep they keep
    from one pass to the next."""

    def __init__(self, d: Daemon):
        self.d = d
        self.reconciler: Reconciler | None = None
        self.upkeep_: OverrideUpkeep | None = None

    def upkeep(self) -> OverrideUpkeep:
        d = self.d
        assert d.source is not None and d.store is not None
        if self.upkeep_ is None or self.upkeep_.store is not d.store:
            self.upkeep_ = OverrideUpkeep(d.source, d.store, d.keys, d.cfg.branch, d.metrics)
        return self.upkeep_

    def run(self, head: str, trigger: str, units: set[UnitId] | None = None) -> None:
        d = self.d
        assert d.source is not None and d.store is not None and d.leader is not None
        assert d.watch is not None
        fence = d.leader.fence()
        if fence is None:
            return
        started = time.perf_counter()
        upkeep = self.upkeep()
        req = Request(ref=head, actor=d.actor, drift_policy=None, cancel=d.stop, fence=fence,
                      worktree=d.cfg.worktree, max_ops=d.cfg.max_ops, units=units,
                      pull_request_state=upkeep.pull_requests(head).state,
                      witness=d.watch.witness())
        if self.reconciler is None or self.reconciler.store is not d.store:
            self.settle()
            self.reconciler = Reconciler(d.source, d.store, d.keys)
            self.reconciler.defer_previous = True  # settled by the next cycle (`settle`)
        result = self.reconciler.run(req)
        d.wakeup.record_own(result.own_revisions, d.watch.watched_from)
        d.watch.forget(result.mark, result.own_revisions)
        elapsed = time.perf_counter() - started
        policy = d.policy.at(d.source, head, self.reconciler)
        report(result, Cycle(head, trigger, policy, elapsed), d.metrics, d.health)
        if units is None:  # after the report: once /readyz says so, the pass's lines are out
            d.health.succeeded(head, result)
        d.metrics.cycle("success", elapsed)
        upkeep.after(result, head)

    def settle(self) -> None:
        """Wait for the last pass's `last-applied` write (`Reconciler.settle`). When it
        failed, the head counts as not applied: the next cycle runs a pass again instead of
        skipping it as idle, as when the write failed inside the pass."""
        if self.reconciler is None:
            return
        try:
            self.reconciler.settle()
        except Exception:
            self.d.health.last_ok = False
            raise


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.keys = Keys(cfg.prefix)
        self.metrics = Metrics()
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.actor = cfg.actor or f"gitconf-daemon@{socket.gethostname()}"
        self.stop = threading.Event()
        self.wakeup = Wakeup()
        self.causes = Causes(self.wakeup, self.stop)
        self.relay = Relay(self)
        self.source: GitSource | None = None
        self.store: Store | None = None
        self.leader: LeaderElection | None = None
        self.watch: EtcdWatch | None = None
        self.files: FileWatch | None = None
        self.passes = Passes(self)
        self.health = Health()
        self.outage = Outage(self.metrics, self.health)
        self.worked: set[str] = set()  # "branch", "etcd": sides that have worked once
        self.policy = Policy(cfg.worktree)
        self.port = 0
        self._started = time.perf_counter()  # of the loop's current attempt
        self._announced = False

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        host, port = parse_listen(self.cfg.listen)
        server = make_server(host, port, Endpoints(
            self.ready, self.metrics.render, self.cfg.branch, self.cfg.webhook_secret,
            self.relay.push, lambda: self.metrics.errors.labels("webhook").inc(),
            self.relay.pull_request), self.cfg.max_connections, self.cfg.request_deadline)
        self.port = server.server_address[1]
        serve(server)
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            failure = self._preflight()
            self._announce(server)
            self._loop(failure)
        finally:
            self._shutdown(server)
        return 0

    def _preflight(self) -> Exception | None:
        """Open the repository and etcd before anything is logged: a configuration error
        raises (one line, exit 2); the first error that may pass is returned, for the loop."""
        failure: Exception | None = None
        for step in (self._open_source, self._open_store):
            try:
                step()
            except Exception as exc:
                if fatal(exc, self.worked, self.cfg.repo, self.source):
                    raise
                failure = failure or exc
        return failure

    def _announce(self, server: Server) -> None:
        log_startup({"version": __version__, "repo": self._shown_repo(),
                     "branch": self.cfg.branch, "etcd": EtcdConfig.from_env(
                         self.cfg.etcd).describe(), "prefix": self.cfg.prefix,
                     "interval": shown_duration(self.cfg.interval),
                     "drift": self.policy.value,
                     "webhook": "on" if self.cfg.webhook_secret else "off",
                     "listen": shown_url(server.server_address), "identity": self.identity})
        self._announced = True

    def _loop(self, failure: Exception | None) -> None:
        backoff = 0.0
        while not self.stop.is_set():
            if failure is None:
                failure = self._attempt()
            if failure is None:
                backoff, timeout, cause = 0.0, self.cfg.interval, "poll"
            else:
                if fatal(failure, self.worked, self.cfg.repo, self.source):
                    raise failure
                backoff = min(self.cfg.max_backoff, max(0.5, backoff * 2 or 0.5))
                timeout = backoff * (0.5 + random.random() / 2)  # jittered
                self.outage.failed(failure, timeout, time.perf_counter() - self._started)
                if isinstance(failure, EtcdError) and self.watch is not None:
                    self.watch.broken = True
                failure, cause = None, "retry"
            self.causes.sleep(timeout, cause, self.source is not None and bool(self.source.url))

    def _attempt(self) -> Exception | None:
        self._started = time.perf_counter()
        try:
            self._setup()
            if self.leader is not None and self.leader.leading:
                self._maybe_cycle()
        except Exception as exc:  # a daemon survives what it did not foresee too
            return exc
        self.outage.succeeded()
        return None

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current transaction", signum)
        self.stop.set()
        self.wakeup.wake()

    def _shutdown(self, server: Server) -> None:
        if self.files is not None:
            self.files.stop()
        if self.leader is not None:
            self.leader.resign()
        if self.store is not None:
            try:
                self.passes.settle()
            except Exception as exc:  # the next start looks at what it would have remembered
                log.warning("the last pass's record was not written: %s", exc)
            if self.watch is not None:
                self.watch.stop()
            self.store.close()
        if self.source is not None:
            self.source.close()
        server.shutdown()
        server.server_close()
        if self._announced:
            end_streaks()
            log.info("stopped")

    def _shown_repo(self) -> str:
        return self.source.describe() if self.source else redact(self.cfg.repo)

    # -- setup (retried until it works) ---------------------------------------------------

    def _setup(self) -> None:
        self._open_source()
        self._open_store()
        assert self.store is not None
        if self.leader is None:
            self.leader = LeaderElection(self.store, self.keys.leader, self.identity,
                                         self.cfg.lease_ttl, self._on_leader, self._on_etcd)
            self.leader.start()
        if self.watch is None:
            self.watch = EtcdWatch(self.store, self.keys, self.wakeup, self.relay.relayed)
        if self.watch.broken:
            self.watch.start()

    def _open_source(self) -> None:
        if self.source is None:
            self.source = GitSource.open(self.cfg.repo)
            if self.cfg.worktree and self.source.work_tree is None:
                raise UsageError("--worktree needs a working tree, not a bare repository")
            self.source.keep_reading()  # one cat-file for every cycle, stopped by _shutdown
        if "branch" not in self.worked:
            head = self._head()
            self.worked.add("branch")
            self.policy.at(self.source, head, None)
        if self.source.url is None and self.files is None:
            self.files = FileWatch(self.source, self.cfg.worktree, self.wakeup)
            self.files.start()

    def _open_store(self) -> None:
        if self.store is None:
            store = connect(self.cfg.etcd)
            try:
                store.revision(within=self.keys.root_b)
            except BaseException:
                store.close()
                raise
            self.store = store
            self.health.etcd_ok = True
            self.worked.add("etcd")

    def _head(self) -> str:
        assert self.source is not None
        head = self.source.branch_head(self.cfg.branch)
        if head is None:
            raise BranchNotFound(f"branch {self.cfg.branch!r} not found in "
                                 f"{self.source.describe()}")
        return head

    def _on_leader(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.health.first_done = False
            self.causes.add("start")
        self.wakeup.wake(force=leading)

    def _on_etcd(self, ok: bool) -> None:
        self.health.etcd_ok = ok

    # -- the cycle ------------------------------------------------------------------------

    def _maybe_cycle(self) -> None:
        assert self.source is not None and self.watch is not None
        started = time.perf_counter()
        self.passes.settle()
        forced = self.wakeup.take_force()
        if forced and self.source.url:
            try:
                self.source.fetch()
            except GitError:
                self.wakeup.force = True
                raise
        head = self._head()
        self.health.git_ok = True
        foreign = self.wakeup.take_foreign()
        if foreign:
            self.causes.add("etcd")
        trigger = self.causes.take("file" if self.source.url is None else "etcd")
        h = self.health
        resync = self.watch.resync  # the watch restarted: writes may have been missed
        idle = (h.first_done and h.last_ok and head == h.last_head and not foreign
                and not self.watch.broken and not resync
                and not (forced and self.cfg.worktree))
        due = self.passes.upkeep().due(head) if h.first_done else set()
        if due:
            self.passes.run(head, "override", due)  # overrides that ended: their units, now
        if idle:
            self.metrics.cycle("idle", time.perf_counter() - started)
            return
        self.passes.run(head, trigger)
        if resync:
            self.watch.resync = False

    # -- readiness ------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return self.health.ready(bool(self.leader and self.leader.leading), self.identity)


def run_daemon(cfg: DaemonConfig, log_format: str = "text") -> int:
    setup_logging(log_format)
    return Daemon(cfg).run()
