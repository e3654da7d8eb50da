"""`gitconf status`: every unit's state, from the same pass that apply would run (a full dry
run whose observer turns each unit's verdict into a row; no plan is kept)."""

from __future__ import annotations

from typing import Any

from .fastclass import dataclass
from .model import UnitId, UnitPlan, UnitState
from .plan import drifted_keys
from .reconcile import Reconciler, Request
from .records import Pin


@dataclass
class UnitStatus:
    unit: UnitId
    state: UnitState
    deployed_commit: str | None
    desired_commit: str
    pin: Pin | None
    changes: int
    drifted: list[str]
    reason: str | None = None
    deploy: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"service": self.unit.service, "environment": self.unit.environment,
                "state": self.state, "deployed_commit": self.deployed_commit,
                "desired_commit": self.desired_commit,
                "pin": self.pin.shown() if self.pin else None, "changes": self.changes,
                "drifted_keys": self.drifted, "deploy": self.deploy, "reason": self.reason}


def state_of(up: UnitPlan) -> UnitState:
    """The state `status` shows for one planned unit (SPEC §7)."""
    if up.verdict == "pinned":
        return "pinned"
    if up.verdict == "failed":
        return "failed"
    if up.live.override is not None:
        return "overridden"
    if up.verdict in ("in-sync", "untracked"):
        return "in-sync"
    if drifted_keys(up.live):
        return "drifted"
    return "out-of-sync"


def unit_status(rec: Reconciler, ref: str = "HEAD") -> tuple[str, list[UnitStatus]]:
    rows: list[UnitStatus] = []
    target = rec.source.resolve(ref)

    def observe(up: UnitPlan, drift: bool) -> None:
        if up.verdict == "untracked":
            return  # keys under the prefix that gitconf never deployed: not a unit of ours
        record = up.live.record
        rows.append(UnitStatus(up.unit, state_of(up), record.commit if record else None, target,
                               up.live.pin, len(up.changes), drifted_keys(up.live), up.reason,
                               record.deploy if record else None))

    rec.run(Request(ref=target, full=True, dry_run=True, observe=observe, drift_policy="report"))
    rows.sort(key=lambda r: r.unit)
    return target, rows
