"""gitconf with least-privilege etcd users (docs/security.md): an etcd with authentication
enabled, a root user, and one role per use, each limited to `{prefix}/`:

| user      | role              | permission              |
|-----------|-------------------|-------------------------|
| `ci`      | `gitconf-ci`      | readwrite on `/lp/`     |
| `daemon`  | `gitconf-daemon`  | readwrite on `/lp/`     |
| `reader`  | `gitconf-read`    | read on `/lp/`          |

Every command runs through the CLI with `GITCONF_ETCD_USER`/`GITCONF_ETCD_PASSWORD` over
plaintext (no TLS). With readwrite everything works; with read-only, `diff`, `status`, `get`
and `history` work and every write fails with exit 2 and one line saying "permission denied",
and writes nothing. Passwords never appear in any output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitconf.embedded_etcd import EmbeddedEtcd
from gitconf.etcdstore import EtcdConfig, EtcdStore
from tests.daemons import DaemonProc, wait_until
from tests.faults.support import assert_one_line_error, etcdctl
from tests.helpers import GitRepo, Run, cli, make_repo

PREFIX = "/lp"
ROOT_PW = "r00t-lp-Secret"
PASSWORDS = {"ci": "ci-lp-Secret-42", "daemon": "daemon-lp-Secret-43",
             "reader": "reader-lp-Secret-44"}
# the exact commands docs/security.md gives (role, permission)
ROLES = {"ci": ("gitconf-ci", "readwrite"), "daemon": ("gitconf-daemon", "readwrite"),
         "reader": ("gitconf-read", "read")}


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EmbeddedEtcd]:
    server = EmbeddedEtcd().start()
    try:
        ep = server.endpoint
        etcdctl(ep, "user", "add", f"root:{ROOT_PW}")
        for user, (role, perm) in ROLES.items():
            etcdctl(ep, "role", "add", role)
            etcdctl(ep, "role", "grant-permission", role, "--prefix=true", perm, f"{PREFIX}/")
            etcdctl(ep, "user", "add", f"{user}:{PASSWORDS[user]}")
            etcdctl(ep, "user", "grant-role", user, role)
        etcdctl(ep, "auth", "enable")
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def root(auth_etcd: EmbeddedEtcd) -> Iterator[EtcdStore]:
    cfg = EtcdConfig.from_env(auth_etcd.endpoint)
    cfg.user, cfg.password = "root", ROOT_PW
    store = EtcdStore(cfg)
    try:
        yield store
    finally:
        store.close()


def env_for(server: EmbeddedEtcd, user: str, tmp_path: Path) -> dict[str, str]:
    return {"GITCONF_ETCD_ENDPOINTS": server.endpoint, "GITCONF_PREFIX": PREFIX,
            "GITCONF_ETCD_USER": user, "GITCONF_ETCD_PASSWORD": PASSWORDS[user],
            "GITCONF_CACHE_DIR": str(tmp_path / "cache"), "GITHUB_ACTOR": f"{user}@example.com"}


def no_password(*runs: Run) -> None:
    for run in runs:
        for pw in (*PASSWORDS.values(), ROOT_PW):
            assert pw not in run.stdout + run.stderr


def value(root: EtcdStore, key: str) -> object:
    kv = root.get(f"{PREFIX}/{key}".encode())
    return None if kv is None else json.loads(kv.value)["value"]


def wipe(root: EtcdStore) -> None:
    """Each test starts from an empty prefix (the server is shared by the module)."""
    kvs, _ = root.scan(f"{PREFIX}/".encode(), keys_only=True)
    for kv in kvs:
        root.delete(kv.key)


@pytest.fixture
def repo(tmp_path: Path, root: EtcdStore) -> GitRepo:
    wipe(root)
    return make_repo(tmp_path / "config", {
        "svc/schema.yaml": "a: {type: integer}\nb: {type: integer}\n"
                           "token: {type: string, secret: true}\n",
        "svc/prod.yaml": "a: 1\nb: 1\ntoken: tok-lp-1\n",
        "other/prod.yaml": "x: 1\n"})


def test_readwrite_role_can_do_everything(auth_etcd: EmbeddedEtcd, tmp_path: Path,
                                          repo: GitRepo, root: EtcdStore) -> None:
    env = env_for(auth_etcd, "ci", tmp_path)
    r = str(repo.path)
    runs = [cli("validate", r, env=env)]
    first = repo.head()
    runs.append(cli("apply", "--repo", r, env=env))
    assert runs[-1].exit_code == 0, runs[-1].stderr
    repo.commit({"svc/prod.yaml": "a: 2\nb: 1\ntoken: tok-lp-1\n"})
    for args in (("diff", "--repo", r), ("status", "--repo", r), ("apply", "--repo", r),
                 ("get", "svc", "prod"), ("history", "svc", "prod"),
                 ("rollback", first, "--service", "svc", "--repo", r, "--yes"),
                 ("override", "other", "prod", "x", "5", "--reason", "INC-1", "--no-pr",
                  "--repo", r)):
        run = cli(*args, env=env)
        runs.append(run)
        assert run.exit_code == 0, f"{args[0]}: {run.stderr}{run.stdout}"
    assert value(root, "svc/prod/a") == 1  # rolled back
    assert value(root, "other/prod/x") == 5
    no_password(*runs)


@pytest.mark.parametrize("command", ["apply", "rollback", "override"])
def test_read_only_role_reads_and_every_write_is_denied_in_one_line(
        auth_etcd: EmbeddedEtcd, tmp_path: Path, repo: GitRepo, root: EtcdStore,
        command: str) -> None:
    ci, ro = env_for(auth_etcd, "ci", tmp_path), env_for(auth_etcd, "reader", tmp_path)
    r = str(repo.path)
    first = repo.head()
    assert cli("apply", "--repo", r, env=ci).exit_code == 0
    repo.commit({"svc/prod.yaml": "a: 2\nb: 1\ntoken: tok-lp-1\n"})
    assert cli("apply", "--repo", r, env=ci).exit_code == 0
    repo.commit({"svc/prod.yaml": "a: 3\nb: 1\ntoken: tok-lp-1\n"})  # not applied yet
    reads = [cli("validate", r, env=ro), cli("diff", "--repo", r, "-f", "json", env=ro),
             cli("status", "--repo", r, "-f", "json", env=ro),
             cli("get", "svc", "prod", "-f", "json", env=ro),
             cli("history", "svc", "prod", "-f", "json", env=ro)]
    for run in reads:
        assert run.exit_code == 0, run.stderr
    assert reads[1].json()["units"][0]["changes"][0]["new"] == 3
    assert reads[3].json()["values"]["token"] == "***"
    assert [d["deploy"] for d in reads[4].json()["deploys"]] == [2, 1]
    before = root.revision()
    args = {"apply": ("apply", "--repo", r),
            "rollback": ("rollback", first, "--service", "svc", "--repo", r, "--yes"),
            "override": ("override", "svc", "prod", "a", "9", "--reason", "INC-2", "--no-pr",
                         "--repo", r)}[command]
    denied = cli(*args, env=ro)
    assert_one_line_error(denied, contains="permission denied")
    assert root.revision() == before  # nothing written
    no_password(*reads, denied)


def test_daemon_runs_with_its_own_readwrite_role(auth_etcd: EmbeddedEtcd, tmp_path: Path,
                                                 repo: GitRepo, root: EtcdStore) -> None:
    env = env_for(auth_etcd, "daemon", tmp_path)
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: d.ready()[0] == 200, timeout=20)
        wait_until(lambda: root.get(f"{PREFIX}/svc/prod/a".encode()) is not None, timeout=10)
        repo.commit({"svc/prod.yaml": "a: 7\nb: 1\ntoken: tok-lp-1\n"})
        wait_until(lambda: value(root, "svc/prod/a") == 7, timeout=10)
        assert d.metric("gitconf_leader") == 1
        assert PASSWORDS["daemon"] not in d.logs()
        assert d.proc is not None
        with open(f"/proc/{d.proc.pid}/cmdline", "rb") as f:
            assert PASSWORDS["daemon"].encode() not in f.read()  # never in argv
    finally:
        assert d.stop() == 0
    assert PASSWORDS["daemon"] not in d.logs()


def test_daemon_with_a_read_only_role_says_so_and_writes_nothing(
        auth_etcd: EmbeddedEtcd, tmp_path: Path, repo: GitRepo, root: EtcdStore) -> None:
    env = env_for(auth_etcd, "reader", tmp_path)
    before = root.revision()
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: "permission denied" in d.logs(), timeout=15)
        assert d.ready()[0] == 503
        assert root.revision() == before
        assert "Traceback" not in d.logs() and PASSWORDS["reader"] not in d.logs()
    finally:
        assert d.stop() == 0


def test_the_documented_roles_are_the_tested_roles() -> None:
    """docs/security.md gives the exact `etcdctl` commands; they grant what this module tests."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    granted = dict(re.findall(
        r"^etcdctl role grant-permission (\S+) --prefix=true (read|readwrite) /config/$", doc,
        re.M))
    assert granted == dict(ROLES.values())
    for role in granted:
        assert f"etcdctl role add {role}\n" in doc
        assert re.search(rf"^etcdctl user grant-role \S+ {role}$", doc, re.M)
