"""What the daemon's one-key cycle asks of etcd and of git, against a real etcd and real
repositories: every read before the deploy's write (etcd answers a write before its log is on
disk, and the next request waits for that), the `last-applied` write left in flight until the
next pass, one `cat-file` process kept for every cycle and stopped with the daemon, and the
check that ends overrides whose pull request has ended, which needs no other work to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from gitconf.daemon.metrics import Metrics
from gitconf.daemon.overrides import OverrideUpkeep
from gitconf.daemon.triggers import EtcdWatch, Wakeup
from gitconf.etcdstore import EtcdStore
from gitconf.gitsource import GitSource
from gitconf.model import UnitId
from gitconf.reconcile import Reconciler, Request
from gitconf.records import Keys, LastApplied, OverrideKey, OverrideRecord, PullRequestRef
from gitconf.store import Store
from tests.daemons import DaemonProc, wait_until
from tests.fakegithub import FakeGitHub
from tests.helpers import GitRepo, make_repo, process_running

SEARCH = UnitId("search", "prod")
CHECKOUT = UnitId("checkout", "prod")
REQUESTS = ("range", "get", "revision", "scan", "count", "txn", "txn_start", "txn_finish",
            "txn_wire", "changes_since", "put", "delete")


class Noting:
    """A real store that notes the name of each request a pass sends (answers unchanged)."""

    def __init__(self, store: EtcdStore):
        self.store = store
        self.sent: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name not in REQUESTS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.sent.append(name)
            return attr(*args, **kwargs)

        return call


def test_a_one_key_pass_reads_everything_before_it_writes(example_repo: GitRepo,
                                                          store: EtcdStore, keys: Keys) -> None:
    """A daemon pass after a one-key commit: one read of `last-applied` (its revision is the
    pass's low-water mark), one transaction for the unit and its service's published schema,
    the deploy, and the `last-applied` write started but not waited for; the next pass waits
    for it before it reads anything, so it never reads an older record."""
    noting = Noting(store)
    with GitSource.open(str(example_repo.path)) as source:
        source.keep_reading()
        rec = Reconciler(source, cast(Store, noting), keys)
        rec.defer_previous = True
        first = rec.run(Request(ref=example_repo.head()))
        assert first.ok and first.deploys
        (example_repo.path / "search" / "prod.yaml").write_text(
            (example_repo.path / "search" / "prod.yaml").read_text().replace(
                "shards: 6", "shards: 7"))
        head = example_repo.commit()
        noting.sent.clear()
        result = rec.run(Request(ref=head))
        assert [d.unit for d in result.deploys] == [SEARCH]
        assert result.deploys[0].changed == ["index.products.shards"]
        assert noting.sent == ["txn_finish",  # the previous pass's last-applied, settled
                               "range",  # last-applied, and the revision with it
                               "txn",  # the unit and the published schema of `search`
                               "txn_start", "txn_finish",  # the deploy
                               "txn_start"]  # last-applied: in flight
        assert rec.settle() > 0
        kv = store.get(keys.last_applied)
        assert kv is not None and LastApplied.from_json(kv.value).commit == head
        noting.sent.clear()
        again = rec.run(Request(ref=head))
        assert not again.deploys and noting.sent == ["range"]  # nothing changed: one read
        value = store.get(keys.data_key(SEARCH, "index.products.shards"))
        assert value is not None and json.loads(value.value)["value"] == 7


def test_a_daemon_pass_takes_others_writes_from_its_watch(example_repo: GitRepo,
                                                          store: EtcdStore, keys: Keys) -> None:
    """In a shared etcd a pass finds revisions of others' since its mark. It asks the daemon's
    watch what they were, not etcd's history (a replay waits for etcd's 100 ms watch sync
    after a single write elsewhere): a key deleted under the prefix amid other applications'
    writes is found and put back, and no replay is sent."""
    noting = Noting(store)
    watch = EtcdWatch(store, keys, Wakeup(), lambda _value: None)
    elsewhere = f"/elsewhere{keys.root}/".encode()
    with GitSource.open(str(example_repo.path)) as source:
        rec = Reconciler(source, cast(Store, noting), keys)
        assert rec.run(Request(ref=example_repo.head())).ok
        watch.start()
        try:
            store.put(elsewhere + b"a", b"x")
            lost = store.scan(keys.unit_prefix(CHECKOUT))[0][0].key
            assert store.delete(lost) == 1
            deleted_at = store.revision()
            store.put(elsewhere + b"b", b"x")
            head = example_repo.commit({"search/prod.yaml": (
                example_repo.path / "search" / "prod.yaml").read_text().replace(
                    "shards: 6", "shards: 7")})
            wait_until(lambda: watch.witness().through >= deleted_at)
            noting.sent.clear()
            result = rec.run(Request(ref=head, drift_policy="revert", witness=watch.witness()))
        finally:
            watch.stop()
    assert "changes_since" not in noting.sent
    assert result.ok and result.units_examined == 2
    assert sorted(d.unit for d in result.deploys) == [CHECKOUT, SEARCH]
    assert result.reverted == [CHECKOUT]
    assert store.get(lost) is not None


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry)] = cmdline
    return out


def test_the_daemon_keeps_one_cat_file_and_stops_it_with_itself(tmp_path: Path, env: dict,
                                                                 store: EtcdStore,
                                                                 keys: Keys) -> None:
    """Every cycle reads its files through the same `git cat-file --batch`, which is gone
    once the daemon has stopped (SIGTERM)."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    unit = UnitId("svc", "prod")

    def value() -> Any:
        kv = store.get(keys.data_key(unit, "a"))
        return None if kv is None else json.loads(kv.value)["value"]

    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    try:
        wait_until(lambda: value() == 1)
        assert d.proc is not None

        def kept() -> set[int]:
            assert d.proc is not None
            return {pid for pid, cmd in _children(d.proc.pid).items() if "cat-file" in cmd}

        wait_until(lambda: len(kept()) == 1)
        reader = kept()
        for n in (2, 3):
            repo.commit({"svc/prod.yaml": f"a: {n}\n"})
            wait_until(lambda n=n: value() == n)  # type: ignore[misc]
        assert kept() == reader
    finally:
        assert d.stop() == 0
    wait_until(lambda: not any(process_running(pid) for pid in reader))


