"""`gitconf rollback`, pins and unpin, end to end against a real etcd and real Git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.helpers import GitRepo, cli, make_repo

UNIT = UnitId("pay", "prod")


def values(store: EtcdStore, keys: Keys, unit: UnitId = UNIT) -> dict[str, object]:
    kvs, _ = store.scan(keys.unit_prefix(unit))
    prefix = len(keys.unit_prefix(unit))
    return {kv.key[prefix:].decode(): json.loads(kv.value)["value"] for kv in kvs}


def envelopes(store: EtcdStore, keys: Keys, unit: UnitId = UNIT) -> dict[str, dict]:
    kvs, _ = store.scan(keys.unit_prefix(unit))
    prefix = len(keys.unit_prefix(unit))
    return {kv.key[prefix:].decode(): json.loads(kv.value) for kv in kvs}


@pytest.fixture
def history(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    """c1..c4 with adds, changes and deletes on pay/prod, and an unrelated unit."""
    repo = make_repo(tmp_path / "r", {"pay/prod.yaml": "a: 1\nb: two\n",
                                      "other/prod.yaml": "x: 1\n"}, message="c1")
    c1 = repo.head()
    c2 = repo.commit({"pay/prod.yaml": "a: 2\nb: two\nc: [1, 2]\n"}, message="c2")
    repo.tag("v2.0.0", c2)
    c3 = repo.commit({"pay/prod.yaml": "a: 3\nc: [1, 2, 3]\nd: {x: 1}\n",
                      "other/prod.yaml": "x: 2\n"}, message="c3")
    c4 = repo.commit({"pay/prod.yaml": "a: 4\nd: {x: 2}\ne: true\n"}, message="c4")
    return repo, [c1, c2, c3, c4]


def test_rollback_restores_exactly_and_pins(history: tuple[GitRepo, list[str]], env: dict,
                                            store: EtcdStore, keys: Keys, prefix: str) -> None:
    repo, (c1, c2, c3, c4) = history
    r = str(repo.path)
    for c in (c1, c2, c3, c4):
        assert cli("apply", "--repo", r, "--ref", c, env=env).exit_code == 0
    res = cli("rollback", c2, "--repo", r, "--service", "pay", "--env", "prod", "--yes",
              "--reason", "checkout errors", "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    (deploy,) = res.json()["deploys"]
    assert deploy["version"] == "v2.0.0"
    assert sorted(deploy["deleted"]) == ["d.x", "e"] and deploy["changed"] == ["a"]
    assert sorted(deploy["added"]) == ["b", "c"]
    # byte for byte what a fresh apply of c2 produces, values and all
    fresh = {**env, "GITCONF_PREFIX": prefix + "-fresh"}
    assert cli("apply", "--repo", r, "--ref", c2, env=fresh).exit_code == 0
    assert values(store, keys) == values(store, Keys(prefix + "-fresh")) == {
        "a": 2, "b": "two", "c": [1, 2]}
    for envelope in envelopes(store, keys).values():
        assert envelope["metadata"]["source"] == "rollback"
        assert envelope["metadata"]["git_commit"] == c2
        assert envelope["version"] == "v2.0.0"
    record = json.loads(store.get(keys.history(UNIT, 5)).value)
    assert record["source"] == "rollback" and record["restored_commit"] == c2
    pin = json.loads(store.get(keys.pin(UNIT)).value)
    assert pin["commit"] == c2 and pin["reason"] == "checkout errors" and pin["by"] == "ci-bot"
    assert pin["branch_head"] == c4
    # the other unit was not touched
    assert values(store, keys, UnitId("other", "prod")) == {"x": 2}

    # repeating it changes nothing
    before = store.revision()
    again = cli("rollback", c2, "--repo", r, "-s", "pay", "-e", "prod", "--yes", env=env)
    assert again.exit_code == 0 and store.revision() == before

    # apply of HEAD skips the pinned unit and says so; status shows the pin
    applied = cli("apply", "--repo", r, "--full", env=env)
    assert applied.exit_code == 0
    assert "pay/prod skipped: pinned to" in applied.stdout and "checkout errors" in applied.stdout
    assert values(store, keys) == {"a": 2, "b": "two", "c": [1, 2]}
    status = cli("status", "--repo", r, "-f", "json", env=env).json()
    (unit,) = [u for u in status["units"] if u["service"] == "pay"]
    assert unit["state"] == "pinned" and unit["pin"]["commit"] == c2
    assert unit["pin"]["reason"] == "checkout errors" and unit["pin"]["by"] == "ci-bot"

    # unpin, then apply restores HEAD
    assert cli("unpin", "pay", "prod", "--repo", r, env=env).exit_code == 0
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert values(store, keys) == {"a": 4, "d.x": 2, "e": True}


def test_without_selection_rolls_back_every_unit_changed_since(
        history: tuple[GitRepo, list[str]], env: dict, store: EtcdStore, keys: Keys) -> None:
    repo, (_c1, c2, _c3, _c4) = history
    r = str(repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    res = cli("rollback", c2, "--repo", r, "--yes", "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    assert {(d["service"], d["environment"]) for d in res.json()["deploys"]} == {
        ("pay", "prod"), ("other", "prod")}
    assert values(store, keys, UnitId("other", "prod")) == {"x": 1}


def test_rollback_to_previous(history: tuple[GitRepo, list[str]], env: dict, store: EtcdStore,
                              keys: Keys) -> None:
    repo, (_c1, _c2, c3, c4) = history
    r = str(repo.path)
    for c in (c3, c4):
        assert cli("apply", "--repo", r, "--ref", c, env=env).exit_code == 0
    res = cli("rollback", "--to-previous", "pay", "prod", "--repo", r, "--yes", env=env)
    assert res.exit_code == 0, res.stderr
    assert values(store, keys) == {"a": 3, "c": [1, 2, 3], "d.x": 1}


def test_unit_missing_at_commit_is_removed(tmp_path: Path, env: dict, store: EtcdStore,
                                           keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n"})
    c1 = repo.head()
    repo.commit({"b/prod.yaml": "y: 1\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    dry = cli("rollback", c1, "--repo", str(repo.path), "--dry-run", env=env)
    assert dry.exit_code == 0 and "removed entirely" in dry.stdout
    assert values(store, keys, UnitId("b", "prod")) == {"y": 1}
    res = cli("rollback", c1, "--repo", str(repo.path), "--yes", env=env)
    assert res.exit_code == 0
    assert values(store, keys, UnitId("b", "prod")) == {}


def test_bad_rollbacks_fail_cleanly_with_nothing_written(history: tuple[GitRepo, list[str]],
                                                         env: dict, store: EtcdStore) -> None:
    repo, (_c1, c2, _c3, _c4) = history
    r = str(repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    bad = repo.commit({"pay/prod.yaml": "a: 1\na: 2\n"}, message="broken")
    repo.commit({"pay/prod.yaml": "a: 5\n"}, message="fixed")
    before = store.revision()
    cases = [
        (["rollback", "0123456789abcdef", "--yes"], "is not a commit"),
        (["rollback", c2, "--service", "nope", "--yes"], "no unit nope/*"),
        (["rollback", bad, "--service", "pay", "--yes"], "duplicate-key"),
        (["rollback", "--to-previous", "other", "staging", "--yes"], "no deploys"),
    ]
    for args, message in cases:
        res = cli(*args, "--repo", r, env=env)
        assert res.exit_code == 1, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
    assert store.revision() == before


def test_rollback_needs_confirmation_off_a_terminal(history: tuple[GitRepo, list[str]],
                                                   env: dict, store: EtcdStore) -> None:
    repo, (_c1, c2, _c3, _c4) = history
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    before = store.revision()
    res = cli("rollback", c2, "--repo", str(repo.path), env=env)
    assert res.exit_code == 2 and "--yes" in res.stderr
    assert store.revision() == before


def test_newer_commit_touching_the_unit_lifts_the_pin(history: tuple[GitRepo, list[str]],
                                                      env: dict, store: EtcdStore,
                                                      keys: Keys) -> None:
    repo, (_c1, c2, _c3, _c4) = history
    r = str(repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert cli("rollback", c2, "--repo", r, "-s", "pay", "--yes", env=env).exit_code == 0
    repo.commit({"other/prod.yaml": "x: 9\n"}, message="unrelated")
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert values(store, keys)["a"] == 2  # still pinned
    repo.commit({"pay/prod.yaml": "a: 10\n"}, message="the fix")
    res = cli("apply", "--repo", r, env=env)
    assert res.exit_code == 0
    assert values(store, keys) == {"a": 10}
    assert store.get(keys.pin(UNIT)) is None


def test_pin_and_unpin_commands(history: tuple[GitRepo, list[str]], env: dict,
                                store: EtcdStore, keys: Keys) -> None:
    repo, (_c1, _c2, c3, _c4) = history
    r = str(repo.path)
    assert cli("apply", "--repo", r, "--ref", c3, env=env).exit_code == 0
    res = cli("pin", "pay", "prod", "--reason", "freeze for launch", "--repo", r, env=env)
    assert res.exit_code == 0
    assert json.loads(store.get(keys.pin(UNIT)).value)["commit"] == c3
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert values(store, keys)["a"] == 3
    assert cli("unpin", "pay", "prod", "--repo", r, env=env).exit_code == 0
    assert cli("unpin", "pay", "prod", "--repo", r, env=env).exit_code == 0  # not pinned: no-op
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert values(store, keys)["a"] == 4


def test_large_rollback_interrupted_is_finished_by_running_it_again(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    n = 3000
    repo = make_repo(tmp_path / "r", {"pay/prod.yaml": "".join(
        f"k{i:05d}: old-{i}\n" for i in range(n))})
    c1 = repo.head()
    repo.commit({"pay/prod.yaml": "".join(f"k{i:05d}: new-{i}\n" for i in range(n))})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    cmd = [sys.executable, "-m", "gitconf", "rollback", c1, "--repo", str(repo.path), "--yes",
           "--max-txn-ops", "4"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.get(keys.pending(UNIT)) is None:
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.get(keys.pending(UNIT)) is not None, "the kill must land mid-rollback"
    # apply will not finish a rollback with HEAD's content: it says how to finish it
    res = cli("apply", "--repo", str(repo.path), "--full", env=env)
    assert "interrupted rollback" in res.stdout
    res = cli("rollback", c1, "--repo", str(repo.path), "--yes", "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    (deploy,) = res.json()["deploys"]
    assert deploy["deploy"] == 2 and len(deploy["changed"]) == n
    assert store.get(keys.pending(UNIT)) is None
    assert set(values(store, keys).values()) == {f"old-{i}" for i in range(n)}
    assert json.loads(store.get(keys.pin(UNIT)).value)["commit"] == c1
