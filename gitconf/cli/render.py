"""Rendering plans and deploy results as text (rich) and JSON. Secrets are masked here, once,
for every format, unless the user asked for `--show-secrets`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..masking import shown_change
from ..model import JSON, Change, Plan, UnitId
from ..reconcile import Result

MAX_SHOWN = 120


def show(value: JSON) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _nested(old: JSON, new: JSON) -> list[str]:
    """What changed inside a nested value, path by path (deepdiff)."""
    from deepdiff import DeepDiff

    diff = DeepDiff(old, new, verbose_level=2)
    lines = []
    for kind, items in diff.items():
        if not isinstance(items, dict):
            continue
        for path, detail in items.items():
            where = path.replace("root", "", 1) or "(value)"
            if kind in ("values_changed", "type_changes") and isinstance(detail, dict):
                lines.append(f"{where}: {show(detail.get('old_value'))} → "
                             f"{show(detail.get('new_value'))}")
            elif "added" in kind:
                lines.append(f"{where} added: {show(detail)}")
            elif "removed" in kind:
                lines.append(f"{where} removed: {show(detail)}")
    return lines[:20]


def render_change(con: Console, c: Change) -> None:
    key = escape(c.key)
    if c.op == "add":
        con.print(f"  [green]+ {key}[/] = {escape(show(c.new))}")
    elif c.op == "delete":
        con.print(f"  [red]- {key}[/] = {escape(show(c.old))}")
    else:
        con.print(f"  [yellow]~ {key}[/]: {escape(show(c.old))} [dim]→[/] {escape(show(c.new))}")
        if isinstance(c.old, (dict, list)) and isinstance(c.new, (dict, list)):
            for line in _nested(c.old, c.new):
                con.print(f"      [dim]{escape(line)}[/]")


def render_plan(con: Console, plan: Plan, show_secrets: bool) -> None:
    for up in plan.units:
        if not up.changes:
            if up.live.pending is not None:
                con.print(f"[bold]{up.unit}[/]  [dim](finishes an interrupted deploy)[/]")
            continue
        counts = _counts(up.changes)
        drift = "  [magenta](drift: changed in etcd, not in Git)[/]" if up.drift else ""
        con.print(f"[bold]{up.unit}[/]  [dim]{counts}[/]{drift}")
        for c in up.changes:
            render_change(con, shown_change(c, show_secrets))
    render_skipped_failed(con, plan)


def render_skipped_failed(con: Console, plan: Plan) -> None:
    for unit, reason in plan.skipped:
        con.print(f"[cyan]⏸ {unit}[/] skipped: {escape(reason)}")
    for unit, reason in plan.failed:
        con.print(f"[red]✗ {unit}[/] not applied: {escape(reason)}")


def _counts(changes: list[Change]) -> str:
    a = sum(c.op == "add" for c in changes)
    m = sum(c.op == "change" for c in changes)
    d = sum(c.op == "delete" for c in changes)
    return f"+{a} ~{m} -{d}"


def _pairs(items: list[tuple[UnitId, str]]) -> list[dict[str, str]]:
    return [{"service": u.service, "environment": u.environment, "reason": r} for u, r in items]


def plan_json(result: Result, show_secrets: bool) -> dict[str, Any]:
    units = []
    for up in result.plan.units:
        if not up.changes:
            continue
        units.append({
            "service": up.unit.service, "environment": up.unit.environment,
            **({"drift": True} if up.drift else {}),
            "changes": [{"key": c.key, "op": c.op, "old": c.old, "new": c.new}
                        for c in (shown_change(ch, show_secrets) for ch in up.changes)],
        })
    return {"ref": result.ref, "commit": result.commit.sha, "version": result.commit.version,
            "units": units, "skipped": _pairs(result.plan.skipped),
            "failed": _pairs(result.plan.failed),
            "problems": [p.as_json() for p in result.problems]}


def render_apply(con: Console, result: Result) -> None:
    deploys = sorted(result.deploys, key=lambda d: d.unit)
    if deploys:
        table = Table(box=None, pad_edge=False, show_edge=False)
        for col in ("unit", "deploy", "version", "added", "changed", "deleted"):
            table.add_column(col, justify="right" if col in ("deploy", "added", "changed",
                                                               "deleted") else "left")
        for d in deploys[:200]:
            table.add_row(f"[green]✓[/] {d.unit}", f"#{d.deploy}", escape(d.version),
                          str(len(d.added)), str(len(d.changed)), str(len(d.deleted)))
        con.print(table)
        if len(deploys) > 200:
            con.print(f"[dim]… and {len(deploys) - 200} more units[/]")
    render_skipped_failed(con, result.plan)
    for unit, reason in result.held:
        con.print(f"[magenta]⏸ {unit}[/] {escape(reason)}")
    for r in result.closed_overrides:
        con.print(f"[green]✓[/] override {r.id} of {r.unit} closed as {r.state}: "
                  f"{escape(r.closed_reason or '')}")
    for r in result.new_overrides:
        pr = r.pull_request.url if r.pull_request and r.pull_request.url else "pull request "\
            "pending"
        con.print(f"[magenta]![/] drift in {r.unit} kept as override {r.id} "
                  f"({', '.join(k.key for k in r.keys)}): {escape(pr)}")
    for p in result.problems:
        con.print(f"[red]✗[/] {escape(p.file)}:{p.line}:{p.column} {p.code}: {escape(p.message)}")
    keys = sum(len(d.added) + len(d.changed) + len(d.deleted) for d in deploys)
    if result.conflicts:
        con.print(f"[yellow]![/] {result.conflicts} concurrent write(s) detected; the units "
                  "were re-planned from fresh state")
    if deploys:
        con.print(f"applied {escape(result.commit.version)}: {len(deploys)} deploy"
                  f"{'s' * (len(deploys) != 1)}, {keys} key{'s' * (keys != 1)} written")
    elif result.ok:
        con.print(f"nothing to do: etcd matches {escape(result.commit.version)}")
