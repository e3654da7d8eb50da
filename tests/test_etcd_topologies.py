"""gitconf against etcd set up the way production runs it: TLS with client certificates and
user/password auth, and a 3-member cluster with one member down."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitconf.embedded_etcd import EmbeddedEtcd, etcd_binary, start_cluster
from gitconf.etcdstore import EtcdConfig, EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.certs import make_tls
from tests.helpers import cli, make_repo

PASSWORD = "s3cret-Pa55word"


def etcdctl(server: EmbeddedEtcd, *args: str) -> str:
    assert server.tls is not None
    ctl = str(Path(etcd_binary()).with_name("etcdctl"))
    res = subprocess.run([ctl, f"--endpoints=https://{server.endpoint}",
                          f"--cacert={server.tls.ca}", f"--cert={server.tls.client_cert}",
                          f"--key={server.tls.client_key}", *args],
                         capture_output=True, text=True, input=f"{PASSWORD}\n")
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEtcd]:
    tls = make_tls(tmp_path_factory.mktemp("certs"))
    server = EmbeddedEtcd(tls=tls).start()
    etcdctl(server, "user", "add", "root", "--interactive=false")
    etcdctl(server, "auth", "enable")
    try:
        yield server
    finally:
        server.cleanup()


def test_apply_over_tls_with_client_certs_and_password(secure_etcd: EmbeddedEtcd,
                                                       tmp_path: Path) -> None:
    tls = secure_etcd.tls
    assert tls is not None
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    env = {"GITCONF_ETCD_ENDPOINTS": f"https://{secure_etcd.endpoint}",
           "GITCONF_ETCD_CACERT": tls.ca, "GITCONF_ETCD_CERT": tls.client_cert,
           "GITCONF_ETCD_KEY": tls.client_key, "GITCONF_ETCD_USER": "root",
           "GITCONF_ETCD_PASSWORD": PASSWORD, "GITCONF_PREFIX": "/secure"}
    res = cli("apply", "--repo", str(repo.path), env=env)
    assert res.exit_code == 0, res.stderr
    got = cli("get", "svc", "prod", "a", "-f", "json", env=env)
    assert got.json()["value"] == 1
    wrong = cli("diff", "--repo", str(repo.path), env={**env, "GITCONF_ETCD_PASSWORD": "nope"})
    assert wrong.exit_code == 2
    assert "authentication failed" in wrong.stderr
    assert PASSWORD not in wrong.stderr + wrong.stdout
    no_ca = cli("diff", "--repo", str(repo.path), env={**env, "GITCONF_ETCD_CACERT": ""})
    assert no_ca.exit_code == 2 and "GITCONF_ETCD_CACERT" in no_ca.stderr


def test_cluster_with_one_member_down(tmp_path: Path) -> None:
    members = start_cluster(3)
    try:
        endpoints = ",".join(m.endpoint for m in members)
        env = {"GITCONF_ETCD_ENDPOINTS": endpoints, "GITCONF_PREFIX": "/c"}
        repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
        assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
        members[0].stop(kill=True)
        repo.commit({"a/prod.yaml": "x: 2\n"})
        res = cli("apply", "--repo", str(repo.path), env=env)
        assert res.exit_code == 0, res.stderr
        store = EtcdStore(EtcdConfig.from_env(",".join(m.endpoint for m in members[1:])))
        try:
            kv = store.get(Keys("/c").data_key(UnitId("a", "prod"), "x"))
            assert kv is not None and b'"value":2' in kv.value
        finally:
            store.close()
    finally:
        for m in members:
            m.cleanup()
