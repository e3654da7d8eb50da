"""diff / apply / history / status / get end to end: real etcd, real Git, through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.helpers import GitRepo, cli, make_repo


def data(store: EtcdStore, keys: Keys) -> dict[str, dict]:
    """Every envelope under the prefix (not `_system/`), by `service/env/key`."""
    kvs, _ = store.scan(keys.root_b)
    return {kv.key[len(keys.root_b):].decode(): json.loads(kv.value) for kv in kvs
            if not kv.key.startswith(keys.system_b)}


def revisions(store: EtcdStore, keys: Keys) -> dict[str, int]:
    kvs, _ = store.scan(keys.root_b)
    return {kv.key.decode(): kv.mod_revision for kv in kvs}


def test_apply_writes_the_envelopes_of_the_contract(example_repo: GitRepo, env: dict,
                                                    store: EtcdStore, keys: Keys) -> None:
    res = cli("apply", "--repo", str(example_repo.path), env=env)
    assert res.exit_code == 0, res.stderr
    assert "15 deploys" in res.stdout
    live = data(store, keys)
    assert len(live) == 122
    sha = example_repo.head()
    env_ = live["payments/prod/database.pool_size"]
    assert env_["value"] == 50
    assert env_["version"] == "v1.0.0"
    meta = env_["metadata"]
    assert meta["git_commit"] == sha
    assert meta["created_by"] == "alice@example.com"
    assert meta["created_at"] == "2025-01-15T10:30:00Z"
    assert meta["approved_by"] == "bob@example.com"
    assert meta["deployed_by"] == "ci-bot"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["deployed_at"])
    assert meta["deploy"] == 1 and meta["source"] == "git"
    assert set(env_) == {"value", "version", "metadata"}
    assert set(meta) == {"git_commit", "created_by", "created_at", "approved_by",
                         "deployed_at", "deployed_by", "deploy", "source"}
    # every value exactly as Git has it, _base merged, literal dotted keys kept
    assert live["payments/prod/database.port"]["value"] == 5432  # from _base.yaml
    assert live["payments/prod/currencies"]["value"] == ["EUR", "USD", "GBP", "CHF"]
    assert live["payments/dev/feature_flags.new_checkout"]["value"] is True
    assert live["search/prod/ranking.boost_recent"]["value"] is True
    assert live["search/prod/index.suggestions.max_results"]["value"] == 10
    assert live["notifications/dev/launch_date"]["value"] == "2025-03-01"
    assert live["notifications/dev/quiet_hours"]["value"] == {}
    # records: one deploy per unit, schema published for clients
    hist = json.loads(store.get(keys.history(UnitId("payments", "prod"), 1)).value)
    assert hist["commit"] == sha and hist["version"] == "v1.0.0" and hist["source"] == "git"
    assert {i["key"] for i in hist["added"]} >= {"database.pool_size", "database.password"}
    assert "prod-password-from-vault" not in json.dumps(hist)
    schema = json.loads(store.get(keys.schema("payments")).value)
    assert schema["properties"]["database"]["properties"]["pool_size"]["default"] == 10


def test_second_apply_writes_nothing(example_repo: GitRepo, env: dict, store: EtcdStore,
                                     keys: Keys) -> None:
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    before = store.revision()
    res = cli("apply", "--repo", str(example_repo.path), env=env)
    assert res.exit_code == 0
    assert "nothing to do" in res.stdout
    assert store.revision() == before  # not one write, records included
    assert cli("apply", "--repo", str(example_repo.path), "--full", env=env).exit_code == 0
    assert store.revision() == before


def test_applies_that_use_no_shared_schema_do_not_check_them(example_repo: GitRepo,
                                                            env: dict) -> None:
    """The example's `checkout` refers to shared schemas (`schemas/common.yaml`), which only
    python-jsonschema checks (0.1-0.2 s to import). An apply with nothing to do, or one of a
    commit to a service without references, imports none of it (a broken shared schema still
    fails the units that refer to it: compiling their schema follows the reference)."""
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    code = ("import atexit, sys; from gitconf.cli.main import main\n"
            "atexit.register(lambda: print('jsonschema' in sys.modules))\n"
            "sys.argv = ['gitconf', *sys.argv[1:]]\nmain()")

    def apply() -> list[str]:
        res = subprocess.run([sys.executable, "-c", code, "apply", "--repo",
                              str(example_repo.path)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, **env})
        assert res.returncode == 0, res.stderr
        return res.stdout.splitlines()

    assert apply()[-2:] == ["nothing to do: etcd matches v1.0.0", "False"]
    prod = example_repo.path / "search" / "prod.yaml"
    head = example_repo.commit({"search/prod.yaml": prod.read_text().replace("shards: 6",
                                                                             "shards: 7")})
    out = apply()
    assert out[-2:] == [f"applied {head[:12]}: 1 deploy, 1 key written", "False"], out


def test_one_key_commit_rewrites_one_envelope_and_one_deploy(example_repo: GitRepo, env: dict,
                                                             store: EtcdStore, keys: Keys,
                                                             ) -> None:
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    before = revisions(store, keys)
    text = (example_repo.path / "payments/prod.yaml").read_text()
    example_repo.commit({"payments/prod.yaml": text.replace("pool_size: 50", "pool_size: 75")},
                        message="bigger pool", author="Carol Ops <carol@example.com>")
    res = cli("apply", "--repo", str(example_repo.path), "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    out = res.json()
    assert [(d["service"], d["environment"], d["deploy"], d["changed"]) for d in out["deploys"]] \
        == [("payments", "prod", 2, ["database.pool_size"])]
    after = revisions(store, keys)
    changed = {k for k in after if after[k] != before.get(k)}
    root = keys.root
    assert changed == {f"{root}payments/prod/database.pool_size",
                       f"{root}_system/units/payments/prod",
                       f"{root}_system/history/payments/prod/0000000002",
                       f"{root}_system/last-applied"}
    env_ = data(store, keys)["payments/prod/database.pool_size"]
    assert env_["value"] == 75
    assert env_["metadata"]["created_by"] == "carol@example.com"
    assert env_["metadata"]["approved_by"] is None
    assert env_["version"] == example_repo.head()[:12]
    # untouched keys keep the commit that last changed them
    other = data(store, keys)["payments/prod/database.host"]
    assert other["version"] == "v1.0.0"


def test_deleted_key_is_pruned_unless_no_prune(example_repo: GitRepo, env: dict,
                                               store: EtcdStore, keys: Keys) -> None:
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    text = (example_repo.path / "notifications/prod.yaml").read_text()
    example_repo.commit({"notifications/prod.yaml": text.replace("  rate_per_second: 14.5\n",
                                                                 "")})
    res = cli("apply", "--repo", str(example_repo.path), "--no-prune", env=env)
    assert res.exit_code == 0
    assert "notifications/prod/email.rate_per_second" in data(store, keys)
    diff = cli("diff", "--repo", str(example_repo.path), "-f", "json", env=env).json()
    assert diff["units"] == [{"service": "notifications", "environment": "prod", "changes": [
        {"key": "email.rate_per_second", "op": "delete", "old": 14.5, "new": None}]}]
    res = cli("apply", "--repo", str(example_repo.path), env=env)
    assert res.exit_code == 0
    assert "notifications/prod/email.rate_per_second" not in data(store, keys)
    hist = cli("history", "notifications", "prod", "-f", "json", env=env).json()
    assert hist["deploys"][0]["deleted"] == [{"key": "email.rate_per_second", "old": 14.5}]


def test_removed_service_is_pruned_with_a_deploy_record(tmp_path: Path, env: dict,
                                                        store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 2\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"b/prod.yaml": None}, message="retire b")
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.json()["deploys"] == [{"service": "b", "environment": "prod", "deploy": 2,
                                      "version": repo.head()[:12], "added": [], "changed": [],
                                      "deleted": ["y"]}]
    assert set(data(store, keys)) == {"a/prod/x"}


def test_invalid_unit_is_skipped_while_others_deploy(tmp_path: Path, env: dict,
                                                     store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"a/prod.yaml": "x: 2\n", "b/prod.yaml": "y: 2\ny: 3\n"})
    res = cli("apply", "--repo", str(repo.path), env=env)
    assert res.exit_code == 1
    assert "b/prod" in res.stdout and "duplicate-key" in res.stdout
    live = data(store, keys)
    assert live["a/prod/x"]["value"] == 2
    assert live["b/prod/y"]["value"] == 1  # untouched, not half-written
    # the failed unit stays unconverged: fixing it later deploys it
    repo.commit({"b/prod.yaml": "y: 3\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert data(store, keys)["b/prod/y"]["value"] == 3


def test_unknown_environment_is_refused_not_pruned(tmp_path: Path, env: dict,
                                                   store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "a/staging.yaml": "x: 2\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({".gitconf.yaml": "environments: [prod]\n"})
    res = cli("apply", "--repo", str(repo.path), "--full", env=env)
    assert res.exit_code == 1
    assert "a/staging/x" in data(store, keys)


def test_diff_exit_code_and_secrets(example_repo: GitRepo, env: dict) -> None:
    res = cli("diff", "--repo", str(example_repo.path), "--exit-code", env=env)
    assert res.exit_code == 1
    assert "prod-password-from-vault" not in res.stdout
    assert '+ database.password = "***"' in res.stdout
    shown = cli("diff", "--repo", str(example_repo.path), "--show-secrets", "-f", "json", env=env)
    assert "prod-password-from-vault" in shown.stdout
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    res = cli("diff", "--repo", str(example_repo.path), "--exit-code", env=env)
    assert res.exit_code == 0 and "no differences" in res.stdout


def test_dry_run_writes_nothing(example_repo: GitRepo, env: dict, store: EtcdStore) -> None:
    before = store.revision()
    res = cli("apply", "--repo", str(example_repo.path), "--dry-run", env=env)
    assert res.exit_code == 0 and "payments/prod" in res.stdout
    assert store.revision() == before


def test_service_and_env_filters(example_repo: GitRepo, env: dict, store: EtcdStore,
                                 keys: Keys) -> None:
    res = cli("apply", "--repo", str(example_repo.path), "--service", "payments", "--env",
              "prod", env=env)
    assert res.exit_code == 0
    assert {k.split("/")[0] + "/" + k.split("/")[1] for k in data(store, keys)} == \
        {"payments/prod"}
    # the rest was left unconverged and a plain apply picks it up
    res = cli("apply", "--repo", str(example_repo.path), "-f", "json", env=env)
    assert len(res.json()["deploys"]) == 14


def test_out_of_band_write_is_drift_seen_by_diff_and_status(example_repo: GitRepo, env: dict,
                                                           store: EtcdStore, keys: Keys) -> None:
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    store.put(keys.data_key(UnitId("search", "prod"), "index.products.shards"), b"99")
    store.delete(keys.data_key(UnitId("search", "dev"), "index.products.replicas"))
    diff = cli("diff", "--repo", str(example_repo.path), "-f", "json", env=env).json()
    assert {(u["service"], u["environment"]) for u in diff["units"]} == {
        ("search", "prod"), ("search", "dev")}
    status = cli("status", "--repo", str(example_repo.path), "-f", "json", env=env).json()
    states = {(u["service"], u["environment"]): u["state"] for u in status["units"]}
    assert states[("search", "prod")] == "drifted"
    assert states[("search", "dev")] == "out-of-sync"
    assert states[("payments", "prod")] == "in-sync"
    # the example's policy is `pr` (SPEC's default): apply keeps the drift as overrides that
    # propose it to Git, instead of reverting it (`revert` is tested below)
    res = cli("apply", "--repo", str(example_repo.path), "-f", "json", env=env).json()
    assert {(o["service"], o["environment"], o["source"]) for o in res["overrides"]["opened"]} \
        == {("search", "prod", "drift"), ("search", "dev", "drift")}
    live = data_raw(store, keys)
    assert live["search/prod/index.products.shards"] == b"99"
    assert "search/dev/index.products.replicas" not in live
    status = cli("status", "--repo", str(example_repo.path), "-f", "json", env=env).json()
    states = {(u["service"], u["environment"]): u["state"] for u in status["units"]}
    assert states[("search", "prod")] == states[("search", "dev")] == "overridden"


def test_get_and_history_json_shapes(example_repo: GitRepo, env: dict) -> None:
    assert cli("apply", "--repo", str(example_repo.path), env=env).exit_code == 0
    got = cli("get", "payments", "prod", "-f", "json", env=env).json()
    assert got["service"] == "payments" and got["values"]["database.pool_size"] == 50
    assert got["values"]["database.password"] == "***"
    shown = cli("get", "payments", "prod", "--show-secrets", "-f", "json", env=env).json()
    assert shown["values"]["database.password"] == "prod-password-from-vault"
    one = cli("get", "payments", "prod", "database.pool_size", "-f", "json", env=env).json()
    assert one["value"] == 50 and one["metadata"]["deploy"] == 1
    hist = cli("history", "payments", "prod", "-f", "json", env=env).json()
    assert hist["service"] == "payments" and [d["deploy"] for d in hist["deploys"]] == [1]
    assert cli("history", "nope", "prod", env=env).exit_code == 1
    missing = cli("get", "payments", "prod", "no.such.key", env=env)
    assert missing.exit_code == 1 and "no.such.key" in missing.stderr


def test_unknown_ref_and_unreachable_etcd(example_repo: GitRepo, env: dict) -> None:
    res = cli("apply", "--repo", str(example_repo.path), "--ref", "nope", env=env)
    assert res.exit_code == 1 and "'nope' is not a commit" in res.stderr
    bad = {**env, "GITCONF_ETCD_ENDPOINTS": "127.0.0.1:1"}
    res = cli("diff", "--repo", str(example_repo.path), env=bad)
    assert res.exit_code == 2 and "unreachable" in res.stderr.lower()
    assert cli("apply", "--repo", "/nonexistent", env=env).exit_code == 2


def test_url_repository_is_cloned_into_the_cache(tmp_path: Path, env: dict, store: EtcdStore,
                                                 keys: Keys) -> None:
    repo = make_repo(tmp_path / "src", {"a/prod.yaml": "x: 1\n"})
    url = f"file://{repo.path}"
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    repo.commit({"a/prod.yaml": "x: 2\n"})
    assert cli("apply", "--repo", url, env=env).exit_code == 0  # fetched on the later run
    assert data(store, keys)["a/prod/x"]["value"] == 2
    assert any((tmp_path / "cache" / "repos").iterdir())


def test_foreign_raw_values_are_replaced_and_pruned(tmp_path: Path, env: dict, store: EtcdStore,
                                                    keys: Keys) -> None:
    """Bytes that are not an envelope (an etcdctl put) are shown as text, then converged
    (drift policy `revert`; the default, `pr`, is tested in test_overrides.py)."""
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", ".gitconf.yaml": "drift: revert\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    unit = UnitId("a", "prod")
    store.put(keys.data_key(unit, "x"), b"plain text")
    store.put(keys.data_key(unit, "stray"), b"42")
    diff = cli("diff", "--repo", str(repo.path), "-f", "json", env=env).json()
    assert diff["units"][0]["changes"] == [
        {"key": "stray", "op": "delete", "old": "42", "new": None},
        {"key": "x", "op": "change", "old": "plain text", "new": 1}]
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert set(data(store, keys)) == {"a/prod/x"}
    record = cli("history", "a", "prod", "-f", "json", env=env).json()["deploys"][0]
    assert record["deleted"] == [{"key": "stray", "old": "42"}]


def test_remote_gone_is_a_clear_connection_error(tmp_path: Path, env: dict, store: EtcdStore,
                                                 keys: Keys) -> None:
    repo = make_repo(tmp_path / "src", {"a/prod.yaml": "x: 1\n"})
    url = f"file://{repo.path}"
    assert cli("apply", "--repo", url, env=env).exit_code == 0
    before = store.revision()
    repo.path.rename(tmp_path / "moved")
    res = cli("apply", "--repo", url, env=env)
    assert res.exit_code == 2
    assert "fetching file://" in res.stderr and "failed" in res.stderr
    assert store.revision() == before  # nothing written from a stale cache
    creds = cli("diff", "--repo", "https://user:hunter2@127.0.0.1:1/config.git", env=env)
    assert creds.exit_code == 2 and "hunter2" not in creds.stderr
    assert "https://***@127.0.0.1:1/config.git" in creds.stderr


def test_keys_gitconf_never_deployed_are_left_alone(tmp_path: Path, env: dict, store: EtcdStore,
                                                    keys: Keys) -> None:
    """Another tool's keys under the prefix are not pruned; a managed unit's extra keys are
    (drift policy `revert`)."""
    legacy = UnitId("legacy", "prod")
    store.put(keys.data_key(legacy, "x"), b"hand-written")
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", ".gitconf.yaml": "drift: revert\n"})
    for args in (["apply"], ["apply", "--full"]):
        assert cli(*args, "--repo", str(repo.path), env=env).exit_code == 0
        assert "legacy/prod/x" in data_raw(store, keys)
    status = cli("status", "--repo", str(repo.path), "-f", "json", env=env).json()
    assert [u["service"] for u in status["units"]] == ["a"]
    store.put(keys.data_key(legacy, "y"), b"more")  # a foreign write: seen, still not ours
    store.put(keys.data_key(UnitId("a", "prod"), "stray"), b"1")  # inside our unit: pruned
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    live = data_raw(store, keys)
    assert {"legacy/prod/x", "legacy/prod/y", "a/prod/x"} <= set(live)
    assert "a/prod/stray" not in live


def data_raw(store: EtcdStore, keys: Keys) -> dict[str, bytes]:
    kvs, _ = store.scan(keys.root_b)
    return {kv.key[len(keys.root_b):].decode(): kv.value for kv in kvs
            if not kv.key.startswith(keys.system_b)}


def test_uncommitted_edits_are_pointed_out(tmp_path: Path, env: dict,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from gitconf.cli.context import warn_uncommitted
    from gitconf.gitsource import GitSource

    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n"})
    (repo.path / "a" / "prod.yaml").write_text("x: 2\n")
    (repo.path / "a" / "dev.yaml").write_text("x: 3\n")
    warn_uncommitted(GitSource.open(str(repo.path)), "HEAD", force=True)
    note = capsys.readouterr().err
    assert "uncommitted changes to a/dev.yaml, a/prod.yaml are not included" in note
    warn_uncommitted(GitSource.open(str(repo.path)), "v1", force=True)  # an explicit ref
    assert capsys.readouterr().err == ""
    res = cli("diff", "--repo", str(repo.path), "-f", "json", env=env)  # not a terminal
    assert res.exit_code == 0 and "uncommitted" not in res.stderr
    assert res.json()["units"][0]["changes"][0]["new"] == 1  # HEAD is what is read
