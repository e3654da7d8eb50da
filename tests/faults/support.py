"""Helpers shared by the fault tests: etcdctl against a plain-HTTP etcd, clusters with fast
elections, which etcd member a process is talking to, one-line error checks, and reading what
gitconf left in etcd for one unit."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gitconf.embedded_etcd import EmbeddedEtcd, etcd_binary
from gitconf.model import UnitId
from gitconf.records import Keys
from gitconf.repo_format import load_desired
from gitconf.store import Store
from gitconf.trees import FileTree
from tests.helpers import Run

_COMMAND: Any = None


def quick_cli(*args: str, env: Mapping[str, str] | None = None) -> Run:
    """`tests.helpers.cli` without rebuilding the click command from the typer app on every
    call (~0.1 s each): for loops that run thousands of reads."""
    global _COMMAND
    import typer.testing

    from gitconf.cli.main import app

    if _COMMAND is None:
        _COMMAND = typer.testing._get_command(app)
    saved = typer.testing._get_command
    setattr(typer.testing, "_get_command", lambda _app: _COMMAND)  # noqa: B010
    try:
        result = typer.testing.CliRunner().invoke(app, list(args), env=dict(env or {}),
                                                  catch_exceptions=False)
    finally:
        setattr(typer.testing, "_get_command", saved)  # noqa: B010
    return Run(result.exit_code, result.stdout, result.stderr)


# elections in well under a second instead of etcd's 1 s heartbeat-based default (a frozen or
# killed leader is replaced quickly, keeping the tests short)
FAST_ELECTION = ("--heartbeat-interval", "50", "--election-timeout", "400")


def etcdctl(endpoints: str | Iterable[str], *args: str, user: str | None = None,
            check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`etcdctl` against plain-HTTP endpoints (host:port, comma-separated or a list)."""
    if not isinstance(endpoints, str):
        endpoints = ",".join(endpoints)
    urls = ",".join(f"http://{e}" for e in endpoints.split(","))
    ctl = str(Path(etcd_binary()).with_name("etcdctl"))
    cmd = [ctl, f"--endpoints={urls}", "--dial-timeout=3s", "--command-timeout=10s"]
    if user:
        cmd.append(f"--user={user}")
    res = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"etcdctl {' '.join(args)}: {res.stderr}"
    return res


def start_fast_cluster(size: int = 3) -> list[EmbeddedEtcd]:
    """Like `embedded_etcd.start_cluster`, with fast elections."""
    members = [EmbeddedEtcd(name=f"m{i}", extra_args=FAST_ELECTION) for i in range(size)]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for m in members:
            m.initial_cluster = cluster
            m.start(wait=False)
        for m in members:
            m.wait_ready()
    except BaseException:
        for m in members:
            m.cleanup()
        raise
    return members


def leader_of(members: list[EmbeddedEtcd]) -> EmbeddedEtcd:
    """The member that currently leads (asked of every live member)."""
    live = [m for m in members if m.process is not None]
    res = etcdctl([m.endpoint for m in live], "endpoint", "status", "-w", "json")
    status = json.loads(res.stdout)
    leader_id = status[0]["Status"]["leader"]
    for st in status:
        if st["Status"]["header"]["member_id"] == leader_id:
            port = int(st["Endpoint"].rsplit(":", 1)[1])
            return next(m for m in live if m.client_port == port)
    raise AssertionError(f"no leader among {status}")


def peer_ports(pid: int) -> set[int]:
    """Remote TCP ports of the established connections of process `pid` (Linux /proc): which
    etcd member a gitconf process is talking to."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes and parts[3] == "01":  # ESTABLISHED
                ports.add(int(parts[2].rsplit(":", 1)[1], 16))
    return ports


def assert_one_line_error(run: Run | subprocess.CompletedProcess[str], *,
                          contains: str = "") -> str:
    """A clean failure: exit 2 and exactly one line on stderr, no traceback."""
    code = run.exit_code if isinstance(run, Run) else run.returncode
    text = run.stderr.strip()
    assert code == 2, f"exit {code}: {run.stderr}{run.stdout}"
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"not one line: {run.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


def desired_values(root: Path) -> dict[UnitId, dict[str, Any]]:
    """What Git says, per unit, read from a working tree with gitconf's own loader."""
    state = load_desired(FileTree(root))
    return {u: dict(d.values) for u, d in state.units.items()}


def live_values(env: Mapping[str, str], unit: UnitId) -> dict[str, Any] | None:
    """`gitconf get SERVICE ENV -f json` values; None when etcd has nothing for the unit."""
    res = quick_cli("get", unit.service, unit.environment, "-f", "json", "--show-secrets",
                    env=env)
    if res.exit_code == 1:
        return None
    assert res.exit_code == 0, res.stderr
    return dict(res.json()["values"])


def history(env: Mapping[str, str], unit: UnitId, limit: int = 10_000) -> list[dict[str, Any]]:
    """The unit's deploy records, oldest first."""
    res = quick_cli("history", unit.service, unit.environment, "-n", str(limit), "-f", "json",
                    env=env)
    assert res.exit_code == 0, res.stderr
    return list(reversed(res.json()["deploys"]))


def check_history(records: list[dict[str, Any]], live_keys: Iterable[str]) -> None:
    """Deploy numbers 1..N without gaps, and key lists that replay to the live keys: a key is
    added only when absent, changed or deleted only when present, and in one list only."""
    numbers = [r["deploy"] for r in records]
    assert numbers == list(range(1, len(records) + 1)), f"deploy numbers {numbers}"
    present: set[str] = set()
    for r in records:
        added = [i["key"] for i in r["added"]]
        changed = [i["key"] for i in r["changed"]]
        deleted = [i["key"] for i in r["deleted"]]
        every = added + changed + deleted
        assert len(every) == len(set(every)), f"#{r['deploy']}: a key in two lists"
        assert not set(added) & present, f"#{r['deploy']} adds present keys " \
            f"{sorted(set(added) & present)[:5]}"
        assert set(changed) <= present, f"#{r['deploy']} changes absent keys " \
            f"{sorted(set(changed) - present)[:5]}"
        assert set(deleted) <= present, f"#{r['deploy']} deletes absent keys " \
            f"{sorted(set(deleted) - present)[:5]}"
        present = (present | set(added)) - set(deleted)
    assert present == set(live_keys), \
        f"history replays to {len(present)} keys, etcd has {len(set(live_keys))}"


def unit_state(store: Store, keys: Keys, unit: UnitId) -> dict[str, Any]:
    """The raw state of a unit: its values by key, its record's deploy number, and whether a
    multi-transaction deploy is pending."""
    kvs, _ = store.scan(keys.unit_prefix(unit))
    values = {kv.key[len(keys.unit_prefix(unit)):].decode(): json.loads(kv.value)["value"]
              for kv in kvs}
    rec = store.get(keys.unit_record(unit))
    return {"values": values, "deploy": json.loads(rec.value)["deploy"] if rec else 0,
            "pending": store.get(keys.pending(unit)) is not None}
