"""`gitconf daemon` as a real process against a real etcd and real Git remotes: triggers,
webhook signatures, drift policies, leader election and failover, outages, kill -9."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitconf.embedded_etcd import EmbeddedEtcd
from gitconf.etcdstore import EtcdStore, connect
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.daemons import DaemonProc, wait_until
from tests.helpers import GitRepo, git, make_repo

UNIT = UnitId("svc", "prod")
SECRET = "webhook-s3cret"


def value(store: EtcdStore, keys: Keys, key: str = "a", unit: UnitId = UNIT) -> Any:
    kv = store.get(keys.data_key(unit, key))
    return None if kv is None else json.loads(kv.value)["value"]


@pytest.fixture
def remote(tmp_path: Path) -> tuple[GitRepo, Path]:
    """A bare remote and a working clone that pushes to it."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = make_repo(tmp_path / "work", {"svc/prod.yaml": "a: 1\n"})
    git(work.path, "remote", "add", "origin", str(bare))
    git(work.path, "push", "-q", "origin", "main")
    return work, bare


def push(work: GitRepo, files: dict[str, str | None], message: str = "change") -> str:
    sha = work.commit(files, message=message)
    git(work.path, "push", "-q", "origin", "main")
    return sha


def test_push_to_remote_is_applied_within_the_interval(remote: tuple[GitRepo, Path],
                                                       tmp_path: Path, env: dict,
                                                       store: EtcdStore, keys: Keys) -> None:
    work, bare = remote
    d = DaemonProc(tmp_path, f"file://{bare}", env, "--interval", "1s").start()
    try:
        wait_until(lambda: value(store, keys) == 1)
        wait_until(lambda: d.ready()[0] == 200)
        push(work, {"svc/prod.yaml": "a: 2\n"})
        took = wait_until(lambda: value(store, keys) == 2, timeout=10)
        assert took < 5
        wait_until(lambda: d.metric("gitconf_deploys_total") >= 2)  # counted after the write
        assert d.metric("gitconf_leader") == 1
        assert d.metric("gitconf_last_success_timestamp_seconds") > time.time() - 60
    finally:
        assert d.stop() == 0  # SIGTERM: clean exit


def test_webhook_push_is_applied_at_once_and_signatures_checked(
        remote: tuple[GitRepo, Path], tmp_path: Path, env: dict, store: EtcdStore,
        keys: Keys) -> None:
    work, bare = remote
    d = DaemonProc(tmp_path, f"file://{bare}", {**env, "GITCONF_WEBHOOK_SECRET": SECRET},
                   "--interval", "10m").start()
    try:
        wait_until(lambda: d.ready()[0] == 200)
        assert d.push_hook(None) == 401  # no signature
        assert d.push_hook(SECRET, signature="sha256=" + "0" * 64) == 401
        assert d.push_hook("wrong-secret") == 401
        assert d.metric('gitconf_errors_total{kind="webhook"}') == 3
        assert d.push_hook(SECRET, event="ping") == 200
        assert d.push_hook(SECRET, ref="refs/heads/feature") == 202
        push(work, {"svc/prod.yaml": "a: 3\n"})
        time.sleep(0.3)
        assert value(store, keys) == 1  # the 10-minute poll has not fetched it
        assert d.push_hook(SECRET) == 202
        took = wait_until(lambda: value(store, keys) == 3, timeout=5)
        assert took < 2
        # GitHub's default content type: a form with the JSON in `payload`, signed as sent
        assert d.push_hook(SECRET, ref="refs/heads/feature", form=True) == 202
        assert d.push_hook("wrong-secret", form=True) == 401
        push(work, {"svc/prod.yaml": "a: 4\n"})
        assert d.push_hook(SECRET, form=True) == 202
        assert wait_until(lambda: value(store, keys) == 4, timeout=5) < 2
    finally:
        d.stop()


