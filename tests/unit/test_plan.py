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


def live_of(values: dict[str, JSON], revision: int = 1) -> LiveUnit:
    return LiveUnit(U, {k: LiveKey(v, b"", revision, None) for k, v in values.items()})


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
    assert plan_one(U, None, live_of({"x": 1}), opts).verdict == "untracked"
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
