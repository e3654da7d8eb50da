"""Rendering plans and deploy results as text (rich), JSON and markdown. Secrets are masked
here, once, for every format, unless the user asked for `--show-secrets`.

Every summary tells the whole truth of a pass: what was written (deletions counted as
deletions), what was left alone and why (pinned, blocked, held by an override, drift left in
place, keys kept by --no-prune), what failed (always the last line), and that a dry run wrote
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..fastclass import dataclass
from ..masking import shown_change
from ..model import JSON, Change, Plan, UnitId, UnitPlan
from ..reconcile import Result
from .grid import Cell, Part, grid, styled_lines

MAX_SHOWN = 120
MAX_TABLE = 200  # rows of a deploys table in text; more are counted, not listed
Unpruned = Mapping[UnitId, Sequence[str]]  # keys Git no longer has, kept by --no-prune


def show(value: JSON) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


def change_lines(c: Change) -> Iterator[list[Part]]:
    """A change as styled lines: the key and its values, and what changed inside a nested
    value below it."""
    if c.op == "add":
        yield [("  ", ""), (f"+ {c.key}", "green"), (f" = {show(c.new)}", "")]
    elif c.op == "delete":
        yield [("  ", ""), (f"- {c.key}", "red"), (f" = {show(c.old)}", "")]
    else:
        yield [("  ", ""), (f"~ {c.key}", "yellow"), (f": {show(c.old)} ", ""), ("→", "dim"),
               (f" {show(c.new)}", "")]
        if isinstance(c.old, (dict, list)) and isinstance(c.new, (dict, list)):
            for line in _nested(c.old, c.new):
                yield [("      ", ""), (line, "dim")]


def render_change(con: Console, c: Change) -> None:
    styled_lines(con, change_lines(c))


# -- counting ---------------------------------------------------------------------------------

@dataclass
class Counts:
    add: int = 0
    change: int = 0
    delete: int = 0

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Counts:
        out = cls()
        for c in changes:
            setattr(out, c.op, getattr(out, c.op) + 1)
        return out

    def __str__(self) -> str:
        return f"+{self.add} ~{self.change} -{self.delete}"

    def plus(self, other: Counts) -> Counts:
        return Counts(self.add + other.add, self.change + other.change,
                      self.delete + other.delete)


@dataclass
class PlanTotals:
    """Units with changes, the keys they add, change and delete, and how many differ by drift:
    what a summary says of a plan, counted as its units come (`planstream`) or at once."""

    units: int = 0
    keys: Counts = field(default_factory=Counts)
    drift: int = 0

    @classmethod
    def of(cls, plan: Plan) -> PlanTotals:
        out = cls()
        for up in plan.units:
            if up.changes:
                out.add(Counts.of(up.changes), up.drift)
        return out

    def add(self, n: Counts, drift: bool) -> None:
        self.units += 1
        self.keys = self.keys.plus(n)
        self.drift += drift


def is_pin(reason: str) -> bool:
    return reason.startswith("pinned")


@dataclass
class Tally:
    """Every unit of the selection, by what the pass did with it (for the summary line)."""

    scope: int | None = None  # units in the selection at the commit (None: not known)
    pinned: set[UnitId] = field(default_factory=set)
    blocked: set[UnitId] = field(default_factory=set)
    failed: set[UnitId] = field(default_factory=set)
    held: set[UnitId] = field(default_factory=set)
    drift_left: set[UnitId] = field(default_factory=set)
    adopted: set[UnitId] = field(default_factory=set)
    unpruned: set[UnitId] = field(default_factory=set)
    changing: set[UnitId] = field(default_factory=set)  # a dry run's units with changes

    @classmethod
    def of(cls, result: Result, scope: int | None, unpruned: Unpruned,
           changing: set[UnitId] | None = None) -> Tally:
        """`changing`: a dry run's units with changes, when its plans were not kept."""
        return cls(
            scope,
            {u for u, r in result.plan.skipped if is_pin(r)},
            {u for u, r in result.plan.skipped if not is_pin(r)},
            {u for u, _ in result.plan.failed},
            {u for u, _ in result.held},
            # a dry run shows drift among the changes (marked), not as left alone
            set() if result.dry_run else {up.unit for up in result.drifted},
            {r.unit for r in result.new_overrides},
            {u for u, keys in unpruned.items() if keys},
            changing if changing is not None else
            {up.unit for up in result.plan.units if up.changes})

    def notes(self) -> list[str]:
        """What was left alone, one phrase each, then how many units are in sync."""
        parts = [(self.pinned, "pinned"), (self.blocked, "blocked (see above)"),
                 (self.held, "held by an override"),
                 (self.drift_left, "with drift left in place (drift policy)"),
                 (self.adopted, "with drift kept as an override (pull request)"),
                 (self.unpruned, "keeping keys Git no longer has (--no-prune)")]
        out = [f"{plural(len(units), 'unit')} {what}" for units, what in parts if units]
        if out and self.scope is not None:
            others = set().union(*(u for u, _ in parts), self.failed, self.changing)
            out.append(f"{max(0, self.scope - len(others))} in sync")
        return out


