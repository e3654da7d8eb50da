"""`gitconf daemon`: the long-running reconciler (SPEC §6)."""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer

from ..errors import UsageError
from .app import ETCD_ENV, GITHUB_ENV, REPO_ENV, ActorOpt, EtcdOpt, PrefixOpt, app, edge, env_help
from .context import default_prefix, from_root

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`: `30s`, `2m`, `500ms`, `1h`, Go's compounds (`1m30s`), or a bare
    number of seconds (`30`). Zero and negative durations are refused."""
    spec = text.strip()
    try:
        seconds = float(spec)
    except ValueError:
        parts = _PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise UsageError(f"{text!r} is not a duration (30s, 2m, 500ms, 1h, 1m30s)") \
                from None
        seconds = sum(float(n) * _SCALE[u] for n, u in parts)
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{text!r} is not a duration more than zero")
    return seconds


@app.command(epilog=env_help(*ETCD_ENV, *REPO_ENV, "GITCONF_WEBHOOK_SECRET", *GITHUB_ENV))
@edge
def daemon(
    repo: Annotated[str, typer.Option("--repo", "-r", envvar="GITCONF_REPO",
                                      help="URL (https://, ssh://, file://) fetched into a "
                                           "cache, or a local working tree / bare repository "
                                           "watched for new commits.")],
    branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to follow.")] = "main",
    interval: Annotated[str, typer.Option("--interval", help="Poll interval: 30s, 2m, "
                                                             "500ms, 1h, 1m30s.")] = "30s",
    listen: Annotated[str, typer.Option("--listen", help="host:port for /healthz, /readyz, "
                                                         "/metrics and the webhook; :port "
                                                         "for every interface.")
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
    /readyz, /metrics; SIGTERM stops cleanly. A configuration error (the listen address taken,
    no such repository or branch, etcd refusing the credentials) stops it at start with exit
    status 2; etcd or a remote that cannot be reached yet is retried.

    Examples:
      gitconf daemon --repo https://github.com/acme/config --branch main --listen :8080
      gitconf daemon --repo /srv/config --interval 1m --log-format json
      GITCONF_WEBHOOK_SECRET=... gitconf --etcd 10.0.0.5:2379 daemon --repo ssh://git@host/config"""
    from ..daemon.core import DaemonConfig, run_daemon
    from ..daemon.http import parse_listen

    if log_format not in ("text", "json"):
        raise UsageError("--log-format is text or json")
    parse_listen(listen)  # a usage error before anything starts
    cfg = DaemonConfig(repo=repo, branch=branch, interval=parse_duration(interval),
                       listen=listen, etcd=from_root("etcd", etcd),
                       prefix=from_root("prefix", prefix), lease_ttl=lease_ttl,
                       actor=actor, worktree=worktree, max_ops=max_txn_ops,
                       webhook_secret=os.environ.get("GITCONF_WEBHOOK_SECRET") or None)
    raise typer.Exit(run_daemon(cfg, log_format))
