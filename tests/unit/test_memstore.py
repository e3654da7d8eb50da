"""The in-memory store behaves like etcd: one scenario of guarded transactions, encoded
operations, prefix ranges and history runs against both, and the transcripts must match."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitconf.errors import EtcdError
from gitconf.etcdstore import EtcdStore
from gitconf.memstore import MemStore, decode_wire_op
from gitconf.store import (
    KV,
    KeyEvent,
    Store,
    TxnTooLarge,
    WatchBatch,
    prefix_end,
    scan_pages,
    wire_delete,
    wire_put,
)


def scenario(store: Store, root: bytes) -> list[Any]:
    """Everything observable, with revisions counted from the scenario's start."""
    base = store.revision()

    def rel(rev: int) -> int:
        return rev - base if rev else 0

    def kvs(items: list[KV]) -> list[tuple[bytes, bytes, int, int]]:
        return [(kv.key[len(root):], kv.value, rel(kv.mod_revision), rel(kv.create_revision))
                for kv in items]

    a, b, leader = root + b"a", root + b"b", root + b"_leader"
    out: list[Any] = []
    rev_a = store.put(a, b"1")
    out.append(rel(store.put(b, b"1")))
    res = store.txn([store.cmp_mod(a, rev_a)], [store.op_put(a, b"2"), store.op_delete(b)])
    out.append((res.succeeded, rel(res.revision), res.ranges()))
    stale = store.txn([store.cmp_mod(a, rev_a)], [store.op_put(a, b"3")], [store.op_get(a)])
    out.append((stale.succeeded, rel(stale.revision), [kvs(r) for r in stale.ranges()]))
    out.append([store.txn([store.cmp_range_unchanged(root, r)], []).succeeded
                for r in (rev_a, res.revision)])
    out.append([store.txn([store.cmp_created(leader, 0)], [store.op_put(leader, b"x")]).succeeded
                for _ in range(2)])
    wired = store.txn_wire([store.cmp_mod(root + b"new", 0)],
                           [wire_put(root + b"new", b"n"), wire_delete(leader)])
    out.append((wired.succeeded, rel(wired.revision)))
    started = store.txn_start([store.cmp_mod(root + b"new", wired.revision)],
                              [wire_put(root + b"c", b"c", 0)])
    out.append(rel(store.txn_finish(started).revision))
    reads = store.txn([], [store.op_range_prefix(root), store.op_get(a), store.op_get(b)])
    out.append([kvs(r) for r in reads.ranges()])
    out.append(kvs(store.range(root, root[:-1] + b"0", limit=2).kvs))
    out.append(store.range(root, root[:-1] + b"0", count_only=True).count)
    out.append(kvs(store.range(root, root[:-1] + b"0", keys_only=True,
                               min_mod_revision=wired.revision).kvs))
    out.append([(e.key[len(root):], rel(e.mod_revision), e.deleted, e.value)
                for e in store.changes_since(root, base + 1, store.revision()) or []])
    out.append(store.delete(a))
    out.append(store.delete(a))
    for ops in ([wire_put(root + b"%d" % i, b"") for i in range(129)],
                [wire_put(root + b"big", b"x" * 2_000_000)]):
        with pytest.raises(TxnTooLarge) as info:
            store.txn_wire([], ops)
        out.append(str(info.value))
    with pytest.raises(EtcdError, match="duplicate key given in txn request"):
        store.txn_wire([], [wire_put(a, b"1"), wire_delete(a)])
    out.append(store.revision() - base)
    return out


def test_memstore_matches_etcd(store: EtcdStore, prefix: str) -> None:
    assert scenario(MemStore(), b"/m/") == scenario(store, f"{prefix}/m/".encode())


def test_memstore_scenario_values() -> None:
    got = scenario(MemStore(), b"/m/")
    assert got[1] == (True, 3, [[], []])  # one revision for the whole transaction
    assert got[2] == (False, 3, [[(b"a", b"2", 3, 1)]])  # the failure branch ran
    assert got[3] == [False, True]


def test_lease_revoke_deletes_its_keys_and_watch_sees_it() -> None:
    mem = MemStore()
    seen: list[WatchBatch | Exception] = []
    lease = mem.lease_grant(5)
    mem.put(b"/l/me", b"1", lease=lease)
    watch = mem.watch_prefix(b"/l/", 1, seen.append)  # replays the put
    assert mem.lease_keepalive(lease) == 5
    mem.lease_revoke(lease)
    assert mem.get(b"/l/me") is None and mem.lease_keepalive(lease) == 0
    mem.cancel_watch(watch)
    mem.put(b"/l/after", b"1")
    assert seen == [WatchBatch([KeyEvent(b"/l/me", 2, False, b"1")], 2),
                    WatchBatch([KeyEvent(b"/l/me", 3, True)], 3)]


def test_compacted_history_is_none() -> None:
    mem = MemStore()
    first = mem.put(b"/h/a", b"1")
    mem.put(b"/h/a", b"2")
    mem.compact(first)
    assert mem.changes_since(b"/h/", first, mem.revision()) is None
    assert mem.changes_since(b"/h/", first + 1, mem.revision()) == [
        KeyEvent(b"/h/a", first + 1, False, b"2")]


def test_decode_wire_op() -> None:
    put = decode_wire_op(wire_put(b"k" * 300, b"v" * 200, 7))
    assert (put.key, getattr(put, "value", None), getattr(put, "lease", None)) == (
        b"k" * 300, b"v" * 200, 7)
    assert decode_wire_op(wire_delete(b"gone")).key == b"gone"


KEY_BYTES = st.binary(min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(suffixes=st.sets(KEY_BYTES, max_size=60), page=st.integers(1, 7),
       prefix=st.sampled_from([b"/p/", b"/p\xff", b"\xff\xff", b"a"]))
def test_scan_pages_reads_every_key_once_in_order(suffixes: set[bytes], page: int,
                                                  prefix: bytes) -> None:
    """Windowed paging (each request bounded in key space, since etcd counts a limited
    range to its end) gives exactly the keys of the range, in order, each once, whatever
    the keys' bytes (0x00 and 0xff included), the page size and the prefix; keys just
    outside the prefix stay out."""
    store = MemStore()
    inside = sorted(prefix + s for s in suffixes)
    for key in inside + [prefix[:-1], prefix_end(prefix), prefix_end(prefix) + b"\0"]:
        store.put(key, b"v")
    pages = list(scan_pages(store, prefix, page=page))
    got = [kv.key for kvs, _ in pages for kv in kvs]
    assert got == inside
    assert all(len(kvs) <= page for kvs, _ in pages)
    assert len({rev for _, rev in pages}) == 1


def test_scan_pages_costs_about_a_page_per_request_on_a_dense_prefix() -> None:
    """The windows keep what etcd counts linear: reading 20,000 keys in pages of 500 counts a
    few times the keys, not the ~400,000 of paging each request to the prefix's end."""
    store = MemStore()
    for i in range(20_000):
        store.put(f"/c/svc-{i // 100:04d}/prod/k{i % 100:03d}".encode(), b"v")
    spans: list[int] = []
    real = store.range

    def counting(start: bytes, end: bytes | None = None, **kw: Any) -> Any:
        res = real(start, end, **kw)
        spans.append(res.count)
        return res

    store.range = counting  # type: ignore[method-assign]
    got = sum(len(kvs) for kvs, _ in scan_pages(store, b"/c/", page=500))
    assert got == 20_000
    # paging from the last key to the prefix's end would count ~400,000 keys in all
    assert sum(spans[1:]) <= 4 * 20_000
