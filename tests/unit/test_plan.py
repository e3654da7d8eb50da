"""`plan.py`: the verdicts, and the law that applying a plan to the live state gives exactly
the desired state."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gitconf.model import JSON, DesiredUnit, LiveKey, LiveUnit, Problem, UnitId
from gitconf.plan import (
    NOT_ENVELOPE,
    PlanOptions,
    drifted_keys,
    json_equal,
    plan_one,
    plan_unit,
    shows_drift,
)
from gitconf.records import DeployRecord, Pin, UnitRecord

U = UnitId("svc", "prod")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2, allow_nan=False)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                 max_size=3),
    max_leaves=6)
flat = st.dictionaries(st.sampled_from(["a", "b", "c.d", "c.e", "f"]), json_values, max_size=5)


def live_of(values: dict[str, JSON], revision: int = 1, tracked: bool = True) -> LiveUnit:
    """A unit as etcd holds it; `tracked`: gitconf deployed it before (it has a record)."""
    record = UnitRecord(1, "c", "v", "git", "t", "me", len(values)) if tracked else None
    return LiveUnit(U, {k: LiveKey(v, b"", revision, None) for k, v in values.items()}, record)


def apply(live: dict[str, JSON], desired: DesiredUnit, prune: bool = True) -> dict[str, JSON]:
    out = dict(live)
    for c in plan_unit(U, desired, live_of(live), prune):
        if c.op == "delete":
            del out[c.key]
        else:
            out[c.key] = c.new
    return out


def same_values(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)


@given(flat, flat)
def test_applying_the_plan_to_live_gives_desired(live: dict[str, JSON],
                                                 wanted: dict[str, JSON]) -> None:
    desired = DesiredUnit(U, wanted, {}, ("f",))
    assert same_values(apply(live, desired), wanted)
    # and then there is nothing left to do
    assert plan_unit(U, desired, live_of(apply(live, desired))) == []


@given(flat, flat)
def test_without_prune_only_desired_keys_are_touched(live: dict[str, JSON],
                                                     wanted: dict[str, JSON]) -> None:
    result = apply(live, DesiredUnit(U, wanted, {}, ("f",)), prune=False)
    assert same_values({k: result[k] for k in wanted}, wanted)
    assert all(json_equal(result[k], v) for k, v in live.items() if k not in wanted)


def test_verdicts() -> None:
    opts = PlanOptions()
    ok = DesiredUnit(U, {"a": 1}, {}, ("f",))
    bad = DesiredUnit(U, {}, {}, ("f",), problems=[Problem("svc/prod.yaml", 2, 3, "x", "no")])
    assert plan_one(U, bad, live_of({}), opts).verdict == "failed"
    assert plan_one(U, ok, live_of({"a": 1}), opts).verdict == "in-sync"
    assert plan_one(U, ok, live_of({}), opts).verdict == "changes"
    assert plan_one(U, None, live_of({"x": 1}, tracked=False), opts).verdict == "untracked"
    pinned = live_of({})
    pinned.pin = Pin("c" * 40, "me", "t", "incident")
    up = plan_one(U, ok, pinned, opts)
    assert up.verdict == "pinned" and up.reason and "incident" in up.reason
    assert plan_one(U, ok, pinned, PlanOptions(lifted_pins={U})).verdict == "changes"
    blocked = live_of({})
    blocked.pending = DeployRecord(2, "svc", "prod", "v", "d" * 40, "rollback", "me", "t")
    assert plan_one(U, ok, blocked, opts).verdict == "blocked"
    assert plan_one(U, ok, blocked, PlanOptions(source="rollback")).verdict == "changes"


def test_drift_is_what_came_after_the_unit_record() -> None:
    live = LiveUnit(U, {"a": LiveKey(1, b"", 5, None), "b": LiveKey(2, b"", 9, None),
                        "c": LiveKey(NOT_ENVELOPE, b"raw", 3, None)})
    assert drifted_keys(live) == []  # never deployed: nothing to compare with
    live.record, live.record_revision = UnitRecord(1, "c", "v", "git", "t", "me", 3), 5
    assert drifted_keys(live) == ["b", "c"] and shows_drift(live)
    clean = LiveUnit(U, {"a": LiveKey(1, b"", 5, None)},
                     UnitRecord(1, "c", "v", "git", "t", "me", 2), 5)
    assert shows_drift(clean)  # a key deleted by someone else: fewer keys than deployed
    clean.record = UnitRecord(1, "c", "v", "git", "t", "me", 1)
    assert not shows_drift(clean)


@given(flat, flat)
def test_a_first_deploy_leaves_keys_another_tool_wrote(live: dict[str, JSON],
                                                       wanted: dict[str, JSON]) -> None:
    """Before gitconf's first deploy of a unit, keys Git lacks are not gitconf's: kept."""
    desired = DesiredUnit(U, wanted, {}, ("f",))
    changes = plan_unit(U, desired, live_of(live, tracked=False))
    assert not any(c.op == "delete" for c in changes)
    up = plan_one(U, desired, live_of(live, tracked=False), PlanOptions())
    assert set(up.kept) == set(live) - set(wanted)


def test_the_mass_delete_guard_refuses_emptying_a_unit() -> None:
    from gitconf.plan import MassDeleteGuard

    live = live_of({f"k{i}": i for i in range(20)})
    guard = PlanOptions(mass_delete=MassDeleteGuard(50, 10))
    emptied = plan_one(U, DesiredUnit(U, {"k0": 0}, {}, ("f",)), live, guard)
    assert emptied.verdict == "failed" and "19 of its 20 keys" in (emptied.reason or "")
    removed = plan_one(U, None, live, guard)
    assert removed.verdict == "failed" and "remove the whole unit" in (removed.reason or "")
    few = plan_one(U, DesiredUnit(U, {f"k{i}": i for i in range(12)}, {}, ("f",)), live, guard)
    assert few.verdict == "changes"  # 8 deletes: under the guard's 10 keys
    assert plan_one(U, None, live, PlanOptions()).verdict == "changes"  # allowed
