"""What must never go wrong: a concurrent writer silently overwritten, a unit larger than one
transaction, a deploy killed half-way. Real etcd, real Git, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gitconf.etcdstore import EtcdStore, TxnResult, connect
from gitconf.gitsource import GitSource
from gitconf.model import UnitId
from gitconf.reconcile import Reconciler, Request
from gitconf.records import Keys
from tests.helpers import cli, make_repo

UNIT = UnitId("svc", "prod")


class RacingStore(EtcdStore):
    """A real store that lets another real client write a key just before its first write
    transaction is sent: the race between plan and commit, forced."""

    def __init__(self, endpoint: str, rival_key: bytes, rival_value: bytes):
        super().__init__(connect(endpoint).config)
        self.rival = connect(endpoint)
        self.rival_key, self.rival_value = rival_key, rival_value
        self.raced = False

    def _race(self, success: Any) -> None:
        def is_put(op: Any) -> bool:  # an encoded RequestOp (tag 0x12) or a message
            return op[:1] == b"\x12" if isinstance(op, bytes) else \
                op.WhichOneof("request") == "request_put"

        if not self.raced and any(is_put(op) for op in success):
            self.raced = True
            self.rival.put(self.rival_key, self.rival_value)

    def txn(self, compares: Any, success: Any, failure: Any = ()) -> TxnResult:
        self._race(success)
        return super().txn(compares, success, failure)

    def txn_start(self, compares: Any, success: Any) -> Any:
        self._race(success)
        return super().txn_start(compares, success)


def test_concurrent_write_between_plan_and_commit_is_detected(tmp_path: Path, etcd_server: Any,
                                                              store: EtcdStore, keys: Keys,
                                                              ) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\nb: 1\n"})
    rec = Reconciler(GitSource.open(str(repo.path)), store, keys)
    assert rec.run(Request()).ok
    repo.commit({"svc/prod.yaml": "a: 2\nb: 2\n"})
    foreign = b'{"value": 99, "version": "hotfix", "metadata": {"source": "override"}}'
    racing = RacingStore(etcd_server.endpoint, keys.data_key(UNIT, "a"), foreign)
    result = Reconciler(GitSource.open(str(repo.path)), racing, keys).run(Request())
    assert racing.raced
    assert result.ok and result.conflicts == 1  # the guarded txn failed and was re-planned
    (outcome,) = result.deploys
    record = json.loads(store.get(keys.history(UNIT, outcome.deploy)).value)
    changed = {c["key"]: c for c in record["changed"]}
    # the re-plan saw the rival's value: it is recorded, not silently lost
    assert changed["a"]["old"] == 99 and changed["a"]["new"] == 2
    assert changed["b"]["old"] == 1
    assert outcome.deploy == 2  # one deploy, not two half ones


def test_concurrent_create_of_a_key_being_added_is_detected(
        tmp_path: Path, etcd_server: Any, store: EtcdStore, keys: Keys) -> None:
    """Keys being added are guarded by one compare over the unit's range: a key someone
    creates between plan and commit makes the transaction fail and the unit re-planned."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    rec = Reconciler(GitSource.open(str(repo.path)), store, keys)
    assert rec.run(Request()).ok
    repo.commit({"svc/prod.yaml": "a: 1\nnew: 2\n"})
    racing = RacingStore(etcd_server.endpoint, keys.data_key(UNIT, "new"), b"rival")
    result = Reconciler(GitSource.open(str(repo.path)), racing, keys).run(Request())
    assert racing.raced and result.ok and result.conflicts == 1
    (outcome,) = result.deploys
    record = json.loads(store.get(keys.history(UNIT, outcome.deploy)).value)
    assert record["changed"] == [{"key": "new", "old": "rival", "new": 2}]
    assert record["added"] == []


def test_unit_larger_than_one_transaction(tmp_path: Path, env: dict, store: EtcdStore,
                                          keys: Keys) -> None:
    body = "".join(f"k{i:04d}: {i}\n" for i in range(300))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": body, "small/prod.yaml": "x: 1\n"})
    res = cli("apply", "--repo", str(repo.path), "--max-txn-ops", "16", "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    deploys = {d["service"]: d for d in res.json()["deploys"]}
    assert len(deploys["svc"]["added"]) == 300
    kvs, _ = store.scan(keys.unit_prefix(UNIT))
    assert len(kvs) == 300
    assert store.get(keys.pending(UNIT)) is None
    # a big change deploys again in batches, and a second apply is a no-op
    repo.commit({"svc/prod.yaml": body.replace(": 1", ": -1")})
    res = cli("apply", "--repo", str(repo.path), "--max-txn-ops", "16", "-f", "json", env=env)
    assert res.json()["deploys"][0]["deploy"] == 2
    before = store.revision()
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.revision() == before


def test_server_limits_lower_than_configured_are_discovered(tmp_path: Path, env: dict,
                                                           store: EtcdStore, keys: Keys) -> None:
    """The server refuses 129+ ops; told 1000, gitconf splits and retries on its own."""
    body = "".join(f"k{i:04d}: {i}\n" for i in range(400))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": body})
    res = cli("apply", "--repo", str(repo.path), "--max-txn-ops", "1000", env=env)
    assert res.exit_code == 0, res.stdout + res.stderr
    assert len(store.scan(keys.unit_prefix(UNIT))[0]) == 400


def test_deploy_killed_between_transactions_is_finished_by_next_apply(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    n = 4000
    body = "".join(f"key{i:05d}: value-{i}\n" for i in range(n))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": body})
    cmd = [sys.executable, "-m", "gitconf", "apply", "--repo", str(repo.path),
           "--max-txn-ops", "4"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    written = 0
    while time.monotonic() < deadline:
        written = store.count(keys.unit_prefix(UNIT))[0]
        if store.get(keys.pending(UNIT)) is not None and written > 40:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = store.count(keys.unit_prefix(UNIT))[0]
    assert 0 < partial < n, "the kill must land mid-deploy"
    assert store.get(keys.pending(UNIT)) is not None
    assert store.get(keys.unit_record(UNIT)) is None
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    (deploy,) = res.json()["deploys"]
    assert deploy["deploy"] == 1 and len(deploy["added"]) == n  # the whole deploy, once
    assert store.count(keys.unit_prefix(UNIT))[0] == n
    assert store.get(keys.pending(UNIT)) is None
    hist, _ = store.scan(keys.history_prefix(UNIT))
    assert len(hist) == 1
    before = store.revision()
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.revision() == before


def test_a_deposed_leader_writes_nothing_and_says_so(tmp_path: Path, store: EtcdStore,
                                                     keys: Keys) -> None:
    """The fence: every write compares the leader key's revision; once another replica holds
    it, the old leader's transactions fail and the unit is reported, not retried blindly."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    rec = Reconciler(GitSource.open(str(repo.path)), store, keys)
    stale = store.put(keys.leader, b"replica-a")  # A became leader at this revision...
    store.put(keys.leader, b"replica-b")  # ...and has since been replaced by B
    result = rec.run(Request(fence=(keys.leader, stale)))
    assert not result.ok and not result.deploys
    assert result.failed == [(UNIT, "this replica is no longer the leader: nothing more was "
                                    "written")]
    assert store.count(keys.unit_prefix(UNIT))[0] == 0
