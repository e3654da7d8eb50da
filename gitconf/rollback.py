"""Rollback and pins: restore units to exactly what a commit had, and keep apply and the daemon
from undoing it until someone unpins or a newer commit changes the unit.

A rollback is the same reconcile pass as apply, run against the older commit for an exact set
of units, with `source: rollback` and a pin written in each unit's closing transaction.
"""

from __future__ import annotations

from collections.abc import Collection

from .actor import default_actor
from .errors import CheckFailed, UsageError
from .fastclass import dataclass
from .model import UnitId
from .pins import new_pin, set_pin
from .reconcile import Reconciler, Request, Result
from .records import DeployRecord, RecordError
from .repo_format import read_layout, units_in_layout, units_touched


@dataclass
class RollbackTarget:
    commit: str
    head: str
    units: list[UnitId]
    removed: list[UnitId]  # units that did not exist at the commit: removed entirely


def resolve_units(rec: Reconciler, commit_ref: str, services: Collection[str] | None,
                  environments: Collection[str] | None, head_ref: str = "HEAD",
                  ) -> RollbackTarget:
    """The units to restore: those selected, or every unit changed since the commit."""
    target = rec.source.resolve(commit_ref)
    head = rec.source.resolve(head_ref)
    at_target = read_layout(rec.source.tree(target))
    at_head = read_layout(rec.source.tree(head))
    then = units_in_layout(at_target)
    now = units_in_layout(at_head)
    known = then | now
    if services or environments:
        units = {u for u in known if (not services or u.service in services)
                 and (not environments or u.environment in environments)}
        if not units:
            wanted = f"{'/'.join(services or ['*'])}/{'/'.join(environments or ['*'])}"
            raise CheckFailed(f"no unit {wanted} at {commit_ref} or at {head_ref}")
    else:
        units = units_touched(rec.source.changed_paths(target, head),
                              lambda svc: [u.environment for u in known if u.service == svc])
    return RollbackTarget(target, head, sorted(units), sorted(u for u in units if u not in then))


def rollback(rec: Reconciler, target: RollbackTarget, actor: str | None, reason: str | None,
             dry_run: bool = False, max_ops: int = 128, max_bytes: int = 1_572_864) -> Result:
    """Plan (and unless `dry_run`, execute) the rollback; refuses every unit if one is invalid
    at the commit, so an on-call engineer never gets half a rollback."""
    who = default_actor(actor)
    why = reason or f"rollback to {target.commit[:12]}"
    pins = {u: new_pin(target.commit, target.head, who, why) for u in target.units}
    plan_only = rec.run(Request(ref=target.commit, units=target.units, source="rollback",
                                respect_pins=False, dry_run=True, actor=who))
    if plan_only.plan.failed:
        reasons = "; ".join(f"{u}: {r}" for u, r in plan_only.plan.failed)
        raise CheckFailed(f"refusing to roll back, nothing written: {reasons}")
    if dry_run:
        return plan_only
    result = rec.run(Request(ref=target.commit, units=target.units, source="rollback",
                             respect_pins=False, actor=who, set_pins=pins,
                             max_ops=max_ops, max_bytes=max_bytes))
    deployed = {d.unit for d in result.deploys}
    for unit in target.units:  # already equal: no deploy, but it must still be pinned
        if unit not in deployed and unit not in {u for u, _ in result.plan.failed}:
            set_pin(rec.store, rec.keys, unit, pins[unit], only_if_different=True)
    return result


def previous_commit(rec: Reconciler, unit: UnitId) -> str:
    """What the unit ran before its last deploy: the commit of the deploy before it."""
    kvs, _ = rec.store.scan(rec.keys.history_prefix(unit))
    if not kvs:
        raise CheckFailed(f"{unit} has no deploys")
    if len(kvs) < 2:
        raise CheckFailed(f"{unit} has only one deploy (#1): there is nothing before it")
    try:
        record = DeployRecord.from_json(kvs[-2].value)
    except RecordError as exc:
        raise UsageError(f"{unit}: the deploy before the last cannot be read ({exc})") from None
    if not record.commit:
        raise UsageError(f"{unit}: deploy #{record.deploy} has no commit")
    return record.commit
