"""The secret-leak scan (tests/leakscan.py) itself: it knows the example's secrets, it sees a
secret in a CLI output, a daemon log, a GitHub request and a `_system/` record, and it lets
`--show-secrets` and data keys through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.fakegithub import FakeGitHub
from tests.helpers import GitRepo, cli
from tests.leakscan import COLLECTED, example_secrets, find_leaks

PASSWORD = "prod-password-from-vault"


def test_the_example_secrets_are_known() -> None:
    secrets = example_secrets()
    assert PASSWORD in secrets and secrets[PASSWORD] == "payments/prod database.password"
    assert "sk_live_prod_abcdef" in secrets and "prod-jwt-signing-key" in secrets
    assert len(secrets) == 12
    assert not any(v in secrets for v in ("info", "3s", "50"))  # only what is secret


@pytest.mark.leaks_ok
def test_the_scan_sees_what_it_must_and_skips_what_it_may(example_repo: GitRepo,
                                                          env: dict[str, str],
                                                          store: EtcdStore, keys: Keys,
                                                          ) -> None:
    secrets = example_secrets()
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    assert cli("get", "payments", "prod", "--show-secrets", env=env).exit_code == 0
    assert cli("get", "payments", "prod", env=env).exit_code == 0
    assert find_leaks(secrets, COLLECTED.outputs) == []  # masked, and --show-secrets skipped
    # etcd's data keys hold the value, its records do not
    kv = store.get(keys.data_key(UnitId("payments", "prod"), "database.password"))
    assert kv is not None and PASSWORD in kv.value.decode()
    records, _ = store.scan(keys.system_b)
    assert find_leaks(secrets, [(r.key.decode(), r.value.decode()) for r in records]) == []
    # a secret in an output is seen
    cli("validate", f"/nonexistent/{PASSWORD}")
    assert find_leaks(secrets, COLLECTED.outputs)[0].startswith(
        "payments/prod database.password in gitconf validate")
    # ... and in a GitHub request
    with FakeGitHub(token="t0k-scan-test-token") as gh:
        import requests

        requests.post(f"{gh.url}/repos/acme/config/issues/1/comments",
                      json={"body": f"old: {PASSWORD}"},
                      headers={"Authorization": "Bearer t0k-scan-test-token"}, timeout=5)
    assert COLLECTED.fakes and COLLECTED.extra_secrets == {
        "t0k-scan-test-token": "the GitHub token"}
    texts = [(r.path, json.dumps(r.json)) for r in COLLECTED.fakes[0].requests_log]
    assert find_leaks(secrets, texts)
    # ... and in a `_system/` record
    store.put(keys.system_b + b"history/payments/prod/0000000099",
              json.dumps({"changed": [{"key": "database.password", "new": PASSWORD}]}).encode())
    kvs, _ = store.scan(keys.system_b)
    assert find_leaks(secrets, [(kv.key.decode(), kv.value.decode()) for kv in kvs])
    store.delete(keys.system_b + b"history/payments/prod/0000000099")


def test_the_scan_is_installed(tmp_path: Path) -> None:
    """The collectors are in place for every test (this one included)."""
    cli("validate", str(tmp_path))
    assert COLLECTED.outputs and COLLECTED.outputs[-1][0].startswith("gitconf validate")
