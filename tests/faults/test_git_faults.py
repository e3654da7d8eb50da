"""Git failing under gitconf: the remote unreachable (its directory moved away, or replaced by
an empty repository) for `apply --repo file://…` and for a running daemon, and history
rewritten by a force-push so that the last applied commit no longer exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.daemons import DaemonProc, wait_until
from tests.faults.support import assert_one_line_error, desired_values, live_values
from tests.helpers import GitRepo, cli, git, make_repo


def bare_remote(tmp_path: Path, files: dict[str, str]) -> tuple[GitRepo, Path]:
    """A bare remote and a working clone that pushes to it."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = make_repo(tmp_path / "work", files)
    git(work.path, "remote", "add", "origin", str(bare))
    git(work.path, "push", "-q", "origin", "main")
    return work, bare


def push(work: GitRepo, files: dict[str, str | None], force: bool = False) -> str:
    sha = work.commit(files)
    git(work.path, "push", "-q", *(["--force"] if force else []), "origin", "main")
    return sha


def forget(repo: Path) -> None:
    """Drop every object no ref reaches (what a force-push and a GC on the server do)."""
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")


def converged(env: dict[str, str], root: Path, units: list[UnitId]) -> None:
    want = desired_values(root)
    for u in units:
        assert (live_values(env, u) or {}) == want.get(u, {}), u


def value(store: EtcdStore, keys: Keys, unit: UnitId, key: str) -> Any:
    kv = store.get(keys.data_key(unit, key))
    return None if kv is None else json.loads(kv.value)["value"]


A, B, C = UnitId("a", "prod"), UnitId("b", "prod"), UnitId("c", "prod")


# -- the remote unreachable --------------------------------------------------------------------


