"""What the daemon tells: the start-up line, each cycle's log lines and metrics, failure streaks,
and the health it reports on `/readyz`. Values are never logged: keys are.

A cycle logs one line per deploy up to `MAX_LINES` deploys, then one summary line instead (the
first reconcile of a large repository deploys thousands of units); a failed unit always gets
its own line. Every deploy line says what woke the cycle (`trigger`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import field
from typing import Any

from ..errors import EtcdError, GitconfError, GitError
from ..fastclass import dataclass
from ..reconcile import Result
from .logs import end_streaks, one_line
from .metrics import Metrics

log = logging.getLogger("gitconf.daemon")
MAX_LINES = 20  # per kind of line and cycle; beyond it, one summary line
TRIGGERS = ("start", "webhook", "file", "etcd", "override", "retry", "poll")


@dataclass
class Health:
    """The daemon's view of itself, for `/readyz` and for skipping idle cycles."""

    etcd_ok: bool = False
    git_ok: bool = True
    first_done: bool = False
    last_ok: bool = False
    last_head: str | None = None
    last_error: str | None = None
    reported: set[str] = field(default_factory=set)  # units whose drift was logged already

    def succeeded(self, head: str, result: Result) -> None:
        self.etcd_ok = True
        self.last_head = head
        self.first_done = True
        self.last_error = None
        self.last_ok = result.ok and not result.cancelled

    def ready(self, leading: bool, identity: str) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"leader": leading, "etcd": self.etcd_ok, "git": self.git_ok,
                                  "first_reconcile": self.first_done,
                                  "last_error": self.last_error, "identity": identity}
        if not self.etcd_ok:
            return False, {**detail, "status": "etcd unreachable"}
        if leading:
            if not self.git_ok:
                return False, {**detail, "status": "git source failing"}
            if not self.first_done:
                return False, {**detail, "status": "first reconcile not finished"}
            return True, {**detail, "status": "leader"}
        return True, {**detail, "status": "standby"}


# -- start-up -------------------------------------------------------------------------------


def shown_duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def log_startup(fields: dict[str, Any]) -> None:
    """One line an on-call reads first: what this process follows and where it writes."""
    log.info("gitconf %s started: repo %s, branch %s, etcd %s, prefix %s, interval %s, "
             "drift policy %s, webhook %s, listening on %s", fields["version"],
             fields["repo"], fields["branch"], fields["etcd"], fields["prefix"],
             fields["interval"], fields["drift"], fields["webhook"], fields["listen"],
             extra=fields)


# -- failure streaks ------------------------------------------------------------------------


class Outage:
    """Failed iterations of the loop in a row: each error is logged once (RepeatFilter holds
    back the identical ones), metrics and health follow every one, and the first success
    after them says what came back."""

    def __init__(self, metrics: Metrics, health: Health):
        self.metrics, self.health = metrics, health
        self.failures = 0
        self.since = 0.0
        self.kinds: set[str] = set()

    def failed(self, exc: Exception, retry_in: float, seconds: float) -> str:
        kind = ("git" if isinstance(exc, GitError) else "etcd" if isinstance(exc, EtcdError)
                else "internal")
        message = one_line(exc)
        h = self.health
        h.last_error, h.last_ok = message, False
        if kind == "git":
            h.git_ok = False
        elif kind == "etcd":
            h.etcd_ok = False
        self.metrics.errors.labels(kind).inc()
        self.metrics.cycle("error", seconds)
        if not self.failures:
            self.since = time.monotonic()
        self.failures += 1
        self.kinds.add(kind)
        unexpected = not isinstance(exc, GitconfError)  # a bug: its traceback, once a streak
        log.error("%s error: %s (retrying with backoff, next in %.1fs)", kind, message,
                  retry_in, exc_info=exc if unexpected else None,
                  extra={"kind": kind, "streak": f"{kind}: {message}",
                         "retry_in": round(retry_in, 2)})
        return kind

    def succeeded(self) -> None:
        end_streaks()
        if not self.failures:
            return
        took = time.monotonic() - self.since
        tail = (f"after {self.failures} failed attempt(s) over {took:.1f}s")
        extra = {"failures": self.failures, "seconds": round(took, 3)}
        if "etcd" in self.kinds:
            log.info("etcd reachable again %s", tail, extra=extra)
        if "git" in self.kinds:
            log.info("git source working again %s", tail, extra=extra)
        if "internal" in self.kinds:
            log.info("cycle succeeded again %s", tail, extra=extra)
        self.failures, self.kinds = 0, set()


# -- one cycle ------------------------------------------------------------------------------


@dataclass
class Cycle:
    head: str
    trigger: str  # one of TRIGGERS: what woke the cycle
    policy: str  # the drift policy of `.gitconf.yaml` at head
    elapsed: float = 0.0


