"""What the daemon tells about each cycle: log lines, metrics, and the health it reports on
`/readyz`. Values are never logged: keys are, and secrets are masked like everywhere."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..reconcile import Result
from .metrics import Metrics

log = logging.getLogger("gitconf.daemon")


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


def report(result: Result, head: str, elapsed: float, m: Metrics, health: Health) -> None:
    """One line per deploy, per drift newly seen, per failed or skipped unit; then metrics."""
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
        if str(up.unit) not in health.reported:
            m.drift.labels("reported").inc()
            log.warning("drift in %s left in place (policy): %s", up.unit,
                        ", ".join(c.key for c in up.changes[:10]), extra={"unit": str(up.unit)})
    health.reported = drifted
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
