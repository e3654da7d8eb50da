"""`plan(desired, live) -> Plan`: the one pure function behind diff, apply, status, rollback
and every daemon cycle. No I/O; the caller decides which units to look at.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from .model import JSON, Change, DesiredUnit, LiveKey, LiveUnit, Plan, UnitId, UnitPlan
from .schema import is_secret


class _NotEnvelope:
    """Stands for a live value that is not a gitconf envelope: never equal to a desired one."""

    def __repr__(self) -> str:
        return "<not a gitconf envelope>"


NOT_ENVELOPE = _NotEnvelope()


def canon(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same(a: JSON, b: JSON) -> bool:
    """JSON equality: `1`, `1.0` and `true` are three different values (Python says equal)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, list)):
        return canon(a) == canon(b)
    return bool(a == b)


def plan_unit(unit: UnitId, desired: DesiredUnit | None, live: LiveUnit,
              prune: bool = True) -> list[Change]:
    """Adds, changes and deletes that make the live unit equal to the desired one."""
    secrets = desired.secret_keys if desired else frozenset()
    # a key leaving Git has no schema left to say it is secret: the unit record remembers
    was_secret = frozenset((live.record or {}).get("secret_keys", ()))
    live_keys = live.keys
    changes: list[Change] = []
    wanted = desired.values if desired else {}
    for key, value in wanted.items():
        current = live_keys.get(key)
        if current is None:
            changes.append(Change(key, "add", None, value, is_secret(secrets, key)))
        elif not same(current.value, value):
            changes.append(Change(key, "change", _shown(current), value,
                                  is_secret(secrets, key)))
    if prune:
        for key, current in live_keys.items():
            if key not in wanted:
                secret = is_secret(secrets, key) or is_secret(was_secret, key)
                changes.append(Change(key, "delete", _shown(current), None, secret))
    changes.sort(key=lambda c: c.key)
    return changes


def _shown(current: LiveKey) -> JSON:
    """The live value as a change shows it: a foreign non-envelope write as its text."""
    if current.value is NOT_ENVELOPE:
        return current.raw.decode("utf-8", "replace")
    return current.value


@dataclass
class PlanOptions:
    prune: bool = True
    respect_pins: bool = True
    lifted_pins: Collection[UnitId] = field(default_factory=frozenset)
    force: Collection[UnitId] = field(default_factory=frozenset)  # plan even if pinned
    source: str = "git"


def plan(units: Iterable[UnitId], desired: Mapping[UnitId, DesiredUnit | None],
         live: Mapping[UnitId, LiveUnit], options: PlanOptions | None = None) -> Plan:
    """Plan each unit: invalid desired units fail, pinned units are skipped (unless the pin
    was lifted by a newer commit), the rest get their list of changes."""
    options = options or PlanOptions()
    result = Plan(units=[])
    for unit in sorted(set(units)):
        d = desired.get(unit)
        lv = live.get(unit) or LiveUnit(unit, {})
        if d is not None and not d.valid:
            first = next(p for p in d.problems if p.severity == "error")
            result.failed.append((unit, f"invalid: {first.file}:{first.line}:{first.column} "
                                        f"{first.code}: {first.message}"))
            continue
        if (options.respect_pins and lv.pin is not None and unit not in options.lifted_pins
                and unit not in options.force):
            pin = lv.pin
            reason = pin.get("reason") or "no reason given"
            result.skipped.append((unit, f"pinned to {str(pin.get('commit', '?'))[:12]} by "
                                         f"{pin.get('by', '?')}: {reason}"))
            continue
        if d is None and lv.record is None and lv.pending is None:
            continue  # not gitconf's: keys no deploy of ours wrote are left alone, never pruned
        pending = lv.pending or {}
        if pending.get("source") == "rollback" and options.source != "rollback":
            commit = str(pending.get("commit", "?"))[:12]
            result.skipped.append((unit, f"an interrupted rollback to {commit} is pending; run "
                                         f"`gitconf rollback {commit} --service {unit.service} "
                                         f"--env {unit.environment}` to finish it"))
            continue
        changes = plan_unit(unit, d, lv, options.prune)
        if changes or lv.pending is not None:
            result.units.append(UnitPlan(unit, changes, d, lv))
    return result


def drifted_keys(live: LiveUnit) -> list[str]:
    """Keys changed in etcd since gitconf's last deploy of the unit (its record's revision)."""
    if live.record is None:
        return []
    since = live.record_revision
    return sorted(k for k, v in live.keys.items() if v.mod_revision > since)
