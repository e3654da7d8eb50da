"""The daemon and overrides (SPEC §5, §6), with real processes: drift under the default policy
becomes a pull request instead of a revert; the `pull_request` webhook (deduplicated by
delivery) and the TTL end overrides; metrics count them."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.overrides import update_record
from gitconf.records import Keys, OverrideRecord
from tests.conftest import EXAMPLE
from tests.daemons import DaemonProc, wait_until
from tests.fakegithub import FakeGitHub
from tests.helpers import GitRepo, git

UNIT = UnitId("payments", "prod")
SECRET = "hook-secret"


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="t0k-daemon", repo="acme/config") as fake:
        yield fake
    assert fake.violations == []


def work_clone(tmp: Path) -> Path:
    seed = tmp / "seed"
    shutil.copytree(EXAMPLE, seed)
    (seed / ".gitconf.yaml").write_text(
        (seed / ".gitconf.yaml").read_text() + "github: acme/config\n")
    GitRepo(seed).commit(message="initial config")
    git(tmp, "clone", "-q", "--bare", str(seed), str(tmp / "origin.git"))
    git(tmp, "clone", "-q", str(tmp / "origin.git"), "work")
    return tmp / "work"


def value(store: EtcdStore, keys: Keys, key: str) -> object:
    kv = store.get(keys.data_key(UNIT, key))
    if kv is None:
        return None
    try:
        return json.loads(kv.value)["value"]
    except (ValueError, KeyError, TypeError):
        return kv.value


def open_override(store: EtcdStore, keys: Keys) -> OverrideRecord | None:
    kv = store.get(keys.override(UNIT))
    return OverrideRecord.from_json(kv.value) if kv else None


def pull_request_hook(d: DaemonProc, number: int, delivery: str, merged: bool) -> int:
    payload = {"action": "closed", "number": number, "pull_request": {
        "number": number, "state": "closed", "merged": merged,
        "html_url": f"https://github.com/acme/config/pull/{number}",
        "head": {"ref": "gitconf/override/payments/prod"}, "base": {"ref": "main"}},
        "repository": {"full_name": "acme/config"}}
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return d.post("/webhook/github", body, {
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json", "X-Hub-Signature-256": signature})


def test_daemon_turns_drift_into_a_pull_request_and_ends_it_on_the_webhook(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, gh: FakeGitHub) -> None:
    work = work_clone(tmp_path)
    denv = {**env, "GITHUB_TOKEN": gh.token, "GITHUB_API_URL": gh.url,
            "GITCONF_WEBHOOK_SECRET": SECRET}
    d = DaemonProc(tmp_path, str(work), denv, "--interval", "10m").start()
    try:
        wait_until(lambda: value(store, keys, "database.timeout") == "3s", timeout=20)
        store.put(keys.data_key(UNIT, "database.timeout"), b'"9s"')  # a hotfix by hand
        wait_until(lambda: 1 in gh.pulls, timeout=10)
        record = open_override(store, keys)
        assert record is not None and record.source == "drift" and record.by == "etcd"
        assert value(store, keys, "database.timeout") == b'"9s"'  # kept, not reverted
        wait_until(lambda: d.metric('gitconf_pull_requests_total{result="opened"}') == 1)
        wait_until(lambda: d.metric("gitconf_overrides_open") == 1)
        assert d.metric('gitconf_drift_events_total{action="reverted"}') == 0

        # the pull request is closed unmerged: the webhook (sent twice, as a redelivery
        # would) ends the override once and the key returns to Git
        gh.close(1)
        assert pull_request_hook(d, 1, "delivery-1", merged=False) == 202
        assert pull_request_hook(d, 1, "delivery-1", merged=False) == 200  # duplicate
        wait_until(lambda: value(store, keys, "database.timeout") == "3s", timeout=10)
        assert open_override(store, keys) is None
        wait_until(lambda: d.metric("gitconf_overrides_open") == 0, timeout=70)
    finally:
        assert d.stop() == 0


def test_an_expired_override_returns_to_git_and_its_pull_request_is_closed(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, gh: FakeGitHub) -> None:
    work = work_clone(tmp_path)
    denv = {**env, "GITHUB_TOKEN": gh.token, "GITHUB_API_URL": gh.url,
            "GITCONF_WEBHOOK_SECRET": SECRET}
    from tests.helpers import cli

    assert cli("apply", "--repo", str(work), env=denv).exit_code == 0
    res = cli("override", "payments", "prod", "log_level", "debug", "--ttl", "1h",
              "--reason", "debug INC-9", "--repo", str(work), env=denv)
    assert res.exit_code == 0, res.stderr
    record = open_override(store, keys)
    assert record is not None
    update_record(store, keys, UNIT, record.id, {"expires_at": "2000-01-01T00:00:00Z"})
    d = DaemonProc(tmp_path, str(work), denv, "--interval", "10m").start()
    try:
        wait_until(lambda: value(store, keys, "log_level") == "info", timeout=20)
        wait_until(lambda: gh.pulls[1].state == "closed", timeout=10)
        assert any("expired" in c.body for c in gh.comments)
    finally:
        assert d.stop() == 0
