"""`cli.planstream`: a dry pass's plans rendered as they come must print what rendering the
whole plan at the end prints, byte for byte, in every format: JSON against `json.dumps` of
the whole document (the units assembled from the spool, in memory or on disk), text and
--stat against `render_plan`, markdown against `plan_markdown` of every unit."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gitconf.cli import planstream
from gitconf.cli.planstream import STREAMED, PlanStream
from gitconf.cli.render import (
    MD_ROWS,
    Counts,
    MdUnit,
    PlanTotals,
    plan_json,
    plan_markdown,
    render_plan,
)
from gitconf.gitsource import CommitInfo
from gitconf.model import Change, LiveUnit, Plan, UnitId, UnitPlan
from gitconf.reconcile import Result

KEY = st.text(st.sampled_from("abc.:_-[]é界"), min_size=1, max_size=6)
VALUE = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=2)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=4)
CHANGE = st.builds(Change, KEY, st.sampled_from(["add", "change", "delete"]), VALUE, VALUE,
                   st.booleans())


@st.composite
def plans(draw: Any) -> list[UnitPlan]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        unit = UnitId(f"svc-{i}", draw(st.sampled_from(["prod", "dev"])))
        changes = draw(st.lists(CHANGE, max_size=4))
        out.append(UnitPlan(unit, changes, None, LiveUnit(unit, {}),
                            drift=bool(changes) and draw(st.booleans())))
    return out


def _result(units: list[UnitPlan]) -> Result:
    commit = CommitInfo("ab" * 20, "A", "a@x", "2026-01-01T00:00:00Z", None, "s", "v1.0")
    return Result("HEAD", commit, Plan(units, skipped=[(UnitId("p", "prod"), "pinned")]),
                  dry_run=True)


def _console() -> Console:
    return Console(file=io.StringIO(), width=1 << 14, highlight=False, soft_wrap=True,
                   color_system="truecolor", force_terminal=True, emoji=False)


@settings(max_examples=150, deadline=None)
@given(units=plans(), show=st.booleans(), stat=st.booleans(), spool=st.sampled_from([1, 1 << 20]))
def test_json_is_the_whole_document(units: list[UnitPlan], show: bool, stat: bool,
                                    spool: int) -> None:
    result = _result(units)
    whole = json.dumps({**plan_json(result, show, stat), "unpruned": []}, indent=2,
                       ensure_ascii=False, default=str) + "\n"
    old, planstream._SPOOL = planstream._SPOOL, spool  # 1: every unit goes through the disk
    try:
        stream = PlanStream("json", show, stat)
        for up in units:
            stream(up)
        out = io.StringIO()
        emptied = Result(result.ref, result.commit, Plan([], skipped=result.plan.skipped))
        stream.write_json({**plan_json(emptied, show, stat, STREAMED, stream.totals),
                           "unpruned": []}, out)
    finally:
        planstream._SPOOL = old
    assert out.getvalue() == whole
    assert json.loads(out.getvalue())["totals"]["units"] == sum(bool(u.changes) for u in units)


@settings(max_examples=150, deadline=None)
@given(units=plans(), show=st.booleans(), stat=st.booleans())
def test_text_is_the_whole_plan(units: list[UnitPlan], show: bool, stat: bool) -> None:
    whole = _console()
    render_plan(whole, Plan(units), show, stat)
    streamed = _console()
    stream = PlanStream("text", show, stat, streamed)
    for up in units:
        stream(up)
    stream.finish_text()
    assert streamed.file.getvalue() == whole.file.getvalue()  # type: ignore[attr-defined]
    assert stream.totals == PlanTotals.of(Plan(units))
    assert stream.changing == {u.unit for u in units if u.changes}


@settings(max_examples=100, deadline=None)
@given(units=plans(), show=st.booleans(), stat=st.booleans())
def test_markdown_is_the_whole_plan(units: list[UnitPlan], show: bool, stat: bool) -> None:
    result = _result(units)
    differ = [u for u in units if u.changes]
    whole = plan_markdown("diff", result, stat, "summary", {},
                          [MdUnit.of(u, Counts.of(u.changes), show) for u in differ],
                          len(differ))
    stream = PlanStream("markdown", show, stat)
    for up in units:
        stream(up)
    assert plan_markdown("diff", result, stat, "summary", {}, stream.md_units,
                         stream.totals.units) == whole


def test_markdown_keeps_only_what_it_shows() -> None:
    """A plan of many units with many changes keeps the first MD_ROWS units, each with its
    first MD_ROWS changes: what the tables show, however large the plan."""
    stream = PlanStream("markdown", False)
    changes = [Change(f"k{i}", "add", None, i) for i in range(MD_ROWS * 3)]
    for i in range(MD_ROWS * 3):
        unit = UnitId(f"s{i}", "prod")
        stream(UnitPlan(unit, changes, None, LiveUnit(unit, {})))
    assert len(stream.md_units) == MD_ROWS
    assert all(len(u.changes) == MD_ROWS and u.total == MD_ROWS * 3 for u in stream.md_units)
    assert stream.totals.units == MD_ROWS * 3
    assert stream.totals.keys.add == MD_ROWS * 3 * MD_ROWS * 3


def test_a_document_without_the_marker_is_refused() -> None:
    stream = PlanStream("json", False)
    try:
        stream.write_json({"units": []}, io.StringIO())
    except ValueError as exc:
        assert "no streamed units" in str(exc)
    else:
        raise AssertionError("write_json accepted a document without STREAMED")
