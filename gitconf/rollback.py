"""Rollback and pins: restore units to exactly what a commit had, and keep apply and the daemon
from undoing it until someone unpins or a newer commit changes the unit.

A rollback is the same reconcile pass as apply, run against the older commit for an exact set
of units, with `source: rollback` and a pin written in each unit's closing transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .errors import CheckFailed, UsageError
from .model import UnitId
from .reconcile import Reconciler, Request, Result, default_actor, now_iso, units_touched
from .records import dumps, loads
from .repo_format import read_layout


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
    then = {UnitId(s.name, e) for s in at_target.services.values() for e in s.envs}
    now = {UnitId(s.name, e) for s in at_head.services.values() for e in s.envs}
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


def pin_record(commit: str, head: str, actor: str, reason: str | None) -> dict[str, Any]:
    return {"commit": commit, "by": actor, "at": now_iso(), "reason": reason,
            "branch_head": head}


def rollback(rec: Reconciler, target: RollbackTarget, actor: str | None, reason: str | None,
             dry_run: bool = False, max_ops: int = 128, max_bytes: int = 1_572_864) -> Result:
    """Plan (and unless `dry_run`, execute) the rollback; refuses every unit if one is invalid
    at the commit, so an on-call engineer never gets half a rollback."""
    who = default_actor(actor)
    why = reason or f"rollback to {target.commit[:12]}"
    pins = {u: pin_record(target.commit, target.head, who, why) for u in target.units}
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
            set_pin(rec, unit, pins[unit], only_if_different=True)
    return result


def set_pin(rec: Reconciler, unit: UnitId, pin: dict[str, Any],
            only_if_different: bool = False) -> bool:
    key = rec.keys.pin(unit)
    current = rec.store.get(key)
    if only_if_different and current is not None:
        try:
            if loads(current.value).get("commit") == pin["commit"]:
                return False
        except ValueError:
            pass
    res = rec.store.txn([rec.store.cmp_mod(key, current.mod_revision if current else 0)],
                        [rec.store.op_put(key, dumps(pin).encode())])
    if not res.succeeded:
        raise CheckFailed(f"{unit}: its pin changed while gitconf was writing it; try again")
    return True


def unpin(rec: Reconciler, unit: UnitId) -> dict[str, Any]:
    key = rec.keys.pin(unit)
    current = rec.store.get(key)
    if current is None:
        raise CheckFailed(f"{unit} is not pinned")
    res = rec.store.txn([rec.store.cmp_mod(key, current.mod_revision)],
                        [rec.store.op_delete(key)])
    if not res.succeeded:
        raise CheckFailed(f"{unit}: its pin changed while gitconf was removing it; try again")
    pin: dict[str, Any] = loads(current.value)
    return pin


def previous_commit(rec: Reconciler, unit: UnitId) -> str:
    """What the unit ran before its last deploy: the commit of the deploy before it."""
    kvs, _ = rec.store.scan(rec.keys.history_prefix(unit))
    if not kvs:
        raise CheckFailed(f"{unit} has no deploys")
    if len(kvs) < 2:
        raise CheckFailed(f"{unit} has only one deploy (#1): there is nothing before it")
    record = loads(kvs[-2].value)
    commit = record.get("commit")
    if not commit:
        raise UsageError(f"{unit}: deploy #{record.get('deploy')} has no commit")
    return str(commit)
