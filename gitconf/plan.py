"""`plan(desired, live) -> Plan`: the one pure function behind diff, apply, status, rollback
and every daemon cycle. No I/O; the caller decides which units to look at.

`plan_one` gives each unit a verdict (SPEC §4): an invalid unit fails, a pinned unit is left
alone unless a newer commit lifted its pin, a unit with an interrupted rollback waits for that
rollback, keys no deploy of ours wrote are not ours, and every other unit gets the adds,
changes and deletes that make etcd equal to Git.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import field

from .fastclass import dataclass
from .masking import Masker
from .model import (
    JSON,
    Change,
    DeploySource,
    DesiredUnit,
    LiveKey,
    LiveUnit,
    Plan,
    UnitId,
    UnitPlan,
    Verdict,
)


class _NotEnvelope:
    """Stands for a live value that is not a gitconf envelope: never equal to a desired one."""

    def __repr__(self) -> str:
        return "<not a gitconf envelope>"


NOT_ENVELOPE = _NotEnvelope()


def canon(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_equal(a: JSON, b: JSON) -> bool:
    """JSON equality: `1`, `1.0` and `true` are three different values (Python says equal)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, list)):
        return canon(a) == canon(b)
    return bool(a == b)


def unit_masker(desired: DesiredUnit | None, live: LiveUnit, show: bool = False) -> Masker:
    """Secret now (the schema) or secret at any earlier deploy (the unit record)."""
    return Masker.of(desired.secret_keys if desired else (),
                     live.record.secret_keys if live.record else (), show=show)


def held_keys(live: LiveUnit) -> frozenset[str]:
    """Keys an open override holds: apply and the daemon leave them alone."""
    return live.override.held if live.override is not None else frozenset()


def left_alone(desired: DesiredUnit | None, live: LiveUnit) -> frozenset[str]:
    """Keys another tool wrote under the unit before gitconf first deployed it, which Git does
    not have: gitconf prunes only what it wrote, so these are never deleted (the unit record
    remembers them); a key Git later gets is adopted like any other."""
    wanted = desired.values if desired else {}
    if live.record is None:
        return frozenset(k for k in live.keys if k not in wanted)
    return frozenset(k for k in live.record.foreign if k in live.keys and k not in wanted)


def plan_unit(unit: UnitId, desired: DesiredUnit | None, live: LiveUnit,
              prune: bool = True, refresh: frozenset[str] = frozenset()) -> list[Change]:
    """Adds, changes and deletes that make the live unit equal to the desired one, leaving the
    keys of an open override alone. Keys in `refresh` are rewritten even when their value is
    already right (an override Git caught up with gets Git's provenance back)."""
    secret = unit_masker(desired, live).is_secret
    held = held_keys(live)
    live_keys = live.keys
    changes: list[Change] = []
    wanted = desired.values if desired else {}
    for key, value in wanted.items():
        if key in held:
            continue
        current = live_keys.get(key)
        if current is None:
            changes.append(Change(key, "add", None, value, secret(key)))
        elif key in refresh or not json_equal(current.value, value):
            changes.append(Change(key, "change", shown_live(current), value, secret(key)))
    if prune:
        kept = left_alone(desired, live)
        for key, current in live_keys.items():
            if key not in wanted and key not in held and key not in kept:
                changes.append(Change(key, "delete", shown_live(current), None, secret(key)))
    changes.sort(key=lambda c: c.key)
    return changes


def shown_live(current: LiveKey) -> JSON:
    """The live value as a change shows it: a foreign non-envelope write as its text."""
    if current.value is NOT_ENVELOPE:
        return current.raw.decode("utf-8", "replace")
    return current.value


@dataclass(frozen=True)
class MassDeleteGuard:
    """A deploy that would delete more than `max_percent` of a unit's keys (and at least
    `min_keys` of them), or remove a whole unit that large, is refused unless allowed: an
    emptied file or a deleted service is more often a mistake than a plan."""

    max_percent: float = 50.0
    min_keys: int = 10

    def refuses(self, deletes: int, total: int) -> bool:
        return deletes >= self.min_keys and deletes * 100 > self.max_percent * max(total, 1)


@dataclass
class PlanOptions:
    prune: bool = True
    respect_pins: bool = True
    lifted_pins: Collection[UnitId] = field(default_factory=frozenset)
    source: DeploySource = "git"
    mass_delete: MassDeleteGuard | None = None  # None: allowed


