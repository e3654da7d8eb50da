"""`cli.planstream`: a dry pass's plans rendered as they come must print what rendering the
whole plan at the end printed before it (0b87ed6), byte for byte, in every format. The
oracles here are those whole-plan renderers, kept as they were: JSON is `json.dumps` of the
whole document (the streamed units come from the spool, in memory or on disk), text and
--stat the old lines and table, markdown the old `plan_markdown` (with MD_ROWS made small so
that its cuts are reached)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gitconf.cli import planstream, render
from gitconf.cli.grid import Cell, Part, grid, styled_lines
from gitconf.cli.planstream import STREAMED, PlanStream
from gitconf.cli.render import (
    MD_ROWS,
    Counts,
    PlanTotals,
    change_lines,
    md_cell,
    md_code,
    md_head,
    md_left_alone,
    md_table,
    plan_json,
    plan_markdown,
)
from gitconf.gitsource import CommitInfo
from gitconf.masking import shown_change
from gitconf.model import Change, LiveUnit, Plan, UnitId, UnitPlan
from gitconf.reconcile import Result

KEY = st.text(st.sampled_from("abc.:_-[]é界"), min_size=1, max_size=6)
VALUE = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=2)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=4)
CHANGE = st.builds(Change, KEY, st.sampled_from(["add", "change", "delete"]), VALUE, VALUE,
                   st.booleans())
PENDING = cast(Any, object())  # an interrupted deploy: only its presence is rendered


@st.composite
def plans(draw: Any) -> list[UnitPlan]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        unit = UnitId(f"svc-{i}", draw(st.sampled_from(["prod", "dev"])))
        changes = draw(st.lists(CHANGE, max_size=4))
        live = LiveUnit(unit, {}, pending=PENDING if draw(st.booleans()) else None)
        out.append(UnitPlan(unit, changes, None, live,
                            drift=bool(changes) and draw(st.booleans())))
    return out


def _result(units: list[UnitPlan]) -> Result:
    commit = CommitInfo("ab" * 20, "A", "a@x", "2026-01-01T00:00:00Z", None, "s", "v1.0")
    return Result("HEAD", commit, Plan(units, skipped=[(UnitId("p", "prod"), "pinned")]),
                  dry_run=True)


def _console() -> Console:
    return Console(file=io.StringIO(), width=1 << 14, highlight=False, soft_wrap=True,
                   color_system="truecolor", force_terminal=True, emoji=False)


# -- the whole-plan renderers as they were -------------------------------------------------------

def _old_units_json(plan: Plan, show: bool, stat: bool) -> list[dict[str, Any]]:
    units = []
    for up in plan.units:
        if not up.changes:
            continue
        doc: dict[str, Any] = {"service": up.unit.service, "environment": up.unit.environment,
                               **({"drift": True} if up.drift else {})}
        if stat:
            n = Counts.of(up.changes)
            doc.update(added=n.add, changed=n.change, deleted=n.delete)
        else:
            doc["changes"] = [{"key": c.key, "op": c.op, "old": c.old, "new": c.new} for c in
                              (shown_change(ch, show) for ch in up.changes)]
        units.append(doc)
    return units


def _old_lines(plan: Plan, show: bool) -> Iterator[list[Part]]:
    for up in plan.units:
        if not up.changes:
            if up.live.pending is not None:
                yield [(str(up.unit), "bold"), ("  ", ""),
                       ("(finishes an interrupted deploy)", "dim")]
            continue
        head = [(str(up.unit), "bold"), ("  ", ""), (str(Counts.of(up.changes)), "dim")]
        if up.drift:
            head += [("  ", ""), ("(drift: changed in etcd, not in Git)", "magenta")]
        yield head
        for c in up.changes:
            yield from change_lines(shown_change(c, show))


def _old_stat(con: Console, plan: Plan) -> None:
    rows: list[list[Cell]] = []
    for up in plan.units:
        if up.changes:
            n = Counts.of(up.changes)
            unit: Cell = str(up.unit) if not up.drift else \
                ((str(up.unit), ""), ("  (drift: changed in etcd, not in Git)", "magenta"))
            rows.append([unit, str(n.add), str(n.change), str(n.delete)])
    if rows:
        grid(con, [("unit", "left"), ("added", "right"), ("changed", "right"),
                   ("deleted", "right")], rows)


def _old_markdown(command: str, result: Result, show: bool, stat: bool, summary: str) -> str:
    rows_max = render.MD_ROWS
    units = [up for up in result.plan.units if up.changes]
    out = md_head(command, result)
    if units:
        out += md_table(["unit", "added", "changed", "deleted"], (
            [md_code(str(up.unit)) + (" (drift)" if up.drift else ""),
             *(str(x) for x in vars(Counts.of(up.changes)).values())]
            for up in units[:rows_max]), len(units))
    for up in units[:rows_max] if not stat else ():
        rows = ([md_code(c.key), c.op, md_code(c.old) if c.op != "add" else "",
                 md_code(c.new) if c.op != "delete" else ""]
                for c in (shown_change(ch, show) for ch in up.changes[:rows_max]))
        out += ["", f"<details><summary><code>{md_cell(str(up.unit))}</code>: "
                    f"{Counts.of(up.changes)}</summary>", "",
                *md_table(["key", "op", "old", "new"], rows, len(up.changes)), "", "</details>"]
    out += md_left_alone(result, {})
    out += ["", f"**{md_cell(summary, 500)}**"]
    return "\n".join(out) + "\n"


# -- the stream against them ---------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(units=plans(), show=st.booleans(), stat=st.booleans(), spool=st.sampled_from([1, 1 << 20]))
def test_json_is_the_whole_document(units: list[UnitPlan], show: bool, stat: bool,
                                    spool: int) -> None:
    result = _result(units)
    whole_doc = {**plan_json(result, show, stat), "unpruned": []}
    whole_doc["units"] = _old_units_json(result.plan, show, stat)
    whole = json.dumps(whole_doc, indent=2, ensure_ascii=False, default=str) + "\n"
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
    if stat:
        _old_stat(whole, Plan(units))
    else:
        styled_lines(whole, _old_lines(Plan(units), show))
    streamed = _console()
    stream = PlanStream("text", show, stat, streamed)
    for up in units:
        stream(up)
    stream.finish_text()
    assert streamed.file.getvalue() == whole.file.getvalue()  # type: ignore[attr-defined]
    assert stream.totals == PlanTotals.of(Plan(units))
    assert stream.changing == {u.unit for u in units if u.changes}


@settings(max_examples=150, deadline=None)
@given(units=plans(), show=st.booleans(), stat=st.booleans(), rows=st.integers(1, 3))
def test_markdown_is_the_whole_plan(units: list[UnitPlan], show: bool, stat: bool,
                                    rows: int) -> None:
    result = _result(units)
    saved = render.MD_ROWS, planstream.MD_ROWS
    render.MD_ROWS = planstream.MD_ROWS = rows  # the cuts of units and of changes reached
    try:
        whole = _old_markdown("diff", result, show, stat, "summary")
        stream = PlanStream("markdown", show, stat)
        for up in units:
            stream(up)
        got = plan_markdown("diff", result, stat, "summary", {}, stream.md_units,
                            stream.totals.units)
    finally:
        render.MD_ROWS, planstream.MD_ROWS = saved
    assert got == whole


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


def test_a_document_without_the_marker_is_refused_and_the_spool_closed() -> None:
    stream = PlanStream("json", False)
    unit = UnitId("s", "prod")
    stream(UnitPlan(unit, [Change("k", "add", None, 1)], None, LiveUnit(unit, {})))
    spool = stream._spool
    assert spool is not None
    try:
        stream.write_json({"units": []}, io.StringIO())
    except ValueError as exc:
        assert "no streamed units" in str(exc)
    else:
        raise AssertionError("write_json accepted a document without STREAMED")
    out = io.StringIO()
    out.close()  # a reader gone: the write fails, the spool is closed all the same
    stream._spool = spool
    try:
        stream.write_json({"units": STREAMED}, out)
    except ValueError:
        pass
    assert spool.closed
