"""`gitconf diff` and `gitconf apply`: the same reconcile pass, without and with writing."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .app import (
    ActorOpt,
    EnvOpt,
    EtcdOpt,
    Format,
    FormatOpt,
    PrefixOpt,
    RefOpt,
    RepoOpt,
    ServiceOpt,
    ShowSecretsOpt,
    app,
    console,
    edge,
    out_json,
)
from .context import default_prefix, reconciler_for

FullOpt = Annotated[bool, typer.Option("--full", help="Re-plan every unit, not only those "
                                                      "changed since the last apply.")]


@app.command()
@edge
def diff(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    service: ServiceOpt = None,
    env: EnvOpt = None,
    full: FullOpt = False,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Do not show deletions.")] = False,
    exit_code: Annotated[bool, typer.Option("--exit-code",
                                            help="Exit 1 when there are differences.")] = False,
    show_secrets: ShowSecretsOpt = False,
    format: FormatOpt = Format.text,
) -> None:
    """Show what apply would change in etcd: keys added, changed and deleted per unit."""
    from ..reconcile import Request
    from .render import plan_json, render_plan

    with reconciler_for(repo, etcd, prefix, ref) as rec:
        result = rec.run(Request(ref=ref, services=service, environments=env, full=full,
                                 prune=not no_prune, dry_run=True))
    if format is Format.json:
        out_json(plan_json(result, show_secrets))
    else:
        con = console()
        render_plan(con, result.plan, show_secrets)
        n = sum(len(u.changes) for u in result.plan.units)
        if n == 0 and result.ok:
            con.print(f"no differences: etcd matches {result.commit.version}")
    if not result.ok:
        raise typer.Exit(1)
    if exit_code and any(u.changes for u in result.plan.units):
        raise typer.Exit(1)


@app.command()
@edge
def apply(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    service: ServiceOpt = None,
    env: EnvOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and show; write nothing.")
                       ] = False,
    no_prune: Annotated[bool, typer.Option("--no-prune",
                                           help="Keep keys that Git no longer has.")] = False,
    full: FullOpt = False,
    actor: ActorOpt = None,
    max_txn_ops: Annotated[int, typer.Option("--max-txn-ops", min=4,
                                             help="etcd's --max-txn-ops.")] = 128,
    max_request_bytes: Annotated[int, typer.Option("--max-request-bytes", min=65536,
                                                   help="etcd's --max-request-bytes.")
                                 ] = 1_572_864,
    show_secrets: ShowSecretsOpt = False,
    format: FormatOpt = Format.text,
) -> None:
    """Apply a commit to etcd: one versioned deploy per changed unit.

    Writes are guarded against concurrent writers; invalid units are not applied (exit 1),
    pinned units are skipped, keys Git no longer has are pruned (unless --no-prune)."""
    from ..reconcile import Request
    from .render import plan_json, render_apply, render_plan

    con = console()
    progress: Any = None
    if format is Format.text and con.is_terminal and not dry_run:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("writing"), BarColumn(), TextColumn("{task.completed} keys"),
                            TimeElapsedColumn(), console=con, transient=True)
    task = None

    def advance(n: int) -> None:
        if progress is not None and task is not None:
            progress.advance(task, n)

    req = Request(ref=ref, services=service, environments=env, prune=not no_prune, full=full,
                  dry_run=dry_run, actor=actor, max_ops=max_txn_ops,
                  max_bytes=max_request_bytes, progress=advance)
    with reconciler_for(repo, etcd, prefix, ref) as rec:
        from ..followup import PullRequests, base_branch, settings_at

        settings = settings_at(rec.source, ref)
        prs = PullRequests(rec.source, rec.store, rec.keys, settings,
                           base_branch(rec.source, settings))
        req.pull_request_state = prs.state
        if progress is not None:
            with progress:
                task = progress.add_task("apply", total=None)
                result = rec.run(req)
        else:
            result = rec.run(req)
        if not dry_run:
            result.new_overrides = [f.record for f in prs.after(result)]
    if format is Format.json:
        doc = result.as_json() if not dry_run else {**result.as_json(),
                                                    **plan_json(result, show_secrets)}
        out_json(doc)
    elif dry_run:
        render_plan(con, result.plan, show_secrets)
    else:
        render_apply(con, result)
    if not result.ok:
        raise typer.Exit(1)
