"""`gitconf status`: every unit's state, from the same plan that apply would execute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import LiveUnit, UnitId
from .plan import NOT_ENVELOPE, drifted_keys, plan_unit
from .reconcile import Reconciler
from .repo_format import load_desired


@dataclass
class UnitStatus:
    unit: UnitId
    state: str  # in-sync | out-of-sync | drifted | pinned | failed
    deployed_commit: str | None
    desired_commit: str
    pin: dict[str, Any] | None
    changes: int
    drifted: list[str]
    reason: str | None = None
    deploy: int | None = None

    def as_json(self) -> dict[str, Any]:
        pin = None
        if self.pin:
            pin = {k: self.pin.get(k) for k in ("commit", "by", "at", "reason")}
        return {"service": self.unit.service, "environment": self.unit.environment,
                "state": self.state, "deployed_commit": self.deployed_commit,
                "desired_commit": self.desired_commit, "pin": pin, "changes": self.changes,
                "drifted_keys": self.drifted, "deploy": self.deploy, "reason": self.reason}


def unit_status(rec: Reconciler, ref: str = "HEAD") -> tuple[str, list[UnitStatus]]:
    from .livestate import read_units

    target = rec.source.resolve(ref)
    desired = load_desired(rec.source.tree(target))
    live = read_units(rec.store, rec.keys, None).units
    out: list[UnitStatus] = []
    for unit in sorted(set(desired.units) | set(live)):
        d = desired.units.get(unit)
        lv = live.get(unit) or LiveUnit(unit, {})
        if d is None and lv.record is None and lv.pending is None:
            continue  # keys under the prefix that gitconf never deployed: not a unit of ours
        record = lv.record or {}
        deployed = record.get("commit")
        changes = plan_unit(unit, d, lv) if (d is None or d.valid) else []
        drift = drifted_keys(lv) + [k for k, v in lv.keys.items() if v.value is NOT_ENVELOPE]
        reason = None
        if lv.pin is not None:
            state = "pinned"
            reason = lv.pin.get("reason")
        elif d is not None and not d.valid:
            state = "failed"
            p = next(p for p in d.problems if p.severity == "error")
            reason = f"{p.file}:{p.line}:{p.column} {p.code}: {p.message}"
        elif not changes and lv.pending is None:
            state = "in-sync"
        elif drift:
            state = "drifted"
        else:
            state = "out-of-sync"
        out.append(UnitStatus(unit, state, deployed, target, lv.pin, len(changes),
                              sorted(set(drift)), reason, record.get("deploy")))
    return target, out
