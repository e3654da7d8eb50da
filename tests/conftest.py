"""Fixtures: one real etcd for the session (each test gets its own key prefix), real Git
repositories, and the example repository committed with a tag and an approval trailer."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitconf.embedded_etcd import EmbeddedEtcd
from gitconf.etcdstore import EtcdStore, connect
from gitconf.records import Keys
from tests.helpers import GitRepo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config-repo"


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EmbeddedEtcd]:
    server = EmbeddedEtcd().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(etcd_server: EmbeddedEtcd, prefix: str, tmp_path: Path) -> dict[str, str]:
    """What every CLI call of a test runs with: the session etcd, its own prefix, a cache."""
    return {"GITCONF_ETCD_ENDPOINTS": etcd_server.endpoint, "GITCONF_PREFIX": prefix,
            "GITCONF_CACHE_DIR": str(tmp_path / "cache"), "GITHUB_ACTOR": "ci-bot"}


@pytest.fixture
def store(etcd_server: EmbeddedEtcd) -> Iterator[EtcdStore]:
    s = connect(etcd_server.endpoint)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
def example_repo(tmp_path: Path) -> GitRepo:
    """The example repository as a real Git repo: one commit tagged v1.0.0, approved by Bob."""
    root = tmp_path / "config"
    shutil.copytree(EXAMPLE, root)
    repo = GitRepo(root)
    repo.commit(message="initial config\n\nApproved-by: Bob Reviewer <bob@example.com>",
                date="2025-01-15T10:30:00+00:00")
    repo.tag("v1.0.0")
    return repo


# -- secret-leak scan over the whole suite (tests/leakscan.py) --------------------------------
from tests.leakscan import leak_scan, leak_scan_session  # noqa: E402,F401  (autouse fixtures)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks_ok: the secret-leak scan skips this test")
