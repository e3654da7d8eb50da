"""`gitconf diff` and `gitconf apply`: the same reconcile pass, without and with writing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import (
    ETCD_ENV,
    GITHUB_ENV,
    REPO_ENV,
    ActorOpt,
    EnvOpt,
    EtcdOpt,
    PrefixOpt,
    RefOpt,
    RepoOpt,
    ReportFormat,
    ReportFormatOpt,
    ServiceOpt,
    ShowSecretsOpt,
    app,
    console,
    edge,
    env_help,
    out_json,
    shows_progress,
)
from .context import check_selection, reconciler_for, selection_size

if TYPE_CHECKING:
    from ..model import UnitId, UnitPlan
    from ..reconcile import Reconciler, Request, Result
    from .planstream import PlanStream

FullOpt = Annotated[bool, typer.Option("--full", help="Re-plan every unit, not only those "
                                                      "changed since the last apply.")]
StatOpt = Annotated[bool, typer.Option("--stat", help="Per unit counts only (+added ~changed "
                                                      "-deleted), no keys.")]


class Watch:
    """Sees every unit a pass examines: moves the progress bar, notes the keys --no-prune
    keeps (Git no longer has them), and for a dry run hands each plan with something to write
    to `shown` (`planstream.PlanStream`: a dry run that has an observer keeps no plans)."""

    def __init__(self, prune: bool, shown: Callable[[UnitPlan], None] | None = None,
                 on_unit: Callable[[], None] | None = None):
        self.prune, self.shown, self.on_unit = prune, shown, on_unit
        self.unpruned: dict[UnitId, list[str]] = {}

    def __call__(self, up: UnitPlan, drift: bool) -> None:
        from ..plan import left_alone

        if self.on_unit is not None:
            self.on_unit()
        if not self.prune and up.verdict in ("changes", "in-sync") and up.live.tracked:
            wanted = up.desired.values if up.desired else {}
            alone = left_alone(up.desired, up.live) | set(up.held)
            keys = sorted(k for k in up.live.keys if k not in wanted and k not in alone)
            if keys:
                self.unpruned[up.unit] = keys
        if self.shown is not None and up.writes:
            self.shown(up)

    def run(self, rec: Reconciler, req: Request) -> Result:
        req.observe = self
        return rec.run(req)


class Progress:
    """A determinate bar on stderr while apply runs (a terminal only): units planned out of the
    units selected when that is known before the pass (a first deploy, --full), else a count;
    keys written alongside."""

    def __init__(self, total: int | None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("applying"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("units, {task.fields[keys]} keys written"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       console=console(stderr=True), transient=True)
        self.task = self.bar.add_task("apply", total=total, keys=0)
        self.keys = 0

    def unit(self) -> None:
        task = self.bar.tasks[0]
        if task.total is not None and task.completed >= task.total:
            self.bar.update(self.task, total=task.completed + 1)  # a unit beyond the estimate
        self.bar.advance(self.task, 1)

    def written(self, n: int) -> None:
        self.keys += n
        self.bar.update(self.task, keys=self.keys)


def _expected_units(rec: Reconciler, ref: str, full: bool, service: list[str] | None,
                    env: list[str] | None) -> int | None:
    """Units the pass will examine, when that is known beforehand: every selected unit on a
    first deploy or with --full (an incremental pass decides inside the pass)."""
    from ..selection import read_previous

    if not full and read_previous(rec.store, rec.keys).record is not None:
        return None
    return selection_size(rec, rec.source.resolve(ref), service, env) or None


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV))
@edge
def diff(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    service: ServiceOpt = None,
    env: EnvOpt = None,
    full: FullOpt = False,
    no_prune: Annotated[bool, typer.Option(
        "--no-prune", help="Show no deletions; list the keys Git no longer has instead.")
                        ] = False,
    stat: StatOpt = False,
    exit_code: Annotated[bool, typer.Option("--exit-code",
                                            help="Exit 1 when there are differences.")] = False,
    show_secrets: ShowSecretsOpt = False,
    format: ReportFormatOpt = ReportFormat.text,
) -> None:
    """Show what apply would change in etcd: keys added, changed and deleted per unit.

    Secrets are shown as ***. The last line totals the differences. Nothing is
    written.

    Examples:
      gitconf diff --repo .              every unit that differs, key by key
      gitconf diff --stat                per unit counts only (a huge deploy)
      gitconf diff -s payments -e prod --exit-code   exit 1 if it differs
      gitconf diff -o markdown >> "$GITHUB_STEP_SUMMARY"
    """
    from ..reconcile import Request
    from .planstream import STREAMED, PlanStream
    from .render import (
        Tally,
        diff_summary,
        plan_json,
        plan_markdown,
        render_skipped_failed,
        render_unpruned,
        unpruned_json,
    )

    con = console() if format is ReportFormat.text else None
    stream = PlanStream(format.value, show_secrets, stat, con)
    watch = Watch(prune=not no_prune, shown=stream)
    with reconciler_for(repo, etcd, prefix, ref) as rec:
        check_selection(rec, ref, service, env)
        req = Request(ref=ref, services=service, environments=env, full=full,
                      prune=not no_prune, dry_run=True)
        result = watch.run(rec, req)
        scope = selection_size(rec, result.commit.sha, service, env)
    summary = diff_summary(result, Tally.of(result, scope, watch.unpruned, stream.changing),
                           stream.totals)
    if format is ReportFormat.json:
        stream.write_json({**plan_json(result, show_secrets, stat, STREAMED, stream.totals),
                           **({"unpruned": unpruned_json(watch.unpruned)} if no_prune else {})})
    elif format is ReportFormat.markdown:
        print(plan_markdown("diff", result, stat, summary, watch.unpruned, stream.md_units,
                            stream.totals.units), end="")
    else:
        assert con is not None
        stream.finish_text()
        render_skipped_failed(con, result.plan)
        render_unpruned(con, watch.unpruned)
        con.print(summary, markup=False)
    if not result.ok:
        raise typer.Exit(1)
    if exit_code and stream.totals.units:
        raise typer.Exit(1)


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV, *GITHUB_ENV, "GITHUB_ACTOR"))
@edge
def apply(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    service: ServiceOpt = None,
    env: EnvOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and show; write nothing.")
                       ] = False,
    no_prune: Annotated[bool, typer.Option(
        "--no-prune", help="Keep keys that Git no longer has (they are listed).")] = False,
    allow_mass_delete: Annotated[bool, typer.Option(
        "--allow-mass-delete", help="Apply even when a unit would lose more than the "
                                    "mass-delete guard allows (.gitconf.yaml mass_delete).")
                                 ] = False,
    full: FullOpt = False,
    actor: ActorOpt = None,
    max_txn_ops: Annotated[int, typer.Option("--max-txn-ops", min=4,
                                             help="etcd's --max-txn-ops.")] = 128,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", min=65536,
                                                   help="etcd's --max-request-bytes.")
                                 ] = 1_572_864,
    show_secrets: ShowSecretsOpt = False,
    format: ReportFormatOpt = ReportFormat.text,
) -> None:
    """Apply a commit to etcd: one versioned deploy per changed unit.

    Writes are guarded against concurrent writers; invalid units are not applied
    (exit 1), pinned units are skipped, keys Git no longer has are pruned
    (unless --no-prune). Only units changed since the last apply are looked at
    (--full: all). The last line says what happened to every unit: applied,
    pinned, held, failed.

    Examples:
      gitconf apply --repo .             apply HEAD
      gitconf apply --ref v1.4.0 --dry-run   show what v1.4.0 would write
      gitconf apply -s payments -e prod --actor "release bot"
      gitconf apply -o markdown >> "$GITHUB_STEP_SUMMARY"
    """
    from ..reconcile import Request

    req = Request(ref=ref, services=service, environments=env, prune=not no_prune, full=full,
                  dry_run=dry_run, actor=actor, max_ops=max_txn_ops,
                  max_bytes=max_request_bytes, allow_mass_delete=allow_mass_delete)
    stream = None
    if dry_run:
        from .planstream import PlanStream

        stream = PlanStream(format.value, show_secrets,
                            con=console() if format is ReportFormat.text else None)
    with reconciler_for(repo, etcd, prefix, ref) as rec:
        check_selection(rec, ref, service, env)
        result, watch = _apply(rec, req, stream)
        scope = selection_size(rec, result.commit.sha, service, env)
    _show_apply(result, watch, scope, format, show_secrets, stream)
    if not result.ok:
        raise typer.Exit(1)


def _apply(rec: Reconciler, req: Request, stream: PlanStream | None,
           ) -> tuple[Result, Watch]:
    """One pass, with the follow-up pull requests of drift kept as overrides, and a progress
    bar for a person watching; a dry run's plans go to `stream` as they come."""
    from ..followup import PullRequests

    dry_run = stream is not None

    # settings and base branch are read only if a pull request is needed (drift kept as an
    # override): reading `.gitconf.yaml` goes through the root tree, large at 10,000 services
    prs = PullRequests(rec.source, rec.store, rec.keys, ref=req.ref)
    req.pull_request_state = prs.state
    bar: Progress | None = None
    if shows_progress() and not dry_run:
        bar = Progress(_expected_units(rec, req.ref, req.full, _list(req.services),
                                       _list(req.environments)))
        req.progress = bar.written
    watch = Watch(prune=req.prune, shown=stream, on_unit=bar.unit if bar else None)
    if bar is not None:
        with bar.bar:
            result = watch.run(rec, req)
    else:
        result = watch.run(rec, req)
    if not dry_run:
        result.new_overrides = [f.record for f in prs.after(result)]
    return result, watch


