"""Read-only commands for the on-call engineer: `status`, `history`, `get`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import CheckFailed
from ..model import UnitId
from ..records import DeployRecord
from .app import (
    EtcdOpt,
    Format,
    FormatOpt,
    PrefixOpt,
    RefOpt,
    RepoOpt,
    ShowSecretsOpt,
    app,
    console,
    edge,
    out_json,
)
from .context import default_prefix, keys_for, reconciler_for, store_for

STATE_STYLE = {"in-sync": "green", "out-of-sync": "yellow", "drifted": "magenta",
               "pinned": "cyan", "failed": "red"}


@app.command()
@edge
def status(
    repo: RepoOpt = ".",
    ref: RefOpt = "HEAD",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    format: FormatOpt = Format.text,
) -> None:
    """Each unit's state: in-sync, out-of-sync, drifted, pinned or failed.

    Pins are shown with who set them, when and why."""
    from rich.markup import escape
    from rich.table import Table

    from ..status import unit_status

    with reconciler_for(repo, etcd, prefix) as rec:
        target, units = unit_status(rec, ref)
    if format is Format.json:
        out_json({"ref": ref, "commit": target, "units": [u.as_json() for u in units]})
        return
    con = console()
    table = Table(box=None, show_edge=False, pad_edge=False)
    for col in ("unit", "state", "deploy", "deployed", "note"):
        table.add_column(col)
    for u in units:
        style = STATE_STYLE.get(u.state, "")
        note = ""
        if u.pin:
            note = (f"pinned to {u.pin.commit[:12]} by {u.pin.by} at {u.pin.at}: "
                    f"{u.pin.reason or ''}")
        elif u.state == "failed":
            note = u.reason or ""
        elif u.state == "drifted":
            note = "changed in etcd: " + ", ".join(u.drifted[:5])
        elif u.changes:
            note = f"{u.changes} change(s) to apply"
        table.add_row(str(u.unit), f"[{style}]{u.state}[/]",
                      f"#{u.deploy}" if u.deploy else "-",
                      (u.deployed_commit or "-")[:12], escape(note))
    con.print(table)
    counts: dict[str, int] = {}
    for u in units:
        counts[u.state] = counts.get(u.state, 0) + 1
    con.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no units")


@app.command()
@edge
def history(
    service: Annotated[str, typer.Argument()],
    environment: Annotated[str, typer.Argument()],
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N deploys.")] = 20,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the keys.")] = False,
    format: FormatOpt = Format.text,
) -> None:
    """The deploys of one unit, newest first (secrets masked)."""
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
        table.add_row(f"#{r.deploy}", escape(r.version), r.commit[:12], _source_label(r),
                      escape(r.deployed_by), r.deployed_at, str(len(r.added)),
                      str(len(r.changed)), str(len(r.deleted)))
    con.print(table)
    if verbose:
        from .render import show

        for r in records:
            con.print(f"[bold]#{r.deploy}[/] {escape(r.subject or '')}")
            for item in r.added:
                con.print(f"  [green]+ {escape(item.key)}[/]")
            for item in r.changed:
                con.print(f"  [yellow]~ {escape(item.key)}[/]: {escape(show(item.old))} "
                          f"→ {escape(show(item.new))}")
            for item in r.deleted:
                con.print(f"  [red]- {escape(item.key)}[/]")


def _source_label(r: DeployRecord) -> str:
    """The source column: drift reverts and lifted pins say so."""
    notes = [n for n, on in (("drift reverted", r.reverted_drift), ("pin lifted", r.lifted_pin))
             if on]
    return r.source + (f" ({', '.join(notes)})" if notes else "")


@app.command()
@edge
def get(
    service: Annotated[str, typer.Argument()],
    environment: Annotated[str, typer.Argument()],
    key: Annotated[str | None, typer.Argument(help="One key: prints its envelope.")] = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    show_secrets: ShowSecretsOpt = False,
    format: FormatOpt = Format.text,
) -> None:
    """What etcd holds for a unit (values) or one key (its whole envelope)."""
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
