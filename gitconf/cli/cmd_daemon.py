"""`gitconf daemon`: the long-running reconciler (SPEC §6)."""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer

from ..errors import UsageError
from .app import ActorOpt, EtcdOpt, PrefixOpt, app, edge
from .context import default_prefix

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"{text!r} is not a duration (30s, 2m, 500ms, 1h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


@app.command()
@edge
def daemon(
    repo: Annotated[str, typer.Option("--repo", "-r", envvar="GITCONF_REPO",
                                      help="URL (https://, ssh://, file://) fetched into a "
                                           "cache, or a local working tree / bare repository "
                                           "watched for new commits.")],
    branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to follow.")] = "main",
    interval: Annotated[str, typer.Option("--interval", help="Poll interval.")] = "30s",
    listen: Annotated[str, typer.Option("--listen", help="host:port for /healthz, /readyz, "
                                                         "/metrics and the webhook.")
                      ] = "127.0.0.1:8080",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = default_prefix(),
    lease_ttl: Annotated[int, typer.Option("--lease-ttl", min=2,
                                           help="Leader lease TTL in seconds.")] = 10,
    actor: ActorOpt = None,
    worktree: Annotated[bool, typer.Option(
        "--worktree", help="Also apply uncommitted edits of a local working tree (local "
                           "development only).")] = False,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json.")] = "text",
    max_txn_ops: Annotated[int, typer.Option("--max-txn-ops", min=4,
                                             help="etcd's --max-txn-ops.")] = 128,
) -> None:
    """Keep etcd equal to a Git branch, as a long-running process.

    Triggers: the poll, a GitHub push webhook (GITCONF_WEBHOOK_SECRET), file events of a local
    repository, and writes to etcd by anyone else (drift). One leader among replicas; /healthz,
    /readyz, /metrics; SIGTERM stops cleanly."""
    from ..daemon.core import DaemonConfig, run_daemon

    if log_format not in ("text", "json"):
        raise UsageError("--log-format is text or json")
    cfg = DaemonConfig(repo=repo, branch=branch, interval=parse_duration(interval),
                       listen=listen, etcd=etcd, prefix=prefix, lease_ttl=lease_ttl,
                       actor=actor, worktree=worktree, max_ops=max_txn_ops,
                       webhook_secret=os.environ.get("GITCONF_WEBHOOK_SECRET") or None)
    raise typer.Exit(run_daemon(cfg, log_format))