def report(result: Result, c: Cycle, m: Metrics, health: Health) -> None:
    """Drift, deploys, failed and skipped units, a line for the cycle; then the gauges."""
    _drift(result, c, m, health)
    _deploys(result, c)
    m.deploys.inc(len(result.deploys))
    for unit, reason in result.plan.failed:
        log.error("%s not applied: %s", unit, reason, extra={"unit": str(unit), "every": True})
    if result.plan.failed:
        m.errors.labels("invalid").inc(len(result.plan.failed))
    _lines_or_summary([(str(u), r) for u, r in result.plan.skipped], "%s skipped: %s",
                      "%d units skipped (pinned or held), among them %s", logging.INFO)
    m.units.labels("failed").set(len(result.plan.failed))
    m.units.labels("pinned").set(len(result.plan.skipped))
    m.units.labels("drifted").set(len(health.reported))
    m.set_commit(c.head[:12])
    log.info("reconciled %s in %.3fs (trigger %s): %d deploy(s), %d unit(s) examined, "
             "%d failed", c.head[:12], c.elapsed, c.trigger, len(result.deploys),
             result.units_examined, len(result.plan.failed),
             extra={"commit": c.head, "trigger": c.trigger, "deploys": len(result.deploys),
                    "seconds": round(c.elapsed, 4)})


def _deploys(result: Result, c: Cycle) -> None:
    if len(result.deploys) > MAX_LINES:
        added = sum(len(d.added) for d in result.deploys)
        changed = sum(len(d.changed) for d in result.deploys)
        deleted = sum(len(d.deleted) for d in result.deploys)
        log.info("deployed %d units at %s: +%d ~%d -%d keys in all (trigger %s); "
                 "one line per unit: gitconf history / status", len(result.deploys),
                 _at(c.head, result.commit.version), added, changed, deleted, c.trigger,
                 extra={"commit": c.head, "version": result.commit.version,
                        "trigger": c.trigger, "deploys": len(result.deploys), "added": added,
                        "changed": changed, "deleted": deleted})
        return
    for d in result.deploys:
        log.info("deployed %s #%d at %s: +%d ~%d -%d (trigger %s)", d.unit, d.deploy,
                 _at(c.head, d.version), len(d.added), len(d.changed), len(d.deleted),
                 c.trigger, extra={"unit": str(d.unit), "deploy": d.deploy, "commit": c.head,
                                   "version": d.version, "trigger": c.trigger,
                                   "added": len(d.added), "changed": len(d.changed),
                                   "deleted": len(d.deleted)})


def _at(head: str, version: str) -> str:
    """The commit, and its version when a tag names it (`abc123def456 (v1.4.0)`)."""
    return head[:12] if version == head[:12] else f"{head[:12]} ({version})"


def _drift(result: Result, c: Cycle, m: Metrics, health: Health) -> None:
    """Drift lines name the policy and the keys, never the values."""
    policy = c.policy.replace("%", "%%")
    restored = {d.unit: [*d.added, *d.changed, *d.deleted] for d in result.deploys}
    _lines_or_summary([(str(u), keys_shown(restored.get(u, ()))) for u in result.reverted],
                      f"drift in %s reverted to Git (policy {policy}): keys %s",
                      f"drift in %d units reverted to Git (policy {policy}), among them %s",
                      logging.WARNING)
    m.drift.labels("reverted").inc(len(result.reverted))
    fresh = [up for up in result.drifted if str(up.unit) not in health.reported]
    m.drift.labels("reported").inc(len(fresh))
    _lines_or_summary([(str(up.unit), keys_shown(ch.key for ch in up.changes))
                       for up in fresh],
                      f"drift in %s left in place (policy {policy}): keys %s",
                      f"drift in %d units left in place (policy {policy}), among them %s",
                      logging.WARNING)
    health.reported = {str(up.unit) for up in result.drifted}
    _lines_or_summary([(str(r.unit), f"{keys_shown(k.key for k in r.keys)} (override {r.id})")
                       for r in result.new_overrides],
                      f"drift in %s kept as an override, a pull request follows (policy "
                      f"{policy}): keys %s",
                      f"drift in %d units kept as overrides (policy {policy}), among them %s",
                      logging.WARNING)


def keys_shown(keys: Iterable[str], most: int = 10) -> str:
    names = sorted(set(keys))
    if not names:
        return "(none listed)"
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


def _lines_or_summary(items: Sequence[tuple[str, str]], line: str, summary: str,
                      level: int) -> None:
    """One line per unit up to MAX_LINES; beyond, one line naming the first few."""
    if len(items) > MAX_LINES:
        log.log(level, summary, len(items), ", ".join(u for u, _ in items[:5]) + ", …",
                extra={"units": len(items), "every": True})
        return
    for unit, detail in items:
        log.log(level, line, unit, detail, extra={"unit": unit, "every": True})
