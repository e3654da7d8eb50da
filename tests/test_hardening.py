"""Findings of the security and fault review, end to end through the CLI against a real etcd
and real Git: each test failed before its fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.helpers import cli, make_repo

SECRET_TEXT = "AKIA-OUTSIDE-THE-REPO-0123"


def test_symlinked_values_file_is_a_problem_never_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"token: {SECRET_TEXT}\n")
    root = tmp_path / "repo"
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "dev.yaml").write_text("a: 1\n")
    os.symlink(outside, root / "svc" / "prod.yaml")
    res = cli("validate", str(root), "-f", "json")
    assert res.exit_code == 1
    problems = res.json()["problems"]
    assert {"file": "svc/prod.yaml", "line": 1, "column": 1, "code": "symlink"}.items() <= \
        problems[0].items()
    text = cli("validate", str(root))
    assert SECRET_TEXT not in text.stdout + text.stderr + res.stdout


def test_a_unit_whose_file_became_a_symlink_fails_and_keeps_its_keys(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\nb: 2\n", "svc/dev.yaml": "a: 0\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    (repo.path / "svc" / "prod.yaml").unlink()
    os.symlink("/etc/hostname", repo.path / "svc" / "prod.yaml")
    repo.commit(message="a link instead of a file")
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 1
    assert res.json()["failed"][0]["service"] == "svc"
    assert "symbolic link" in res.json()["failed"][0]["reason"]
    kvs, _ = store.scan(keys.root_b + b"svc/prod/")
    assert sorted(kv.key.rsplit(b"/", 1)[1] for kv in kvs) == [b"a", b"b"]  # not pruned


def test_a_syntax_error_in_settings_stops_apply_entirely(tmp_path: Path, env: dict,
                                                          store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {".gitconf.yaml": "environments: [prod\n",
                                      "svc/prod.yaml": "a: 1\n", "docs/dev.yaml": "b: 2\n"})
    before = store.revision()
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 1
    reasons = {f["reason"] for f in res.json()["failed"]}
    assert all(r.startswith("invalid .gitconf.yaml: .gitconf.yaml:") for r in reasons)
    assert store.revision() == before  # nothing written, not even the ignored directory
    assert cli("diff", "--repo", str(repo.path), env=env).exit_code == 1


def test_no_prune_of_a_removed_service_is_picked_up_by_the_next_apply(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 2\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"b/prod.yaml": None}, message="retire b")
    assert cli("apply", "--repo", str(repo.path), "--no-prune", env=env).exit_code == 0
    assert store.get(keys.data_key(UnitId("b", "prod"), "y")) is not None  # kept
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.get(keys.data_key(UnitId("b", "prod"), "y")) is None  # converged later


def test_first_deploy_keeps_keys_another_tool_wrote(tmp_path: Path, env: dict,
                                                    store: EtcdStore, keys: Keys) -> None:
    unit = UnitId("svc", "prod")
    store.put(keys.data_key(unit, "legacy.flag"), b"on")
    store.put(keys.data_key(unit, "a"), b"old")
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 0
    assert res.json()["kept"][0]["reason"].endswith("legacy.flag")
    assert store.get(keys.data_key(unit, "legacy.flag")).value == b"on"  # never deleted
    repo.commit({"svc/prod.yaml": "a: 2\n"})
    assert cli("apply", "--repo", str(repo.path), "--full", env=env).exit_code == 0
    assert store.get(keys.data_key(unit, "legacy.flag")).value == b"on"  # nor later
    repo.commit({"svc/prod.yaml": "a: 2\nlegacy:\n  flag: true\n"})  # Git adopts it
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert b'"value":true' in store.get(keys.data_key(unit, "legacy.flag")).value


def test_mass_delete_guard_refuses_an_emptied_unit_unless_allowed(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    from gitconf.gitsource import GitSource
    from gitconf.reconcile import Reconciler, Request

    values = "".join(f"k{i}: {i}\n" for i in range(20))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": values, "svc/dev.yaml": values})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"svc/prod.yaml": "k0: 0\n", "svc/dev.yaml": None}, message="oops")
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 1
    failed = {f["environment"]: f["reason"] for f in res.json()["failed"]}
    assert "19 of its 20 keys" in failed["prod"] and "whole unit" in failed["dev"]
    assert len(store.scan(keys.unit_prefix(UnitId("svc", "prod")))[0]) == 20  # untouched
    rec = Reconciler(GitSource.open(str(repo.path)), store, keys)
    assert rec.run(Request(allow_mass_delete=True)).ok
    assert len(store.scan(keys.unit_prefix(UnitId("svc", "prod")))[0]) == 1


@pytest.mark.slow
def test_a_100k_key_unit_deploys_in_several_transactions(tmp_path: Path, env: dict,
                                                         store: EtcdStore, keys: Keys) -> None:
    """It passed validate but could not deploy, blaming concurrent writes: its deploy record
    alone was over etcd's request limit. Records now list the first keys and the totals."""
    values = "".join(f"k{i:06d}: v{i}\n" for i in range(100_000))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": values})
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    assert len(res.json()["deploys"][0]["added"]) == 100_000
    assert store.count(keys.unit_prefix(UnitId("svc", "prod")))[0] == 100_000
    record = cli("history", "svc", "prod", "-f", "json", env=env).json()["deploys"][0]
    assert record["totals"] == [100_000, 0, 0] and len(record["added"]) < 1000


def test_the_mass_delete_guard_is_set_in_settings(tmp_path: Path, env: dict,
                                                  store: EtcdStore, keys: Keys) -> None:
    values = "".join(f"k{i}: {i}\n" for i in range(6))
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": values,
                                      ".gitconf.yaml": "mass_delete: {max_percent: 20, "
                                                       "min_keys: 2}\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"svc/prod.yaml": "k0: 0\nk1: 1\nk2: 2\n"})  # 3 of 6: over 20%, at least 2
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 1 and "mass-delete guard (20%" in res.json()["failed"][0]["reason"]
    bad = cli("validate", str(repo.path), env=env)
    assert bad.exit_code == 0


def test_unclosed_quote_and_tab_are_said_where_they_are(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "prod.yaml").write_text('a: 1\nb: "unclosed\nc: 2\n')
    (tmp_path / "svc" / "dev.yaml").write_text("a:\n\tb: 1\n")
    problems = {p["file"]: p for p in
                cli("validate", str(tmp_path), "-f", "json").json()["problems"]}
    quote, tab = problems["svc/prod.yaml"], problems["svc/dev.yaml"]
    assert (quote["line"], quote["column"]) == (2, 4)  # where the quote opened
    assert "never closed" in quote["message"]
    assert (tab["line"], tab["column"]) == (2, 1) and "tab" in tab["message"]
