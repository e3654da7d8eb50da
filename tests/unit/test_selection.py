"""Which units a pass looks at when a watch on the prefix (the daemon's) has seen the writes
since the mark: those writes, without asking etcd's history, which may be compacted away or
slow to replay in a shared etcd. Real git repositories, the in-memory store."""

from __future__ import annotations

from pathlib import Path

from gitconf.gitsource import GitSource
from gitconf.memstore import MemStore
from gitconf.model import UnitId
from gitconf.reconcile import Reconciler, Request, Result
from gitconf.records import Keys, LastApplied
from gitconf.store import KeyEvent, Witness
from tests.helpers import GitRepo, make_repo

KEYS = Keys("/t")
SVC, OTHER, THIRD = UnitId("svc", "prod"), UnitId("other", "prod"), UnitId("third", "prod")


def test_a_witness_answers_only_for_revisions_it_saw() -> None:
    w = Witness(10, 20, (KeyEvent(b"a", 12, False), KeyEvent(b"b", 20, True),
                         KeyEvent(b"c", 21, False)))
    assert [e.key for e in w.between(10, 20) or []] == [b"a", b"b"]
    assert w.between(13, 19) == []
    assert w.between(9, 20) is None  # the watch began after revision 9
    assert w.between(10, 21) is None  # it has not got that far


def _scenario(tmp_path: Path) -> tuple[GitRepo, MemStore, int, int]:
    """Three units applied; then, in a shared etcd, another application's writes, someone
    deleting a key of `other`, a commit changing `svc`, and etcd's history compacted. Returns
    the repository, the store, the first revision after the apply and the delete's."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "other/prod.yaml": "b: 1\n",
                                      "third/prod.yaml": "c: 1\n"})
    store = MemStore()
    with GitSource.open(str(repo.path)) as source:
        assert Reconciler(source, store, KEYS).run(Request()).ok
    after = store.revision() + 1
    for i in range(3):
        store.put(f"/elsewhere/{i}".encode(), b"x")
    deleted = store.delete(KEYS.data_key(OTHER, "b")) and store.revision()
    store.put(b"/elsewhere/late", b"x")
    repo.commit({"svc/prod.yaml": "a: 2\n"})
    store.compact(store.revision())
    return repo, store, after, deleted


def _pass(repo: GitRepo, store: MemStore, witness: Witness | None) -> Result:
    with GitSource.open(str(repo.path)) as source:
        return Reconciler(source, store, KEYS).run(
            Request(drift_policy="revert", witness=witness))


def test_a_pass_takes_the_writes_since_its_mark_from_the_watch(tmp_path: Path) -> None:
    repo, store, after, deleted = _scenario(tmp_path)
    now = store.revision()
    seen = Witness(after, now, (KeyEvent(KEYS.data_key(OTHER, "b"), deleted, True),))
    result = _pass(repo, store, seen)
    assert result.ok
    assert result.units_examined == 2  # the commit's unit and the one written to, not all
    assert [d.unit for d in result.deploys if d.unit == SVC] == [SVC]
    assert result.reverted == [OTHER]
    kv = store.get(KEYS.last_applied)
    assert kv is not None and LastApplied.from_json(kv.value).seen >= now


def test_a_watch_that_has_not_seen_every_revision_yet_sets_the_mark_no_further(
        tmp_path: Path) -> None:
    """Revisions the watch has not delivered yet are left to the next pass: the mark stays
    before them, so the delete is still found once the watch reports it."""
    repo, store, after, deleted = _scenario(tmp_path)
    early = _pass(repo, store, Witness(after, deleted - 1))
    assert early.ok and early.units_examined == 1 and early.reverted == []
    kv = store.get(KEYS.last_applied)
    assert kv is not None and LastApplied.from_json(kv.value).seen == deleted - 1
    later = _pass(repo, store, Witness(after, store.revision(),
                                       (KeyEvent(KEYS.data_key(OTHER, "b"), deleted, True),)))
    assert later.reverted == [OTHER]


def test_without_a_witness_from_the_mark_on_the_compacted_history_means_every_unit(
        tmp_path: Path) -> None:
    repo, store, _, deleted = _scenario(tmp_path)
    late = Witness(deleted + 1, store.revision())  # began after the delete: cannot vouch
    result = _pass(repo, store, late)
    assert result.ok and result.units_examined == 3
    assert result.reverted == [OTHER]


def test_a_watch_that_has_seen_nothing_past_the_mark_vouches_for_nothing_past_it(
        tmp_path: Path) -> None:
    repo, store, after, _ = _scenario(tmp_path)
    result = _pass(repo, store, Witness(after, after - 1))  # started, nothing delivered yet
    assert result.ok and result.units_examined == 1 and result.reverted == []
    kv = store.get(KEYS.last_applied)
    assert kv is not None and LastApplied.from_json(kv.value).seen == after - 1
