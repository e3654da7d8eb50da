"""The daemon's etcd watch as a witness for its passes: what it vouches for, what it forgets,
and where it stops vouching (a flood, a gap). The in-memory store's watch delivers as etcd's
does: in revision order, a transaction's events together."""

from __future__ import annotations

import pytest

from gitconf.daemon import triggers
from gitconf.daemon.triggers import EtcdWatch, Wakeup
from gitconf.memstore import MemStore
from gitconf.model import UnitId
from gitconf.records import Keys

KEYS = Keys("/t")
UNIT = UnitId("svc", "prod")


def _watching() -> tuple[MemStore, EtcdWatch]:
    store = MemStore()
    store.put(b"/elsewhere/a", b"x")
    watch = EtcdWatch(store, KEYS, Wakeup(), lambda _value: None)
    watch.start()
    return store, watch


def test_the_witness_holds_others_writes_under_the_prefix_from_the_watch_start() -> None:
    store, watch = _watching()
    start = store.revision() + 1
    assert watch.witness().since == start and watch.witness().through == start - 1
    a = store.put(KEYS.data_key(UNIT, "a"), b"1")
    store.put(b"/elsewhere/b", b"x")
    store.put(KEYS.last_applied, b"{}")  # gitconf's own record: never a unit's change
    watch.wakeup.own.add(store.revision() + 1)
    store.put(KEYS.data_key(UNIT, "own"), b"1")  # a revision of gitconf's own writes
    gone = store.delete(KEYS.data_key(UNIT, "a")) and store.revision()
    seen = watch.witness()
    assert seen.since == start and seen.through == store.revision()
    assert [(e.key, e.mod_revision, e.deleted) for e in seen.events] == [
        (KEYS.data_key(UNIT, "a"), a, False), (KEYS.data_key(UNIT, "a"), gone, True)]


def test_forgetting_moves_the_start_and_drops_what_no_pass_will_ask_for() -> None:
    store, watch = _watching()
    first = store.put(KEYS.data_key(UNIT, "a"), b"1")
    second = store.put(KEYS.data_key(UNIT, "b"), b"1")
    third = store.put(KEYS.data_key(UNIT, "c"), b"1")
    watch.forget(first, own=[third])
    seen = watch.witness()
    assert seen.since == first + 1
    assert [e.mod_revision for e in seen.events] == [second]
    assert seen.between(first, third) is None and seen.between(second, third) is not None


def test_a_flood_of_writes_makes_the_watch_stop_vouching_for_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triggers, "WITNESS_LIMIT", 3)
    store, watch = _watching()
    start = store.revision() + 1
    revs = [store.put(KEYS.data_key(UNIT, f"k{i}"), b"1") for i in range(5)]
    seen = watch.witness()
    assert seen.since == revs[3] + 1 and len(seen.events) <= 3  # the fourth overflowed
    assert seen.between(start, seen.through) is None  # etcd's history answers for those
    assert [e.mod_revision for e in seen.events] == [revs[4]]


def test_a_watch_that_starts_over_after_a_gap_vouches_only_from_there() -> None:
    store, watch = _watching()
    store.put(KEYS.data_key(UNIT, "a"), b"1")
    watch.stop()
    store.put(KEYS.data_key(UNIT, "b"), b"1")
    store.compact(store.revision())
    watch.watched_from = 0  # what a compaction error makes the watch do
    watch.start()
    seen = watch.witness()
    assert seen.since == store.revision() + 1 and seen.events == ()