# -- text -------------------------------------------------------------------------------------

def render_plan(con: Console, plan: Plan, show_secrets: bool, stat: bool = False) -> None:
    """Each unit's changes (with --stat: its counts only), then the units left alone."""
    if stat:
        render_stat(con, [stat_row(up, Counts.of(up.changes)) for up in plan.units
                          if up.changes])
    else:
        styled_lines(con, (line for up in plan.units for line in unit_lines(
            up, Counts.of(up.changes), show_secrets)))
    render_skipped_failed(con, plan)


def unit_lines(up: UnitPlan, n: Counts, show_secrets: bool) -> Iterator[list[Part]]:
    """A unit's text lines: its name and counts (`n`), then each change."""
    if not up.changes:
        if up.live.pending is not None:
            yield [(str(up.unit), "bold"), ("  ", ""), ("(finishes an interrupted deploy)", "dim")]
        return
    head = [(str(up.unit), "bold"), ("  ", ""), (str(n), "dim")]
    if up.drift:
        head += [("  ", ""), ("(drift: changed in etcd, not in Git)", "magenta")]
    yield head
    for c in up.changes:
        yield from change_lines(shown_change(c, show_secrets))


def stat_row(up: UnitPlan, n: Counts) -> list[Cell]:
    """A unit's --stat row: its name (marked when drift) and counts `n`."""
    unit: Cell = str(up.unit) if not up.drift else \
        ((str(up.unit), ""), ("  (drift: changed in etcd, not in Git)", "magenta"))
    return [unit, str(n.add), str(n.change), str(n.delete)]


def render_stat(con: Console, rows: list[list[Cell]]) -> None:
    if rows:
        grid(con, [("unit", "left"), ("added", "right"), ("changed", "right"),
                   ("deleted", "right")], rows)


def render_skipped_failed(con: Console, plan: Plan) -> None:
    for unit, reason in plan.skipped:
        con.print(f"[cyan]⏸ {unit}[/] skipped: {escape(reason)}")
    for unit, reason in plan.failed:
        con.print(f"[red]✗ {unit}[/] not applied: {escape(reason)}")


def render_unpruned(con: Console, unpruned: Unpruned) -> None:
    for unit, keys in sorted(unpruned.items()):
        if keys:
            shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10
                                            else "")
            con.print(f"[yellow]•[/] {unit}: kept {plural(len(keys), 'key')} Git no longer "
                      f"has (--no-prune): {escape(shown)}")


def diff_summary(result: Result, tally: Tally, totals: PlanTotals) -> str:
    """The last line of a diff; `totals` counted as the units came (`planstream`)."""
    units, total, drift = totals.units, totals.keys, totals.drift
    notes = tally.notes()
    if units:
        line = (f"{plural(units, 'unit')} {'differs' if units == 1 else 'differ'}: {total} keys"
                + (f" ({drift} by drift: changed in etcd, not in Git)" if drift else ""))
    else:
        line = f"no differences: etcd matches {result.commit.version}"
    line = "; ".join([line, *notes])
    if tally.failed:
        line += f"; {plural(len(tally.failed), 'unit')} would fail"
    return line