def test_webhook_is_404_without_a_secret(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        assert d.push_hook(SECRET) == 404
        assert d.get("/nope")[0] == 404
    finally:
        d.stop()


def test_local_commit_is_applied_through_file_events(tmp_path: Path, env: dict,
                                                     store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: value(store, keys) == 1)
        repo.commit({"svc/prod.yaml": "a: 5\n"})
        took = wait_until(lambda: value(store, keys) == 5, timeout=5)
        assert took < 2
    finally:
        d.stop()


def test_worktree_mode_applies_uncommitted_edits(tmp_path: Path, env: dict, store: EtcdStore,
                                                 keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m", "--worktree").start()
    try:
        wait_until(lambda: value(store, keys) == 1)
        (repo.path / "svc" / "prod.yaml").write_text("a: 6\n")
        wait_until(lambda: value(store, keys) == 6, timeout=5)
        kv = store.get(keys.data_key(UNIT, "a"))
        assert kv is not None and json.loads(kv.value)["version"].endswith("+worktree")
    finally:
        d.stop()


def test_drift_is_reverted_or_reported_per_policy(tmp_path: Path, env: dict, store: EtcdStore,
                                                  keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {".gitconf.yaml": "drift: revert\n",
                                      "svc/prod.yaml": "a: 1\nb: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: value(store, keys) == 1)
        store.put(keys.data_key(UNIT, "a"), b'{"value": 99, "version": "manual", '
                                            b'"metadata": {}}')
        took = wait_until(lambda: value(store, keys) == 1, timeout=5)
        assert took < 2
        # counted when the pass ends, a moment after its write is visible
        wait_until(lambda: d.metric('gitconf_drift_events_total{action="reverted"}') == 1,
                   timeout=5)
        kvs, _ = store.scan(keys.history_prefix(UNIT))
        last = json.loads(kvs[-1].value)
        assert last["reverted_drift"] is True and last["changed"][0]["old"] == 99

        head = repo.commit({".gitconf.yaml": "drift: report\n"})
        wait_until(lambda: f"reconciled {head[:12]}" in d.logs())
        store.delete(keys.data_key(UNIT, "b"))
        wait_until(lambda: d.metric('gitconf_drift_events_total{action="reported"}') == 1)
        time.sleep(0.5)
        assert value(store, keys, "b") is None  # reported, not reverted
        assert d.metric('gitconf_units{state="drifted"}') == 1
        # a commit that changes the unit is applied as usual
        repo.commit({"svc/prod.yaml": "a: 1\nb: 2\n"})
        wait_until(lambda: value(store, keys, "b") == 2, timeout=5)
    finally:
        d.stop()


def test_one_leader_fenced_and_failover(remote: tuple[GitRepo, Path], tmp_path: Path, env: dict,
                                        store: EtcdStore, keys: Keys) -> None:
    work, bare = remote
    url = f"file://{bare}"
    a = DaemonProc(tmp_path, url, env, "--interval", "300ms", "--lease-ttl", "2",
                   "--actor", "replica-a", name="a").start()
    wait_until(lambda: a.metric("gitconf_leader") == 1)
    b = DaemonProc(tmp_path, url, env, "--interval", "300ms", "--lease-ttl", "2",
                   "--actor", "replica-b", name="b").start()
    try:
        wait_until(lambda: b.ready()[0] == 200)
        assert b.metric("gitconf_leader") == 0 and b.ready()[1]["status"] == "standby"
        # freeze the leader past its lease: the standby takes over while A still believes
        a.signal(signal.SIGSTOP)
        took = wait_until(lambda: b.metric("gitconf_leader") == 1, timeout=10)
        assert took < 2 + 2 / 3 + 1.5  # one TTL plus one retry period (and polling)
        sha = push(work, {"svc/prod.yaml": "a: 10\n"})
        wait_until(lambda: value(store, keys) == 10)
        a.signal(signal.SIGCONT)  # A wakes up with a stale view and an expired lease
        wait_until(lambda: a.metric("gitconf_leader") == 0, timeout=10)
        push(work, {"svc/prod.yaml": "a: 11\n"})
        wait_until(lambda: value(store, keys) == 11)
        kvs, _ = store.scan(keys.history_prefix(UNIT))
        records = [json.loads(kv.value) for kv in kvs]
        after = [r for r in records if r["commit"] != records[0]["commit"]]
        assert after and all(r["deployed_by"] == "replica-b" for r in after), \
            [(r["commit"][:7], r["deployed_by"]) for r in records]
        assert any(r["commit"] == sha for r in after)
        # the leader dies: the standby takes over and applies
        b.kill()
        wait_until(lambda: a.metric("gitconf_leader") == 1, timeout=10)
        push(work, {"svc/prod.yaml": "a: 12\n"})
        wait_until(lambda: value(store, keys) == 12)
        kvs, _ = store.scan(keys.history_prefix(UNIT))
        assert json.loads(kvs[-1].value)["deployed_by"] == "replica-a"
    finally:
        a.signal(signal.SIGCONT)
        a.stop()
        b.stop()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EmbeddedEtcd]:
    server = EmbeddedEtcd(data_dir=str(tmp_path / "etcd-data")).start()
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(tmp_path / "etcd-data", ignore_errors=True)


def test_etcd_restart_and_lost_remote_are_survived(remote: tuple[GitRepo, Path], tmp_path: Path,
                                                   own_etcd: EmbeddedEtcd) -> None:
    work, bare = remote
    env = {"GITCONF_ETCD_ENDPOINTS": own_etcd.endpoint, "GITCONF_PREFIX": "/o",
           "GITCONF_CACHE_DIR": str(tmp_path / "cache")}
    keys = Keys("/o")
    d = DaemonProc(tmp_path, f"file://{bare}", env, "--interval", "300ms",
                   "--lease-ttl", "2").start()
    try:
        wait_until(lambda: d.ready()[0] == 200, timeout=15)
        own_etcd.stop()
        wait_until(lambda: d.ready_is(503, etcd=False), timeout=15)
        wait_until(lambda: d.metric('gitconf_errors_total{kind="etcd"}') >= 1, timeout=15)
        own_etcd.start()
        wait_until(lambda: d.ready()[0] == 200, timeout=30)
        push(work, {"svc/prod.yaml": "a: 20\n"})
        store = connect(own_etcd.endpoint)
        try:
            wait_until(lambda: value(store, keys) == 20, timeout=15)
            # the remote goes away: reported, survived
            moved = bare.with_name("gone.git")
            bare.rename(moved)
            wait_until(lambda: d.ready_is(503, git=False), timeout=15)
            assert d.metric('gitconf_errors_total{kind="git"}') >= 1
            moved.rename(bare)
            push(work, {"svc/prod.yaml": "a: 21\n"})
            wait_until(lambda: value(store, keys) == 21, timeout=15)
            wait_until(lambda: d.ready()[0] == 200, timeout=15)
        finally:
            store.close()
    finally:
        assert d.stop() == 0


def test_kill_9_during_a_large_deploy_converges_on_restart(tmp_path: Path, env: dict,
                                                           store: EtcdStore, keys: Keys) -> None:
    n = 4000
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "".join(
        f"k{i:05d}: v{i}\n" for i in range(n))})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m", "--max-txn-ops", "4")
    d.start()
    wait_until(lambda: store.get(keys.pending(UNIT)) is not None, timeout=20, step=0.005)
    d.kill()
    assert store.get(keys.pending(UNIT)) is not None
    assert store.count(keys.unit_prefix(UNIT))[0] < n
    d2 = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: store.get(keys.pending(UNIT)) is None, timeout=20)
        wait_until(lambda: store.count(keys.unit_prefix(UNIT))[0] == n)
        kvs, _ = store.scan(keys.history_prefix(UNIT))
        assert len(kvs) == 1
        record = json.loads(kvs[0].value)
        assert record["deploy"] == 1 and len(record["added"]) == n
    finally:
        d2.stop()
