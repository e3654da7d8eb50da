"""Emergency overrides and drift as follow-up pull requests (SPEC §5), end to end: the CLI
against a real etcd, a bare Git remote, and a GitHub-compatible API that checks every request
against GitHub's OpenAPI description."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.conftest import EXAMPLE
from tests.fakegithub import FakeGitHub
from tests.helpers import GitRepo, cli, git

UNIT = UnitId("payments", "prod")
BRANCH = "gitconf/override/payments/prod"


class Setup:
    def __init__(self, root: Path, env: dict[str, str], gh: FakeGitHub):
        self.remote = root / "origin.git"
        seed = root / "seed"
        shutil.copytree(EXAMPLE, seed)
        (seed / ".gitconf.yaml").write_text(
            (seed / ".gitconf.yaml").read_text() + "github: acme/config\n")
        repo = GitRepo(seed)
        repo.commit(message="initial config")
        git(root, "clone", "-q", "--bare", str(seed), str(self.remote))
        git(root, "clone", "-q", str(self.remote), "work")
        self.work = root / "work"
        self.gh = gh
        self.env = {**env, "GITHUB_TOKEN": gh.token, "GITHUB_API_URL": gh.url,
                    "GITHUB_ACTOR": "oncall@example.com"}

    def run(self, *args: str) -> object:
        return cli(*args, "--repo", str(self.work), env=self.env)

    def etcd(self, *args: str) -> object:
        """Commands that read etcd only (no repository)."""
        return cli(*args, env=self.env)

    def remote_file(self, ref: str, path: str) -> str:
        return git(self.remote, "show", f"{ref}:{path}")

    def merge_branch(self) -> None:
        """A reviewer merges the pull request on the remote."""
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "merge", "-q", "--no-ff", "-m", "merge override", f"origin/{BRANCH}")
        git(self.work, "push", "-q", "origin", "HEAD:main")


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="t0k-secret-token", repo="acme/config") as fake:
        yield fake
    assert fake.violations == []


@pytest.fixture
def setup(tmp_path: Path, env: dict[str, str], gh: FakeGitHub) -> Setup:
    s = Setup(tmp_path, env, gh)
    assert s.run("apply").exit_code == 0  # type: ignore[attr-defined]
    return s


def envelope(store: EtcdStore, keys: Keys, key: str) -> dict:
    kv = store.get(keys.data_key(UNIT, key))
    assert kv is not None
    return json.loads(kv.value)


def test_on_call_story_override_pr_merge_and_provenance(setup: Setup, store: EtcdStore,
                                                         keys: Keys, gh: FakeGitHub) -> None:
    res = setup.run("override", "payments", "prod", "database.pool_size", "80",
                    "--reason", "INC-1: pool exhausted", "-f", "json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    doc = res.json()  # type: ignore[attr-defined]
    assert doc["state"] == "open" and doc["source"] == "override"
    assert doc["keys"] == [{"key": "database.pool_size", "old": 50, "new": 80}]
    assert doc["pull_request"]["number"] == 1 and doc["pull_request"]["branch"] == BRANCH
    # live at once, with override provenance
    env = envelope(store, keys, "database.pool_size")
    assert env["value"] == 80 and env["metadata"]["source"] == "override"
    assert env["metadata"]["deployed_by"] == "oncall@example.com"
    from gitconf.records import OverrideRecord  # the record names the revision of the write
    written = store.get(keys.data_key(UNIT, "database.pool_size")).mod_revision
    record = OverrideRecord.from_json(store.get(keys.override(UNIT)).value)
    assert [k.revision for k in record.keys] == [written] and written > 0
    # one minimal commit on the branch: only the overridden line changes, comment kept
    diff = git(setup.remote, "diff", "main", BRANCH)
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ["-  pool_size: 50          # sized for peak checkout traffic",
                       "+  pool_size: 80          # sized for peak checkout traffic"]
    log = git(setup.remote, "log", "-1", "--format=%an <%ae>|%cn|%B", BRANCH)
    assert log.startswith("oncall <oncall@example.com>|gitconf|")
    assert f"Gitconf-Override: {doc['id']}" in log
    pr = gh.pulls[1]
    assert (pr.head, pr.base, pr.state) == (BRANCH, "main", "open")
    assert set(pr.labels) == {"config", "follow-up"}  # from .gitconf.yaml pull_requests.labels
    assert "INC-1: pool exhausted" in pr.body and "gitconf overrides cancel" in pr.body

    # apply leaves the held key alone and says so; status shows the unit overridden
    res = setup.run("apply", "-f", "json")
    assert res.exit_code == 0  # type: ignore[attr-defined]
    assert res.json()["held"][0]["service"] == "payments"  # type: ignore[attr-defined]
    assert envelope(store, keys, "database.pool_size")["value"] == 80
    states = {(u["service"], u["environment"]): u["state"]
              for u in setup.run("status", "-f", "json").json()["units"]}  # type: ignore
    assert states[("payments", "prod")] == "overridden"

    # a second override of the unit joins the same override and pull request
    res = setup.run("override", "payments", "prod", "providers.retries", "7",
                    "--reason", "INC-1: retry more", "-f", "json")
    assert res.exit_code == 0  # type: ignore[attr-defined]
    assert res.json()["id"] == doc["id"]  # type: ignore[attr-defined]
    assert len(gh.pulls) == 1
    assert git(setup.remote, "rev-list", "--count", f"main..{BRANCH}") == "2"

    # merged: the next apply closes the override and gives the keys Git's provenance back
    setup.merge_branch()
    gh.merge(1)
    res = setup.run("apply", "-f", "json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    closed = res.json()["overrides"]["closed"]  # type: ignore[attr-defined]
    assert [(c["id"], c["state"]) for c in closed] == [(doc["id"], "merged")]
    env = envelope(store, keys, "database.pool_size")
    assert env["value"] == 80 and env["metadata"]["source"] == "git"
    assert env["metadata"]["git_commit"] == git(setup.work, "rev-parse", "HEAD")
    assert setup.etcd("overrides", "-f", "json").json() == {"overrides": []}  # type: ignore


def test_closed_pull_request_returns_the_key_to_git(setup: Setup, store: EtcdStore,
                                                    keys: Keys, gh: FakeGitHub) -> None:
    assert setup.run("override", "payments", "prod", "log_level", "debug",
                     "--reason", "debugging").exit_code == 0  # type: ignore[attr-defined]
    assert envelope(store, keys, "log_level")["value"] == "debug"
    gh.close(1)
    res = setup.run("apply", "-f", "json")
    assert res.json()["overrides"]["closed"][0]["state"] == "closed"  # type: ignore
    env = envelope(store, keys, "log_level")
    assert env["value"] == "info" and env["metadata"]["source"] == "git"
    hist = setup.etcd("history", "payments", "prod", "-f", "json").json()  # type: ignore
    assert [d["source"] for d in hist["deploys"][:2]] == ["git", "override"]


def test_cancel_returns_keys_and_closes_the_pull_request(setup: Setup, store: EtcdStore,
                                                         keys: Keys, gh: FakeGitHub) -> None:
    assert setup.run("override", "payments", "prod", "feature_flags.new_checkout", "true",
                     "--reason", "try it").exit_code == 0  # type: ignore[attr-defined]
    res = setup.run("overrides", "cancel", "payments", "prod", "--reason", "enough")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    assert envelope(store, keys, "feature_flags.new_checkout")["value"] is False
    assert gh.pulls[1].state == "closed" and "closed" in gh.comments[-1].body
    listed = setup.etcd("overrides", "--all", "-f", "json").json()["overrides"]  # type: ignore
    assert [(o["state"], o["closed_reason"]) for o in listed] == [("closed", "enough")]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["database.pool_size", "5000"], 1, "refuses the override"),  # over the schema's max
    (["database.pool_size", "many"], 1, "refuses the override"),  # wrong type
    (["_system.x", "1"], 1, "reserved"),
    (["database.pool_size", "[1, 2"], 2, "not one YAML value"),
    (["database.pool_size", "1", "--ttl", "soon"], 2, "not a duration"),
    (["database.pool_size"], 2, "give a VALUE"),
])
def test_bad_overrides_write_nothing(setup: Setup, store: EtcdStore, keys: Keys,
                                     gh: FakeGitHub, args: list[str], code: int,
                                     message: str) -> None:
    before = store.revision()
    res = setup.run("override", "payments", "prod", *args, "--reason", "x")
    assert res.exit_code == code, res.stdout  # type: ignore[attr-defined]
    assert message in res.stderr  # type: ignore[attr-defined]
    assert store.revision() == before
    assert gh.requests_log == []
    assert BRANCH not in git(setup.remote, "branch", "--list")


def test_unknown_unit_is_a_usage_error(setup: Setup, gh: FakeGitHub) -> None:
    res = setup.run("override", "payments", "qa", "log_level", "debug", "--reason", "x")
    assert res.exit_code == 2 and "no unit payments/qa" in res.stderr  # type: ignore


def test_secret_override_is_masked_everywhere(setup: Setup, store: EtcdStore, keys: Keys,
                                              gh: FakeGitHub) -> None:
    secret = "sk_live_ROTATED_123456"
    res = setup.run("override", "payments", "prod", "providers.stripe.api_key", secret,
                    "--reason", "key leaked, rotated", "-f", "json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    assert envelope(store, keys, "providers.stripe.api_key")["value"] == secret
    outputs = [res.stdout, res.stderr,  # type: ignore[attr-defined]
               setup.etcd("overrides", "-f", "json").stdout,  # type: ignore[attr-defined]
               setup.etcd("history", "payments", "prod", "-v").stdout,  # type: ignore
               json.dumps([r.json for r in gh.requests_log]), gh.pulls[1].body,
               gh.pulls[1].title]
    kvs, _ = store.scan(keys.system_b)
    outputs += [kv.value.decode() for kv in kvs]
    for text in outputs:
        assert secret not in text and "sk_live_prod_abcdef" not in text
    # the branch carries the value (Git is the source of truth), the pull request does not
    assert secret in setup.remote_file(BRANCH, "payments/prod.yaml")


def test_drift_under_the_default_policy_becomes_a_pull_request(setup: Setup, store: EtcdStore,
                                                               keys: Keys,
                                                               gh: FakeGitHub) -> None:
    store.put(keys.data_key(UNIT, "database.timeout"), b'"9s"')  # a hotfix with etcdctl
    res = setup.run("apply", "-f", "json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    opened = res.json()["overrides"]["opened"]  # type: ignore[attr-defined]
    assert [(o["source"], o["by"], o["keys"]) for o in opened] == [
        ("drift", "etcd", [{"key": "database.timeout", "old": "3s", "new": "9s"}])]
    assert store.get(keys.data_key(UNIT, "database.timeout")).value == b'"9s"'  # kept
    assert gh.pulls[1].head == BRANCH and "Drift" in gh.pulls[1].title
    assert "timeout: 9s" in setup.remote_file(BRANCH, "payments/prod.yaml")
    again = setup.run("apply", "-f", "json").json()  # type: ignore[attr-defined]
    assert again["overrides"] == {"opened": [], "closed": []} and len(gh.pulls) == 1


def test_no_token_pushes_the_branch_and_says_what_to_open(setup: Setup, store: EtcdStore,
                                                          gh: FakeGitHub) -> None:
    env = {k: v for k, v in setup.env.items() if k != "GITHUB_TOKEN"}
    res = cli("override", "payments", "prod", "log_level", "warning", "--reason", "quiet",
              "--repo", str(setup.work), env=env)
    assert res.exit_code == 0, res.stderr
    assert "open a pull request from gitconf/override/payments/prod to main" in res.stdout
    assert "log_level: warning" in setup.remote_file(BRANCH, "payments/prod.yaml")
    assert gh.requests_log == []


def test_github_down_keeps_the_override_and_marks_the_pull_request_pending(
        setup: Setup, store: EtcdStore, keys: Keys, gh: FakeGitHub) -> None:
    gh.fail_all(503)
    res = setup.run("override", "payments", "prod", "log_level", "error", "--reason", "x",
                    "-f", "json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    doc = res.json()  # type: ignore[attr-defined]
    assert doc["pr_pending"] is True and doc["follow_up"]["pending"] is True
    assert envelope(store, keys, "log_level")["value"] == "error"


def test_two_terminals_racing_both_stand_and_share_one_pull_request(
        setup: Setup, store: EtcdStore, keys: Keys, gh: FakeGitHub) -> None:
    """Two on-call engineers override two keys of one unit at the same moment, from two
    processes: both values are live, one override holds both keys, and one pull request
    carries both edits (the second push is rebuilt on the first)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **setup.env}
    base = [sys.executable, "-m", "gitconf.cli.main", "override", "payments", "prod"]
    runs = [subprocess.Popen([*base, key, value, "--reason", f"INC-9: {key}", "-f", "json",
                              "--repo", str(setup.work)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for key, value in (("database.pool_size", "81"), ("providers.retries", "9"))]
    outs = [(r.communicate(timeout=120), r.returncode) for r in runs]
    for (_out, err), code in outs:
        assert code == 0, err
    ids = {json.loads(out)["id"] for (out, _), _ in outs}
    assert len(ids) == 1  # one override of the unit, joined by the second
    assert envelope(store, keys, "database.pool_size")["value"] == 81
    assert envelope(store, keys, "providers.retries")["value"] == 9
    record = json.loads(setup.etcd("overrides", "-f", "json").stdout)  # type: ignore
    (only,) = record["overrides"]
    assert sorted(k["key"] for k in only["keys"]) == ["database.pool_size", "providers.retries"]
    assert [pr.head for pr in gh.pulls.values()] == [BRANCH]
    text = setup.remote_file(BRANCH, "payments/prod.yaml")
    assert "pool_size: 81" in text and "retries: 9" in text, outs