def dry_run_summary(result: Result, tally: Tally, totals: PlanTotals) -> str:
    units, total = totals.units, totals.keys
    what = (f"{plural(units, 'unit')} would change: {total} keys" if units
            else f"etcd matches {result.commit.version}")
    parts = [f"dry run, nothing written: {what}", *tally.notes()]
    if tally.failed:
        parts.append(f"{plural(len(tally.failed), 'unit')} would fail")
    return "; ".join(parts)


def render_deploys(con: Console, result: Result) -> None:
    deploys = sorted(result.deploys, key=lambda d: d.unit)
    if not deploys:
        return
    grid(con, [("unit", "left"), ("deploy", "right"), ("version", "left"), ("added", "right"),
               ("changed", "right"), ("deleted", "right")],
         ([(("✓", "green"), (f" {d.unit}", "")), f"#{d.deploy}", d.version, str(len(d.added)),
           str(len(d.changed)), str(len(d.deleted))] for d in deploys[:MAX_TABLE]))
    if len(deploys) > MAX_TABLE:
        con.print(f"[dim]… and {len(deploys) - MAX_TABLE} more units[/]")


def render_notes(con: Console, result: Result) -> None:
    """Held keys, foreign keys left alone, overrides closed and opened, repository problems."""
    for unit, reason in result.held:
        con.print(f"[magenta]⏸ {unit}[/] {escape(reason)}")
    for unit, reason in result.kept:
        con.print(f"[dim]• {unit} {escape(reason)}[/]")
    for r in result.closed_overrides:
        con.print(f"[green]✓[/] override {r.id} of {r.unit} closed as {r.state}: "
                  f"{escape(r.closed_reason or '')}")
    for r in result.new_overrides:
        pr = r.pull_request.url if r.pull_request and r.pull_request.url else (
            r.pr_note or "pull request pending")
        con.print(f"[magenta]![/] drift in {r.unit} kept as override {r.id} "
                  f"({', '.join(k.key for k in r.keys)}): {escape(pr)}")
    for p in result.problems:
        con.print(f"[red]✗[/] {escape(p.file)}:{p.line}:{p.column} {p.code}: {escape(p.message)}")
    if result.conflicts:
        con.print(f"[yellow]![/] {result.conflicts} concurrent write(s) detected; the units "
                  "were re-planned from fresh state")


def apply_summary(result: Result, tally: Tally | None) -> list[str]:
    """The closing lines of apply and rollback; a failure is always the last one."""
    deploys = result.deploys
    lines = []
    if deploys:
        written = sum(len(d.added) + len(d.changed) for d in deploys)
        deleted = sum(len(d.deleted) for d in deploys)
        lines.append(f"applied {result.commit.version}: {plural(len(deploys), 'deploy')}, "
                     f"{plural(written, 'key')} written"
                     + (f", {plural(deleted, 'key')} deleted" if deleted else ""))
    notes = tally.notes() if tally is not None else []
    if notes:
        lines.append(("" if deploys else "nothing applied: ") + ", ".join(notes))
    elif not deploys and result.ok:
        lines.append(f"nothing to do: etcd matches {result.commit.version}")
    failed = len(result.plan.failed)
    errors = sum(p.severity == "error" for p in result.problems)
    if failed:
        lines.append(f"{plural(failed, 'unit')} failed; "
                     + ("others applied" if deploys else "nothing applied"))
    elif errors:
        lines.append(f"{plural(errors, 'problem')} in the repository (above); "
                     + ("the units they do not touch were applied" if deploys
                        else "nothing applied"))
    return lines