def _list(values: Any) -> list[str] | None:
    return list(values) if values is not None else None


def _show_apply(result: Result, watch: Watch, scope: int, format: ReportFormat,
                show_secrets: bool, stream: PlanStream | None) -> None:
    """A run's deploys, or a dry run's plans (already streamed: their counts and the rest)."""
    from .render import (
        Tally,
        apply_markdown,
        dry_run_summary,
        plan_json,
        plan_markdown,
        render_apply,
        render_skipped_failed,
        render_unpruned,
        unpruned_json,
    )

    tally = Tally.of(result, scope, watch.unpruned, stream.changing if stream else None)
    if format is ReportFormat.json:
        doc = result.as_json()
        if stream is not None:
            from .planstream import STREAMED

            doc.update(plan_json(result, show_secrets, False, STREAMED, stream.totals))
        if not watch.prune:
            doc["unpruned"] = unpruned_json(watch.unpruned)
        if stream is not None:
            stream.write_json(doc)
        else:
            out_json(doc)
    elif format is ReportFormat.markdown:
        if stream is not None:
            print(plan_markdown("apply --dry-run", result, False,
                                dry_run_summary(result, tally, stream.totals), watch.unpruned,
                                stream.md_units, stream.totals.units), end="")
        else:
            print(apply_markdown(result, tally, watch.unpruned), end="")
    elif stream is not None:
        assert stream.con is not None
        render_skipped_failed(stream.con, result.plan)
        render_unpruned(stream.con, watch.unpruned)
        stream.con.print(dry_run_summary(result, tally, stream.totals), markup=False)
    else:
        render_apply(console(), result, tally, watch.unpruned)
