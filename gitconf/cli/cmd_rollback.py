"""`gitconf rollback`, `gitconf pin`, `gitconf unpin`: what the on-call engineer reaches for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import CheckFailed, UsageError
from .app import (
    ETCD_ENV,
    REPO_ENV,
    ActorOpt,
    EnvOpt,
    EtcdOpt,
    Format,
    FormatOpt,
    PrefixOpt,
    RepoOpt,
    ServiceOpt,
    ShowSecretsOpt,
    app,
    console,
    edge,
    env_help,
    helptext,
    is_terminal,
    out_json,
)
from .context import keys_for, reconciler_for, store_for

if TYPE_CHECKING:
    from rich.console import Console

    from ..reconcile import Result
    from ..rollback import RollbackTarget

ReasonOpt = Annotated[str | None, typer.Option("--reason", "-m", help="Why (kept with the pin).")]
HeadOpt = Annotated[str, typer.Option("--head", help="The branch head the pin is measured "
                                                     "against (see docs/rollback.md).")]


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV, "GITHUB_ACTOR"))
@edge
def rollback(
    commit: Annotated[str | None, typer.Argument(
        help="The commit to restore (any commit-ish: a SHA, a tag, main~2).")] = None,
    repo: RepoOpt = ".",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    service: ServiceOpt = None,
    env: EnvOpt = None,
    to_previous: Annotated[tuple[str, str] | None, typer.Option(
        "--to-previous", metavar="SERVICE ENV",
        help="Undo the unit's last deploy: restore what it ran before.")] = None,
    head: HeadOpt = "HEAD",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
                   ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")
                       ] = False,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    max_txn_ops: Annotated[int, typer.Option("--max-txn-ops", min=4,
                                             help="etcd's --max-txn-ops.")] = 128,
    show_secrets: ShowSecretsOpt = False,
    format: FormatOpt = Format.text,
) -> None:
    """Restore units exactly to what COMMIT had, and pin them.

    Values become COMMIT's and keys it did not have are deleted, as a deploy
    with source `rollback`; the units are then pinned so apply and the daemon
    leave them alone, until `gitconf unpin` or a newer commit that changes them.
    Without --service/--env: every unit changed since COMMIT. Asks for
    confirmation unless --yes.

    Examples:
      gitconf rollback v1.3.0 -s payments -e prod -m "INC-42: checkout errors"
      gitconf rollback --to-previous payments prod --yes   undo the last deploy
      gitconf rollback main~3 --dry-run   what the units changed since would get
    """
    from ..model import UnitId
    from ..rollback import previous_commit, resolve_units
    from ..rollback import rollback as do_rollback

    if to_previous is not None:
        if commit or service or env:
            raise UsageError("--to-previous SERVICE ENV takes no COMMIT, --service or --env")
    elif commit is None:
        raise UsageError("give the COMMIT to restore, or --to-previous SERVICE ENV")
    con = console()
    with reconciler_for(repo, etcd, prefix) as rec:
        if to_previous is not None:
            unit = UnitId(*to_previous)
            commit = previous_commit(rec, unit)
            service, env = [unit.service], [unit.environment]
        assert commit is not None
        target = resolve_units(rec, commit, service, env, head)
        if not target.units:
            _nothing_changed(con, commit, target, format)
            return
        planned = do_rollback(rec, target, actor, reason, dry_run=True)
        if not _go_ahead(con, target, planned, dry_run=dry_run, yes=yes, format=format,
                         show_secrets=show_secrets):
            return
        result = do_rollback(rec, target, actor, reason, max_ops=max_txn_ops)
    _show_rollback(con, target, result, format)
    if not result.ok:
        raise typer.Exit(1)


def _nothing_changed(con: Console, commit: str, target: RollbackTarget, format: Format) -> None:
    if format is Format.json:
        out_json({"ref": commit, "commit": target.commit, "deploys": [], "skipped": [],
                  "failed": []})
    else:
        con.print(f"nothing changed since {commit}: no unit to roll back")


def _go_ahead(con: Console, target: RollbackTarget, planned: Result, *, dry_run: bool,
              yes: bool, format: Format, show_secrets: bool) -> bool:
    """Show the plan of a dry run (and stop), or ask for confirmation unless --yes."""
    from .render import plan_json, render_plan

    if dry_run:
        if format is Format.json:
            out_json({**plan_json(planned, show_secrets), "dry_run": True})
        else:
            render_plan(con, planned.plan, show_secrets)
            _summary(con, target, planned, dry_run=True)
        return False
    if yes:
        return True
    if not is_terminal():
        raise UsageError("rollback asks for confirmation: run it from a terminal, or pass --yes")
    render_plan(con, planned.plan, show_secrets)
    _summary(con, target, planned, dry_run=False)
    if not typer.confirm("Roll back and pin these units?", default=False):
        con.print("rollback cancelled; nothing written")
        return False
    return True


def _show_rollback(con: Console, target: RollbackTarget, result: Result, format: Format) -> None:
    from .render import render_apply

    if format is Format.json:
        out_json(result.as_json())
        return
    pinned = [u for u in target.units if u not in {f for f, _ in result.failed}]
    render_apply(con, result, notes=[
        f"pinned {len(pinned)} unit(s) to {target.commit[:12]}; `gitconf unpin SERVICE "
        "ENV` hands them back to apply"] if pinned else [])


def _summary(con: Console, target: RollbackTarget, planned: Result, dry_run: bool) -> None:
    n = sum(1 for u in planned.plan.units if u.changes)
    for unit in target.removed:
        con.print(f"[red]{unit} did not exist at {target.commit[:12]}: it will be removed "
                  "entirely[/]")
    line = f"{len(target.units)} unit(s) back to {planned.commit.version}: {n} with changes"
    con.print(f"dry run, nothing written: {line}" if dry_run else line, markup=False)


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV, "GITHUB_ACTOR"))
@edge
def pin(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    commit: Annotated[str | None, typer.Argument(
        help=helptext("Commit to record [default: the one deployed now].")
    )] = None,
    reason: ReasonOpt = None,
    repo: RepoOpt = ".",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    head: HeadOpt = "HEAD",
    actor: ActorOpt = None,
    format: FormatOpt = Format.text,
) -> None:
    """Freeze a unit without changing it.

    Apply and the daemon skip it until `gitconf unpin`, or until a commit on top
    of today's branch head changes its files.

    Examples:
      gitconf pin payments prod -m "freeze for the launch"
      gitconf pin payments prod v1.3.0 -m "hold at v1.3.0"
    """
    from ..actor import default_actor
    from ..livestate import read_unit
    from ..model import UnitId
    from ..pins import new_pin, set_pin

    unit = UnitId(service, environment)
    with reconciler_for(repo, etcd, prefix) as rec:
        live = read_unit(rec.store, rec.keys, unit)
        if live.record is None and not live.keys:
            raise CheckFailed(f"{unit} has never been deployed under {rec.keys.prefix or '/'}")
        if commit:
            sha = rec.source.resolve(commit)
        elif live.record is not None:
            sha = live.record.commit
        else:
            raise CheckFailed(f"{unit} has no deploy record: name the COMMIT to pin it to")
        record = new_pin(sha, rec.source.resolve(head), default_actor(actor), reason)
        set_pin(rec.store, rec.keys, unit, record)
    if format is Format.json:
        out_json({"service": service, "environment": environment, "pin": record.as_dict()})
    else:
        console().print(f"pinned {unit} to {sha[:12]}")


@app.command(epilog=env_help(*ETCD_ENV))
@edge
def unpin(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    repo: RepoOpt = ".",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    format: FormatOpt = Format.text,
) -> None:
    """Hand a pinned unit back to apply and the daemon (the next apply converges it).

    A unit that is not pinned is left as it is (exit 0).

    Examples:
      gitconf unpin payments prod && gitconf apply -s payments -e prod
    """
    from ..model import UnitId
    from ..pins import unpin as do_unpin

    unit = UnitId(service, environment)
    with store_for(etcd) as store:
        old = do_unpin(store, keys_for(prefix), unit)
    if old is None:
        if format is Format.json:
            out_json({"service": service, "environment": environment, "unpinned": None})
        else:
            console().print(f"{unit} is not pinned: nothing to do")
        return
    if format is Format.json:
        out_json({"service": service, "environment": environment, "unpinned": old.as_dict()})
    else:
        console().print(f"unpinned {unit} (was pinned to {old.commit[:12]}); "
                        "run `gitconf apply` to converge it")