def plan_one(unit: UnitId, desired: DesiredUnit | None, live: LiveUnit,
             options: PlanOptions, refresh: frozenset[str] = frozenset()) -> UnitPlan:
    """One unit's verdict and changes."""
    if desired is not None and not desired.valid:
        first = next(p for p in desired.problems if p.severity == "error")
        return UnitPlan(unit, [], desired, live, "failed",
                        f"invalid: {first.file}:{first.line}:{first.column} "
                        f"{first.code}: {first.message}")
    pin = live.pin
    if options.respect_pins and pin is not None and unit not in options.lifted_pins:
        return UnitPlan(unit, [], desired, live, "pinned",
                        f"pinned to {pin.commit[:12]} by {pin.by}: "
                        f"{pin.reason or 'no reason given'}")
    if desired is None and not live.tracked:
        # not gitconf's: keys no deploy of ours wrote are left alone, never pruned
        return UnitPlan(unit, [], None, live, "untracked")
    pending = live.pending
    if pending is not None and pending.source == "rollback" and options.source != "rollback":
        commit = pending.commit[:12]
        return UnitPlan(unit, [], desired, live, "blocked",
                        f"an interrupted rollback to {commit} is pending; run `gitconf rollback "
                        f"{commit} --service {unit.service} --env {unit.environment}` to "
                        "finish it")
    changes = plan_unit(unit, desired, live, options.prune, refresh)
    deletes = sum(c.op == "delete" for c in changes)
    guard = options.mass_delete
    if guard is not None and guard.refuses(deletes, len(live.keys)):
        what = "remove the whole unit" if desired is None else "delete"
        return UnitPlan(unit, [], desired, live, "failed",
                        f"would {what}: {deletes} of its {len(live.keys)} keys, over the "
                        f"mass-delete guard ({guard.max_percent:g}%, from {guard.min_keys} "
                        "keys); re-run with --allow-mass-delete if that is what you want")
    verdict: Verdict = "changes" if changes or pending is not None else "in-sync"
    held = tuple(sorted(held_keys(live)))
    reason = f"held by override {live.override.id}: {', '.join(held)}" \
        if live.override is not None else None
    kept = tuple(sorted(left_alone(desired, live))) if desired is not None else ()
    return UnitPlan(unit, changes, desired, live, verdict, reason, held, kept=kept)


def git_caught_up(desired: DesiredUnit | None, live: LiveUnit) -> bool:
    """Git now gives every key of the open override the value etcd holds (or, for a removed
    key, no value): the override has done its work (SPEC §5: closes as merged)."""
    if live.override is None or desired is None:
        return False
    for item in live.override.keys:
        current = live.keys.get(item.key)
        if current is None:
            if item.key in desired.values:
                return False
        elif item.key not in desired.values or not json_equal(current.value,
                                                              desired.values[item.key]):
            return False
    return True


def plan(units: Iterable[UnitId], desired: Mapping[UnitId, DesiredUnit | None],
         live: Mapping[UnitId, LiveUnit], options: PlanOptions | None = None) -> Plan:
    """Plan several units: those with something to write in `units`, the others as skipped
    (pinned, blocked) or failed with their reason."""
    options = options or PlanOptions()
    result = Plan(units=[])
    for unit in sorted(set(units)):
        up = plan_one(unit, desired.get(unit), live.get(unit) or LiveUnit(unit, {}), options)
        add_to_plan(result, up)
    return result


def add_to_plan(result: Plan, up: UnitPlan) -> None:
    """File one unit's verdict where the renderers look for it."""
    if up.verdict == "failed":
        result.failed.append((up.unit, up.reason or "failed"))
    elif up.verdict in ("pinned", "blocked"):
        result.skipped.append((up.unit, up.reason or up.verdict))
    elif up.writes:
        result.units.append(up)


def drifted_keys(live: LiveUnit) -> list[str]:
    """Keys changed in etcd since gitconf's last deploy of the unit (its record's revision),
    and keys whose value is not a gitconf envelope at all."""
    if live.record is None:
        return []
    since = live.record_revision
    return sorted(k for k, v in live.keys.items()
                  if v.mod_revision > since or v.value is NOT_ENVELOPE)


def shows_drift(live: LiveUnit) -> bool:
    """Someone other than gitconf changed the unit since its last deploy: a key written after
    the unit record, a value that is not an envelope, or fewer keys than that deploy left."""
    if live.record is None:
        return False
    return bool(drifted_keys(live)) or len(live.keys) != live.record.keys