def test_apply_from_a_url_whose_remote_went_away_then_came_back(
        tmp_path: Path, env: dict[str, str], store: EtcdStore, keys: Keys) -> None:
    work, bare = bare_remote(tmp_path, {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    url = f"file://{bare}"
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    push(work, {"a/prod.yaml": "x: 2\n"})
    before = store.revision()
    moved = bare.with_name("moved.git")
    bare.rename(moved)
    for args in (("apply",), ("diff",), ("status",)):
        res = cli(*args, "--repo", url, env=env)
        assert_one_line_error(res, contains="file://")
    assert store.revision() == before  # nothing written from the stale cache
    # the remote is replaced by an empty repository: no branch, nothing to apply, no pruning
    git(tmp_path, "init", "-q", "--bare", str(bare))
    empty = cli("apply", "--repo", url, env=env)
    assert empty.exit_code in (1, 2), empty.stdout + empty.stderr
    assert "Traceback" not in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    assert store.revision() == before
    assert value(store, keys, A, "x") == 1 and value(store, keys, B, "y") == 1
    # it comes back, with a commit pushed meanwhile: the next apply converges
    shutil.rmtree(bare)
    moved.rename(bare)
    push(work, {"b/prod.yaml": "y: 2\n"})
    res = cli("apply", "--repo", url, "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    assert {(d["service"], d["deploy"]) for d in res.json()["deploys"]} == {("a", 2), ("b", 2)}
    converged(env, work.path, [A, B])


def test_daemon_survives_an_unreachable_remote_and_recovers(
        tmp_path: Path, env: dict[str, str], store: EtcdStore, keys: Keys) -> None:
    work, bare = bare_remote(tmp_path, {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    d = DaemonProc(tmp_path, f"file://{bare}", env, "--interval", "300ms").start()
    try:
        wait_until(lambda: d.ready()[0] == 200 and value(store, keys, A, "x") == 1,
                   timeout=20)
        moved = bare.with_name("away.git")
        bare.rename(moved)
        wait_until(lambda: d.ready_is(503, git=False), timeout=15)
        errors = d.metric('gitconf_errors_total{kind="git"}')
        assert errors >= 1
        # it keeps serving, writes nothing, and keeps reporting (bounded: it backs off)
        before = store.revision()
        assert d.get("/healthz")[0] == 200
        assert "gitconf_leader 1.0" in d.get("/metrics")[1]
        # commits land on the remote while the daemon cannot reach it
        git(work.path, "remote", "set-url", "origin", str(moved))
        push(work, {"a/prod.yaml": "x: 2\n"})
        push(work, {"b/prod.yaml": None, "c/prod.yaml": "z: 1\n"})
        wait_until(lambda: d.metric('gitconf_errors_total{kind="git"}') > errors, timeout=15)
        assert store.revision() == before
        assert value(store, keys, B, "y") == 1  # nothing pruned for want of a repository
        logs = d.logs()
        assert "Traceback" not in logs
        # the remote comes back: the daemon recovers and converges
        moved.rename(bare)
        wait_until(lambda: value(store, keys, C, "z") == 1, timeout=20)
        wait_until(lambda: d.ready()[0] == 200, timeout=15)
        assert value(store, keys, A, "x") == 2
        assert value(store, keys, B, "y") is None
        converged(env, work.path, [A, B, C])
    finally:
        assert d.stop() == 0


# -- history rewritten -------------------------------------------------------------------------


def rewrite(work: GitRepo, to: str, files: dict[str, str | None]) -> str:
    """Reset the branch to `to`, commit `files` on top, and forget what was dropped."""
    git(work.path, "reset", "-q", "--hard", to)
    sha = work.commit(files, message="rewritten")
    forget(work.path)
    return sha


def test_force_push_of_a_local_repository_does_a_full_pass(
        tmp_path: Path, env: dict[str, str], store: EtcdStore, keys: Keys) -> None:
    work = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n",
                                      "c/prod.yaml": "z: 1\n"})
    first = work.head()
    assert cli("apply", "--repo", str(work.path), env=env).exit_code == 0
    dropped = work.commit({"a/prod.yaml": "x: 2\n", "b/prod.yaml": "y: 2\n"})
    assert cli("apply", "--repo", str(work.path), env=env).exit_code == 0
    rewrite(work, first, {"a/prod.yaml": "x: 3\n", "c/prod.yaml": None})
    with pytest.raises(AssertionError):
        git(work.path, "cat-file", "-e", dropped)  # the last applied commit is gone
    res = cli("apply", "--repo", str(work.path), "--allow-mass-delete", "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    deploys = {d["service"]: d for d in res.json()["deploys"]}
    # b goes back to what the rewritten history has, though no file of b "changed" in it
    assert set(deploys) == {"a", "b", "c"}
    assert deploys["a"]["changed"] == ["x"] and deploys["b"]["changed"] == ["y"]
    assert deploys["c"]["deleted"] == ["z"]
    converged(env, work.path, [A, B, C])
    before = store.revision()
    assert cli("apply", "--repo", str(work.path), env=env).exit_code == 0
    assert store.revision() == before
    hist = cli("history", "b", "prod", "-f", "json", env=env).json()["deploys"]
    assert [h["deploy"] for h in hist] == [3, 2, 1]


def test_force_push_to_a_url_remote_converges(tmp_path: Path, env: dict[str, str],
                                              store: EtcdStore, keys: Keys) -> None:
    work, bare = bare_remote(tmp_path, {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    first = work.head()
    url = f"file://{bare}"
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    push(work, {"a/prod.yaml": "x: 2\n", "b/prod.yaml": "y: 2\n"})
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    git(work.path, "reset", "-q", "--hard", first)
    push(work, {"a/prod.yaml": "x: 3\n", "c/prod.yaml": "z: 1\n"}, force=True)
    forget(bare)
    res = cli("apply", "--repo", url, env=env)
    assert res.exit_code == 0, res.stderr
    converged(env, work.path, [A, B, C])
    assert value(store, keys, B, "y") == 1
    before = store.revision()
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    assert store.revision() == before


def test_daemon_follows_a_force_push(tmp_path: Path, env: dict[str, str], store: EtcdStore,
                                     keys: Keys) -> None:
    work, bare = bare_remote(tmp_path, {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    first = work.head()
    d = DaemonProc(tmp_path, f"file://{bare}", env, "--interval", "300ms").start()
    try:
        wait_until(lambda: value(store, keys, A, "x") == 1, timeout=20)
        push(work, {"a/prod.yaml": "x: 2\n", "b/prod.yaml": "y: 2\n"})
        wait_until(lambda: value(store, keys, B, "y") == 2, timeout=15)
        git(work.path, "reset", "-q", "--hard", first)
        push(work, {"a/prod.yaml": "x: 3\n"}, force=True)
        forget(bare)
        wait_until(lambda: value(store, keys, A, "x") == 3, timeout=15)
        wait_until(lambda: value(store, keys, B, "y") == 1, timeout=15)
        converged(env, work.path, [A, B])
        assert "Traceback" not in d.logs()
    finally:
        assert d.stop() == 0