def render_apply(con: Console, result: Result, tally: Tally | None = None,
                 unpruned: Unpruned | None = None, notes: Sequence[str] = ()) -> None:
    render_deploys(con, result)
    render_skipped_failed(con, result.plan)
    render_notes(con, result)
    render_unpruned(con, unpruned or {})
    for line in notes:
        con.print(escape(line))
    for line in apply_summary(result, tally):
        con.print(escape(line))


# -- JSON -------------------------------------------------------------------------------------

def _pairs(items: list[tuple[UnitId, str]]) -> list[dict[str, str]]:
    return [{"service": u.service, "environment": u.environment, "reason": r} for u, r in items]


def unpruned_json(unpruned: Unpruned) -> list[dict[str, Any]]:
    return [{"service": u.service, "environment": u.environment, "keys": list(keys)}
            for u, keys in sorted(unpruned.items()) if keys]


def unit_json(up: UnitPlan, n: Counts, show_secrets: bool, stat: bool) -> dict[str, Any]:
    """A unit with changes in a plan's JSON: its changes, masked (--stat: its counts `n`)."""
    doc: dict[str, Any] = {"service": up.unit.service, "environment": up.unit.environment,
                           **({"drift": True} if up.drift else {})}
    if stat:
        doc.update(added=n.add, changed=n.change, deleted=n.delete)
    else:
        doc["changes"] = [{"key": c.key, "op": c.op, "old": c.old, "new": c.new} for c in
                          (shown_change(ch, show_secrets) for ch in up.changes)]
    return doc


def plan_json(result: Result, show_secrets: bool, stat: bool = False, units: Any = None,
              totals: PlanTotals | None = None) -> dict[str, Any]:
    """The plan's JSON document; `units` and `totals` given when the units were streamed
    (`planstream.PlanStream.write_json` puts them in)."""
    if units is None:
        units = [unit_json(up, Counts.of(up.changes), show_secrets, stat)
                 for up in result.plan.units if up.changes]
    totals = totals or PlanTotals.of(result.plan)
    total = totals.keys
    return {"ref": result.ref, "commit": result.commit.sha, "version": result.commit.version,
            "units": units,
            "totals": {"units": totals.units, "added": total.add, "changed": total.change,
                       "deleted": total.delete},
            "skipped": _pairs(result.plan.skipped), "failed": _pairs(result.plan.failed),
            "problems": [p.as_json() for p in result.problems]}


# -- markdown (a GitHub job summary: `--format markdown >> "$GITHUB_STEP_SUMMARY"`) -----------

MD_ROWS = 100  # rows per table; more are counted, not listed
MD_CELL = 80  # characters of a value in a cell


