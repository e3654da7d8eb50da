"""Findings of the security and fault review, end to end through the CLI against a real etcd
and real Git: each test failed before its fix."""

from __future__ import annotations

import os
from pathlib import Path

from gitconf.etcdstore import EtcdStore
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
