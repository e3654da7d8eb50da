"""`gitconf override` and `gitconf overrides`: the on-call engineer's emergency fix, kept live
and turned into a pull request (SPEC §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CheckFailed, UsageError
from .app import (
    ETCD_ENV,
    GITHUB_ENV,
    REPO_ENV,
    ActorOpt,
    EtcdOpt,
    Format,
    FormatOpt,
    GitconfSubgroup,
    GitconfTyper,
    PrefixOpt,
    RepoOpt,
    app,
    console,
    edge,
    env_help,
    helptext,
    out_json,
)
from .context import default_prefix, reconciler_for

if TYPE_CHECKING:
    from ..followup import FollowUp
    from ..reconcile import Reconciler
    from ..records import OverrideRecord

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: shown in the record, the "
                                                          "history and the pull request.")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base", help=helptext("Branch the follow-up pull request targets [default: "
                            ".gitconf.yaml pull_requests.base, else the repository's current "
                            "branch]."))]

overrides_app = GitconfTyper(name="overrides", cls=GitconfSubgroup, no_args_is_help=False,
                             epilog=env_help(*ETCD_ENV))  # help: the callback's docstring
app.add_typer(overrides_app)


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV, *GITHUB_ENV, "GITHUB_ACTOR"))
@edge
def override(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    key: Annotated[str, typer.Argument(help="Flattened key, e.g. database.pool_size.")],
    value: Annotated[str | None, typer.Argument(
        help="One YAML flow value: 42, true, \"text\", [1, 2], {a: 1}.")] = None,
    reason: ReasonOpt = ...,  # type: ignore[assignment]
    ttl: Annotated[str | None, typer.Option(
        "--ttl", help="Return the key to Git after this long (30m, 4h, 2d, 1w).")] = None,
    unset: Annotated[bool, typer.Option("--unset", help="Remove the key instead.")] = False,
    no_pr: Annotated[bool, typer.Option("--no-pr", help="Push the branch but open no pull "
                                                        "request.")] = False,
    repo: RepoOpt = ".",
    base: BaseOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    actor: ActorOpt = None,
    format: FormatOpt = Format.text,
) -> None:
    """Change one key in etcd now, and open a pull request that makes Git agree.

    The value must pass the unit's schema; it is written at once with source
    `override` and held against apply and the daemon until the pull request
    merges (or Git gets the value another way), the pull request is closed,
    `gitconf overrides cancel` runs, or --ttl passes. A second override of the
    unit joins the same override and pull request.

    The pull request needs GITHUB_TOKEN (contents and pull requests: write) and
    the GitHub repository (`github:` in .gitconf.yaml, else the remote URL);
    without them the branch is pushed and gitconf prints the pull request to
    open by hand.

    Examples:
      gitconf override payments prod database.pool_size 80 --reason "INC-123"
      gitconf override payments prod flags.checkout false --ttl 4h --reason "..."
      gitconf override payments prod legacy.endpoint --unset --reason "..."
    """
    from ..actor import default_actor
    from ..overrides import UNSET, Actor, KeyEdit, expires, parse_ttl, parse_value

    if unset == (value is not None):
        raise UsageError("give a VALUE, or --unset (not both)")
    new_value = UNSET if unset else parse_value(str(value))
    lifetime = parse_ttl(ttl) if ttl else None
    who = default_actor(actor)
    with reconciler_for(repo, etcd, prefix) as rec:
        branch = _base_branch(rec, base)
        edit = KeyEdit(key, new_value)
        record = _write(rec, service, environment, edit, branch,
                        Actor(who, reason, expires_at=expires(lifetime)))
        follow = _follow_up(rec, record, branch, no_pr)
    _show(follow.record, follow, format)


def _base_branch(rec: Reconciler, base: str | None) -> str:
    from ..followup import base_branch, settings_at

    return base_branch(rec.source, settings_at(rec.source, "HEAD"), base)


def _write(rec: Reconciler, service: str, environment: str, edit: Any, branch: str,
           who: Any) -> OverrideRecord:
    """Check the override against the repository's rules and the unit's schema at the base
    branch, then write it; nothing is written when a check fails."""
    from ..livestate import read_unit
    from ..masking import Masker
    from ..model import UnitId
    from ..overrides import held_edits, values_with, write_override
    from ..repo_format import LoadOptions, iter_units, key_problem, read_layout, value_problem
    from ..schema import ServiceSchema, validate_values

    unit = UnitId(service, environment)
    head = rec.source.branch_head(branch) or rec.source.resolve("HEAD")
    tree = rec.source.tree(head)
    layout = read_layout(tree)
    files = layout.services.get(service)
    if files is None or environment not in files.envs:
        raise UsageError(f"no unit {unit} in the repository at {branch}")
    bad = key_problem(edit.key) or (None if edit.unset else value_problem(edit.value))
    if bad:
        raise CheckFailed(f"{edit.key}: {bad[1]} ({bad[0]}); nothing was written")
    schemas: dict[str, ServiceSchema] = {}
    desired = next(u for u, _ in iter_units(tree, layout, LoadOptions({service}, {environment}),
                                            schemas_out=schemas) if u is not None)
    live = read_unit(rec.store, rec.keys, unit)
    schema = schemas.get(service)
    masker = Masker.of(schema.secret_keys if schema else (),
                       live.record.secret_keys if live.record else ())
    if schema is not None:
        values = values_with(desired.values, [*held_edits(live), edit])
        problems = [p for p in validate_values(schema, values, desired.positions,
                                               files.envs[environment])
                    if p.severity == "error"]  # `unknown_keys: warn` warns, it does not refuse
        if problems:
            shown = "; ".join(p.message for p in problems[:5])
            raise CheckFailed(f"the schema of {service} refuses the override: {shown}; "
                              "nothing was written")
    return write_override(rec.store, rec.keys, unit, [edit], desired.values, masker, who)


def _follow_up(rec: Reconciler, record: OverrideRecord, branch: str, no_pr: bool) -> FollowUp:
    from ..followup import open_follow_up, settings_at

    return open_follow_up(rec.source, rec.store, rec.keys, record, branch,
                          settings_at(rec.source, "HEAD"), no_pr=no_pr)


def _show(record: OverrideRecord, follow: FollowUp, format: Format) -> None:
    from rich.markup import escape

    if format is Format.json:
        out_json({**record.shown(), "follow_up": follow.as_json()})
        return
    con = console()
    for k in record.keys:
        shown = "(removed)" if k.unset else _text(k.new)
        con.print(f"[green]✓[/] {record.service}/{record.environment} {escape(k.key)} = "
                  f"{escape(shown)} [dim](was {escape(_text(k.old))}; etcd revision "
                  f"{k.revision})[/]")
    con.print(f"override {record.id} is live" + (f", until {record.expires_at}"
                                                 if record.expires_at else ""), markup=False)
    if follow.pull_request and follow.pull_request.url:
        con.print(f"pull request: {follow.pull_request.url}", markup=False)
    elif follow.note:
        con.print(f"[yellow]![/] {escape(follow.note)}")


def _text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@overrides_app.callback(invoke_without_command=True)
@edge
def overrides(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Closed ones too.")] = False,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    format: FormatOpt = Format.text,
) -> None:
    """Open overrides (with --all, closed ones too), with their keys and pull requests.

    An override is a change made in etcd first (`gitconf override`, or drift kept under the
    `pr` policy): it holds its keys against apply until its pull request merges.

    Examples:
      gitconf overrides
      gitconf overrides --all -o json
      gitconf overrides cancel payments prod --reason "fixed upstream"
    """
    if ctx.invoked_subcommand is not None:
        return
    _list(all_, etcd, prefix, format)


@overrides_app.command("list")
@edge
def overrides_list(
    all_: Annotated[bool, typer.Option("--all", help="Closed ones too.")] = False,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    format: FormatOpt = Format.text,
) -> None:
    """Open overrides (with --all, closed ones too).

    Each with its keys (old and new values), who made it and why, and its pull request.

    Examples:
      gitconf overrides list --all -o json
    """
    _list(all_, etcd, prefix, format)


def _list(all_: bool, etcd: str | None, prefix: str, format: Format) -> None:
    from ..overrides import list_overrides
    from .context import keys_for, store_for

    with store_for(etcd) as store:
        records = list_overrides(store, keys_for(prefix), include_closed=all_)
    if format is Format.json:
        out_json({"overrides": [r.shown() for r in records]})
        return
    con = console()
    if not records:
        con.print("no open overrides" if not all_ else "no overrides")
        return
    for r in records:
        pr = r.pull_request.url if r.pull_request and r.pull_request.url else (
            r.pr_note or "no pull request yet")
        con.print(f"{r.id} {r.service}/{r.environment} [{r.state}] {r.source} by {r.by} at "
                  f"{r.created_at}: {r.reason}", markup=False)
        for k in r.keys:
            con.print(f"    {k.key}: {_text(k.old)} → "
                      f"{'(removed)' if k.unset else _text(k.new)}", markup=False)
        con.print(f"    {pr}" + (f"; expires {r.expires_at}" if r.expires_at else ""),
                  markup=False)


@overrides_app.command("cancel", epilog=env_help(*ETCD_ENV, *REPO_ENV, *GITHUB_ENV,
                                                 "GITHUB_ACTOR"))
@edge
def overrides_cancel(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why it is cancelled.")] = None,
    repo: RepoOpt = ".",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    actor: ActorOpt = None,
    format: FormatOpt = Format.text,
) -> None:
    """Return an override's keys to Git now (a deploy), close it and its pull request.

    The keys get Git's values back at once; the pull request is closed when GITHUB_TOKEN
    allows.

    Examples:
      gitconf overrides cancel payments prod --reason "fixed upstream"
    """
    from ..followup import close_pull_request, github_repo, settings_at
    from ..livestate import read_unit
    from ..model import UnitId
    from ..overrides import close_override
    from ..reconcile import Request

    unit = UnitId(service, environment)
    with reconciler_for(repo, etcd, prefix) as rec:
        live = read_unit(rec.store, rec.keys, unit)
        if live.override is None:
            raise CheckFailed(f"{unit} has no open override")
        closed = close_override(rec.store, rec.keys, live.override, live.override_revision,
                                "closed", reason or "cancelled")
        if closed is None:
            raise CheckFailed(f"{unit}: the override changed meanwhile; try again")
        result = rec.run(Request(units=[unit], actor=actor, drift_policy="revert"))
        settings = settings_at(rec.source, "HEAD")
        repo_name = github_repo(rec.source, settings)
        if repo_name:
            from ..github import from_env

            close_pull_request(from_env(repo_name), closed[0])
    if format is Format.json:
        out_json({**closed[0].shown(), "deploys": [d.as_json() for d in result.deploys]})
    else:
        console().print(f"override {closed[0].id} closed; {unit} is back to Git "
                        f"({len(result.deploys)} deploy(s))", markup=False)
    if not result.ok:
        raise typer.Exit(1)