def md_cell(value: Any, limit: int = MD_CELL) -> str:
    """One table cell: JSON for values, no line breaks, pipes escaped, long text cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'").replace("<", "&lt;")


def md_code(value: Any, limit: int = MD_CELL) -> str:
    return f"`{md_cell(value, limit)}`"


def md_table(header: list[str], rows: Iterable[list[str]], total: int = 0) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    if total > MD_ROWS:
        out += ["", f"… and {total - MD_ROWS} more"]
    return out


def md_head(command: str, result: Result) -> list[str]:
    version, sha = result.commit.version, result.commit.sha[:12]
    where = f" at `{md_cell(version)}`" + (f" (`{sha}`)" if sha != version else "")
    return [f"### gitconf {command}{where}", ""]


def md_left_alone(result: Result, unpruned: Unpruned) -> list[str]:
    """Failed and skipped units, held keys, drift kept as overrides, --no-prune leftovers and
    repository problems: each a table, when there is any."""
    out: list[str] = []
    sections = [("❌ failed", result.plan.failed), ("⏸️ skipped", result.plan.skipped),
                ("⏸️ held by an override", result.held)]
    for title, items in sections:
        if items:
            out += ["", f"**{title}: {plural(len(items), 'unit')}**", "",
                    *md_table(["unit", "reason"], ([md_code(str(u)), md_cell(r, 300)]
                                                   for u, r in items[:MD_ROWS]), len(items))]
    if result.new_overrides:
        out += ["", f"**drift kept as overrides: {plural(len(result.new_overrides), 'unit')}**",
                "", *md_table(["unit", "override", "keys", "pull request"], (
                    [md_code(str(r.unit)), md_code(r.id), md_cell(", ".join(
                        k.key for k in r.keys)), md_cell(r.pull_request.url if r.pull_request
                                                         and r.pull_request.url else
                                                         r.pr_note or "pending", 200)]
                    for r in result.new_overrides[:MD_ROWS]), len(result.new_overrides))]
    kept = [(u, k) for u, k in sorted(unpruned.items()) if k]
    if kept:
        out += ["", "**kept by --no-prune (keys Git no longer has)**", "",
                *md_table(["unit", "keys"], ([md_code(str(u)), md_cell(", ".join(k), 300)]
                                             for u, k in kept[:MD_ROWS]), len(kept))]
    if result.problems:
        out += ["", f"**{plural(len(result.problems), 'problem')} in the repository**", "",
                *md_problems([p.as_json() for p in result.problems])]
    return out


def md_problems(problems: list[dict[str, Any]]) -> list[str]:
    rows = ([md_code(f"{p['file']}:{p['line']}:{p['column']}"),
             md_code(p["key"]) if p.get("key") else "", md_code(p["code"]),
             md_cell(p["message"], 300)] for p in problems[:MD_ROWS])
    return md_table(["where", "key", "code", "message"], rows, len(problems))


@dataclass
class MdUnit:
    """A unit as markdown shows it: its counts and its first `MD_ROWS` changes, masked."""

    unit: UnitId
    drift: bool
    counts: Counts
    changes: list[Change]
    total: int

    @classmethod
    def of(cls, up: UnitPlan, n: Counts, show_secrets: bool) -> MdUnit:
        return cls(up.unit, up.drift, n, [shown_change(c, show_secrets)
                                          for c in up.changes[:MD_ROWS]], len(up.changes))


def plan_markdown(command: str, result: Result, stat: bool, summary: str, unpruned: Unpruned,
                  units: Sequence[MdUnit], n_units: int) -> str:
    """The masked plan: a table of units with their counts, then each unit's keys (folded),
    then what was left alone; `units` are the first `MD_ROWS` of the `n_units` that
    differ, `summary` is the text output's last line."""
    out = md_head(command, result)
    if units:
        out += md_table(["unit", "added", "changed", "deleted"], (
            [md_code(str(u.unit)) + (" (drift)" if u.drift else ""),
             *(str(x) for x in vars(u.counts).values())]
            for u in units[:MD_ROWS]), n_units)
    for u in units[:MD_ROWS] if not stat else ():
        rows = ([md_code(c.key), c.op, md_code(c.old) if c.op != "add" else "",
                 md_code(c.new) if c.op != "delete" else ""] for c in u.changes)
        out += ["", f"<details><summary><code>{md_cell(str(u.unit))}</code>: "
                    f"{u.counts}</summary>", "",
                *md_table(["key", "op", "old", "new"], rows, u.total), "", "</details>"]
    out += md_left_alone(result, unpruned)
    out += ["", f"**{md_cell(summary, 500)}**"]
    return "\n".join(out) + "\n"


def apply_markdown(result: Result, tally: Tally | None, unpruned: Unpruned) -> str:
    deploys = sorted(result.deploys, key=lambda d: d.unit)
    out = md_head("apply", result)
    if deploys:
        out += md_table(["unit", "deploy", "version", "added", "changed", "deleted"], (
            [md_code(str(d.unit)), f"#{d.deploy}", md_code(d.version), str(len(d.added)),
             str(len(d.changed)), str(len(d.deleted))] for d in deploys[:MD_ROWS]),
            len(deploys))
    out += md_left_alone(result, unpruned)
    out += ["", *(f"**{md_cell(line, 500)}**" for line in apply_summary(result, tally))]
    return "\n".join(out) + "\n"