def test_a_killed_daemon_leaves_no_cat_file_behind(tmp_path: Path, env: dict,
                                                   store: EtcdStore, keys: Keys) -> None:
    """Killed with SIGKILL, the daemon cannot stop its reader: the reader ends by itself when
    its input closes with the daemon."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "10m").start()
    assert d.proc is not None
    pid = d.proc.pid
    try:
        wait_until(lambda: store.get(keys.data_key(UnitId("svc", "prod"), "a")) is not None)
        wait_until(lambda: any("cat-file" in c for c in _children(pid).values()))
        reader = {p for p, c in _children(pid).items() if "cat-file" in c}
    finally:
        os.kill(pid, signal.SIGKILL)
        try:
            d.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    wait_until(lambda: not any(process_running(p) for p in reader))


def test_an_ended_pull_request_makes_its_unit_due(tmp_path: Path, store: EtcdStore, keys: Keys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The upkeep's check of open overrides (every minute, or at once after a `pull_request`
    webhook) finds the overrides whose pull request was merged or closed, so that an idle
    cycle still ends them; an open one, or one without a pull request, is not due."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 1\n",
                                      "other/prod.yaml": "a: 1\n",
                                      ".gitconf.yaml": "github: acme/config\n"})
    with FakeGitHub(token="t0k-due", repo="acme/config") as gh:
        monkeypatch.setenv("GITHUB_TOKEN", gh.token)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        numbers = {}
        for unit in (UnitId("svc", "prod"), UnitId("svc", "dev"), UnitId("other", "prod")):
            number = gh.open_pull(f"gitconf/override/{unit.service}/{unit.environment}")
            numbers[unit] = number
            record = OverrideRecord(f"ovr-{number}", unit.service, unit.environment, "drift",
                                    "open", (OverrideKey("a", 1, 2),), "etcd", "hotfix",
                                    "2026-01-01T00:00:00Z",
                                    pull_request=PullRequestRef("b", number))
            store.put(keys.override(unit), record.to_json())
        gh.close(numbers[UnitId("svc", "prod")])
        gh.merge(numbers[UnitId("svc", "dev")])
        with GitSource.open(str(repo.path)) as source:
            upkeep = OverrideUpkeep(source, store, keys, "main", Metrics())
            assert upkeep.due(repo.head()) == {UnitId("svc", "prod"), UnitId("svc", "dev")}
