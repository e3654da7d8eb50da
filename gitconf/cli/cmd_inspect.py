"""Read-only commands for the on-call engineer: `status`, `history`, `get`."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CheckFailed
from ..model import UnitId
from ..records import DeployRecord
from .app import (
    ETCD_ENV,
    REPO_ENV,
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
    env_help,
    out_json,
)
from .context import keys_for, reconciler_for, store_for

if TYPE_CHECKING:
    from ..status import UnitStatus

STATE_STYLE = {"in-sync": "green", "out-of-sync": "yellow", "drifted": "magenta",
               "overridden": "magenta", "pinned": "cyan", "failed": "red"}


class State(str, Enum):
    in_sync = "in-sync"
    out_of_sync = "out-of-sync"
    drifted = "drifted"
    overridden = "overridden"
    pinned = "pinned"
    failed = "failed"


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV))
@edge
def status(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    service: ServiceOpt = None,
    env: EnvOpt = None,
    state: Annotated[list[State] | None, typer.Option(
        "--state", help="Only units in this state (repeatable).")] = None,
    exit_code: Annotated[bool, typer.Option(
        "--exit-code", help="Exit 1 when a unit shown is not in-sync.")] = False,
    format: FormatOpt = Format.text,
) -> None:
    """Each unit's state: in-sync, out-of-sync, drifted, overridden, pinned or failed.

    Pins are shown with who set them, when and why; drifted units with the keys
    someone changed in etcd. Nothing is written.

    Examples:
      gitconf status                     every unit
      gitconf status -s payments -e prod   one unit
      gitconf status --state drifted --state pinned
      gitconf status --exit-code -o json   exit 1 unless everything is in sync
    """
    from ..status import unit_status
    from .context import unmatched

    with reconciler_for(repo, etcd, prefix) as rec:
        target, units = unit_status(rec, ref)
    if service or env:
        missing = unmatched({u.unit for u in units}, service, env)
        if missing:
            raise CheckFailed(f"no unit matches {' '.join(missing)} at {ref}")
    wanted = {s.value for s in state or ()}
    units = [u for u in units if (not service or u.unit.service in service)
             and (not env or u.unit.environment in env) and (not wanted or u.state in wanted)]
    if format is Format.json:
        out_json({"ref": ref, "commit": target, "units": [u.as_json() for u in units]})
    else:
        _status_table(units, bool(service or env or state))
    if exit_code and any(u.state != "in-sync" for u in units):
        raise typer.Exit(1)


def _status_table(units: list[UnitStatus], filtered: bool) -> None:
    from .grid import grid

    con = console()
    if units:
        grid(con, [(col, "left") for col in ("unit", "state", "deploy", "deployed", "note")],
             ([str(u.unit), ((u.state, STATE_STYLE.get(u.state, "")),),
               f"#{u.deploy}" if u.deploy else "-", (u.deployed_commit or "-")[:12], _note(u)]
              for u in units))
    counts: dict[str, int] = {}
    for u in units:
        counts[u.state] = counts.get(u.state, 0) + 1
    line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    con.print(line or ("no unit matches" if filtered else "no units"), markup=False)


def _note(u: UnitStatus) -> str:
    if u.pin:
        return (f"pinned to {u.pin.commit[:12]} by {u.pin.by} at {u.pin.at}: "
                f"{u.pin.reason or ''}")
    if u.state == "failed":
        return u.reason or ""
    if u.state == "overridden":
        return u.reason or "held by an override"
    if u.state == "drifted":
        more = f" and {len(u.drifted) - 5} more" if len(u.drifted) > 5 else ""
        return "changed in etcd: " + ", ".join(u.drifted[:5]) + more
    if u.changes:
        return f"{u.changes} change(s) to apply"
    return ""


@app.command(epilog=env_help(*ETCD_ENV))
@edge
def history(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N deploys.")] = 20,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the keys.")] = False,
    format: FormatOpt = Format.text,
) -> None:
    """The deploys of one unit, newest first (secrets masked).

    The source column tells a Git deploy from a rollback (to which commit), an
    override deploy (which override), a drift revert and a deploy that lifted a
    pin.

    Examples:
      gitconf history payments prod
      gitconf history payments prod -n 5 -v   the last five, key by key
      gitconf history payments prod -o json
    """
    from rich.markup import escape
    from rich.table import Table

    from ..history import read_history

    unit = UnitId(service, environment)
    keys = keys_for(prefix)
    with store_for(etcd) as store:
        records = read_history(store, keys, unit, limit)
    if format is Format.json:
        out_json({"service": service, "environment": environment,
                  "deploys": [r.as_dict() for r in records]})
        return
    con = console()
    table = Table(box=None, show_edge=False, pad_edge=False)
    for col in ("deploy", "version", "commit", "source", "deployed by", "at", "+", "~", "-"):
        table.add_column(col)
    for r in records:
        table.add_row(f"#{r.deploy}", escape(r.version), r.commit[:12], escape(source_label(r)),
                      escape(r.deployed_by), r.deployed_at, str(len(r.added)),
                      str(len(r.changed)), str(len(r.deleted)))
    con.print(table)
    if verbose:
        _history_keys(con, records)


def _history_keys(con: Any, records: list[DeployRecord]) -> None:
    from rich.markup import escape

    from .render import show

    for r in records:
        con.print(f"[bold]#{r.deploy}[/] {escape(source_label(r))}: {escape(r.subject or '')}")
        for item in r.added:
            con.print(f"  [green]+ {escape(item.key)}[/]")
        for item in r.changed:
            con.print(f"  [yellow]~ {escape(item.key)}[/]: {escape(show(item.old))} "
                      f"→ {escape(show(item.new))}")
        for item in r.deleted:
            con.print(f"  [red]- {escape(item.key)}[/]")


def source_label(r: DeployRecord) -> str:
    """What kind of deploy: `git`, `rollback to <commit>`, `override <id>`, with `drift
    reverted` and `pin lifted` when they apply."""
    label: str = r.source
    if r.source == "rollback" and r.restored_commit:
        label = f"rollback to {r.restored_commit[:12]}"
    elif r.source == "override":
        label = f"override {r.override}" if r.override else "override"
    notes = [n for n, on in (("drift reverted", r.reverted_drift), ("pin lifted", r.lifted_pin))
             if on]
    return label + (f" ({', '.join(notes)})" if notes else "")


@app.command(epilog=env_help(*ETCD_ENV))
@edge
def get(
    service: Annotated[str, typer.Argument(help="The service, e.g. payments.")],
    environment: Annotated[str, typer.Argument(help="The environment, e.g. prod.")],
    key: Annotated[str | None, typer.Argument(
        help="One flattened key, e.g. database.pool_size: prints its whole envelope.")] = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = "/config",
    show_secrets: ShowSecretsOpt = False,
    format: FormatOpt = Format.text,
) -> None:
    """What etcd holds for a unit (its values) or for one key (its envelope).

    A key's envelope is its value, version and provenance: commit, author,
    approver, who deployed it and when. Secrets are shown as *** unless
    --show-secrets.

    Examples:
      gitconf get payments prod          every key = value
      gitconf get payments prod database.pool_size   its value and provenance
      gitconf get payments prod -o json
    """
    from rich.markup import escape

    from ..livestate import read_unit
    from ..masking import Masker
    from ..plan import NOT_ENVELOPE
    from .render import show

    unit = UnitId(service, environment)
    keys = keys_for(prefix)
    with store_for(etcd) as store:
        live = read_unit(store, keys, unit, keep_envelopes=True)
    masker = Masker.of(live.record.secret_keys if live.record else (), show=show_secrets)

    def visible(k: str, v: Any) -> Any:
        if v is NOT_ENVELOPE:
            v = live.keys[k].raw.decode("utf-8", "replace")
        return masker.value(k, v)

    if key is not None:
        lk = live.keys.get(key)
        if lk is None:
            raise CheckFailed(f"{unit} has no key {key!r}")
        if lk.envelope is not None:
            envelope = {**lk.envelope, "value": visible(key, lk.value)}
        else:
            envelope = {"raw": visible(key, lk.value)}
        if format is Format.json:
            out_json(envelope)
        else:
            console().print_json(data=envelope)
        return
    if not live.keys and live.record is None:
        raise CheckFailed(f"{unit} has no keys under {keys.prefix or '/'}")
    values = {k: visible(k, v.value) for k, v in sorted(live.keys.items())}
    if format is Format.json:
        out_json({"service": service, "environment": environment, "values": values})
        return
    con = console()
    for k, v in values.items():
        con.print(f"{escape(k)} = {escape(show(v))}")
