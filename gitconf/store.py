"""What gitconf needs from etcd, as an interface: the `Store` protocol and the values it speaks.

The core (livestate, deploy, reconcile, the daemon) talks to a `Store`; `etcdstore.EtcdStore` is
the implementation over etcd's gRPC API and the only module that imports `pyetcd` or `grpc`.
Compares and operations are opaque here: a caller builds them with the store's own builders
(`cmp_mod`, `op_put`, `wire_put`, ...) and passes them back to that store's transactions.
Nothing in this module imports a client library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import field
from typing import Any, Literal, NamedTuple, NewType, Protocol

from .errors import EtcdError
from .fastclass import dataclass

# Opaque values: made by a store's builders, only ever handed back to the same store.
Compare = NewType("Compare", object)  # a guard of a transaction (`cmp_mod`, `cmp_created`, ...)
Op = NewType("Op", object)  # an operation of `txn` (`op_put`, `op_get`, `op_range_prefix`, ...)
PendingTxn = NewType("PendingTxn", object)  # a transaction in flight (`txn_start`)
WatchId = NewType("WatchId", object)  # a watch to cancel (`watch_prefix`)
# Operations of the encoded hot path (`wire_put`, `wire_delete`) are plain `bytes`: the deployer
# adds up their lengths to stay under the server's request size limit.

WatchScope = Literal["keyspace", "prefix", "auto"]


# -- what a store raises besides `EtcdError` and `EtcdUnavailable` (exit status 2, like them) --


class TxnTooLarge(EtcdError):
    """The server refused a transaction for its size; the caller splits it and tries again."""


class EtcdPermissionDenied(EtcdError):
    """The user's role does not grant the key or range."""


class EtcdAuthFailed(EtcdError):
    """Wrong or missing user/password, or a token etcd no longer accepts."""


class EtcdNoSpace(EtcdError):
    """etcd raised its NOSPACE alarm: only reads and deletes work until an operator acts."""


class EtcdCompacted(EtcdError):
    """The revision asked for was compacted away."""


class KV(NamedTuple):
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int


class KeyEvent(NamedTuple):
    """A put (or delete) of one key, at the revision of the transaction that made it."""

    key: bytes
    mod_revision: int
    deleted: bool
    value: bytes = b""  # what was put (b"" for a delete)


class Replay(list[KeyEvent]):
    """The events `Store.changes_since` found under the prefix, and how many it had to look
    at to find them (`examined`: a keyspace-wide replay sees other applications' writes too):
    what a replay cost, which decides when a no-op pass moves its low-water mark."""

    def __init__(self, events: list[KeyEvent] | None = None, examined: int = 0):
        super().__init__(events or [])
        self.examined = max(examined, len(self))


@dataclass(frozen=True)
class Witness:
    """What a watch on the prefix has delivered: every write under it with a revision in
    [since, through], as events (gitconf's own among them, which a pass skips as it skips
    them in a replay). A daemon watches its prefix anyway; handing that to its passes spares
    them asking etcd's history what changed since their mark: a replay waits for etcd's
    100 ms watch sync, even after one write elsewhere in a shared etcd, and a walk reads the
    whole prefix. etcd delivers a watch's events in revision order, whole revisions at a
    time, so once an event of revision r has arrived, every earlier one under the prefix has
    too."""

    since: int  # the first revision the watch saw without a gap
    through: int  # every write under the prefix up to here has been delivered
    events: tuple[KeyEvent, ...] = ()

    def between(self, first: int, last: int) -> Replay | None:
        """The events with a revision in [first, last]; None when the watch may have missed
        some of them (it began after `first`, or has not got as far as `last`)."""
        if first < self.since or last > self.through:
            return None
        return Replay([e for e in self.events if first <= e.mod_revision <= last])


Change = KeyEvent  # its former name; `model.Change` is a planned change, not this


@dataclass
class WatchBatch:
    """What a watch callback receives: the events of one response (one etcd transaction's
    events arrive together), and the revision the server was at."""

    events: list[KeyEvent]
    revision: int


@dataclass
class RangeResult:
    kvs: list[KV]
    count: int
    more: bool
    revision: int


@dataclass
class TxnResult:
    """A transaction's outcome. `responses` are the store's own objects, one per operation of
    the branch that ran: read them with `ranges()`, never directly."""

    succeeded: bool
    revision: int
    responses: list[Any] = field(default_factory=list)

    def ranges(self) -> list[list[KV]]:
        """Each operation's key-values, in order: what an `op_get`/`op_range_prefix` found
        (an empty list for a put or a delete)."""
        return [_response_kvs(r) for r in self.responses]


def _response_kvs(resp: Any) -> list[KV]:
    if isinstance(resp, list):  # a store that answers with KV lists already (memstore)
        return resp
    return [KV(kv.key, kv.value, kv.mod_revision, kv.create_revision)
            for kv in resp.response_range.kvs]


def prefix_end(prefix: bytes) -> bytes:
    """The end of the range of keys starting with `prefix` (etcd's `range_end` for a prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key: the prefix was empty or all 0xff


class Ranges(Protocol):
    """What paging needs of a store: `Store.range` (a store's own `scan` pages with it too)."""

    def range(self, start: bytes, end: bytes | None = None, *, keys_only: bool = False,
              count_only: bool = False, min_mod_revision: int = 0, limit: int = 0,
              revision: int = 0, serializable: bool = False) -> RangeResult: ...


def scan_pages(store: Ranges, prefix: bytes, page: int = 5_000, *, end: bytes | None = None,
               keys_only: bool = False, min_mod_revision: int = 0,
               ) -> Iterator[tuple[list[KV], int]]:
    """Every key under `prefix` (or in [`prefix`, `end`)), a page at a time, all at the
    revision of the first page (one consistent snapshot), each with that revision; the first
    page comes even when empty, so the revision is always known. A caller that folds the
    pages as they come holds one page of raw values, not the whole prefix.

    etcd counts every key from a range's start to its end to answer a limited range (its
    `count`), so paging a wide range costs the square of its size: a page at the start of a
    1M-key prefix takes 260 ms, one near its end 6 ms. After the first page, each request
    asks for a window of the key space sized from what the previous one held (wider where
    keys are sparse, narrower where dense), so each costs about a page."""
    end = prefix_end(prefix) if end is None else end
    res = store.range(prefix, end, limit=page, keys_only=keys_only,
                      min_mod_revision=min_mod_revision)
    revision = res.revision
    yield res.kvs, revision
    if not res.more or not res.kvs:
        return
    window = _Window(res.kvs[0].key, res.kvs[-1].key)
    start = res.kvs[-1].key + b"\0"
    while True:
        # etcd's end b"\0" is "every key from start on": no window is narrower than that
        stop = end if end == b"\0" else window.after(start, end)
        res = store.range(start, stop, limit=page, revision=revision, keys_only=keys_only,
                          min_mod_revision=min_mod_revision)
        if res.kvs:
            yield res.kvs, revision
        if res.more and res.kvs:
            window.fit(start, res.kvs[-1].key)  # the span that held a page
            start = res.kvs[-1].key + b"\0"
        elif stop == end:
            return
        else:
            start = stop
            if 2 * len(res.kvs) < page:
                window.widen()


class _Window:
    """A width in key space, keys read as fixed-width big-endian numbers: first the span of
    the first page's keys; after a window that held more than a page, the span of the page it
    gave; doubled after one that held less than half of one."""

    def __init__(self, first: bytes, last: bytes):
        self.digits = min(64, max(len(first), len(last)) + 2)
        self.width = max(1, self._number(last) - self._number(first))

    def _number(self, key: bytes) -> int:
        return int.from_bytes(key[:self.digits].ljust(self.digits, b"\0"), "big")

    def after(self, start: bytes, end: bytes) -> bytes:
        """The end of the window from `start`: beyond `start`, and `end` at the furthest."""
        value = self._number(start) + self.width
        if value >= 256 ** self.digits:
            return end
        stop = value.to_bytes(self.digits, "big")
        if stop <= start:  # `start` is longer than the digits kept: past all its extensions
            stop = prefix_end(start[:self.digits])
        return end if stop <= start else min(stop, end)

    def fit(self, start: bytes, last: bytes) -> None:
        self.width = max(1, self._number(last) - self._number(start))

    def widen(self) -> None:
        self.width *= 2


# -- encoded operations: etcd's `RequestOp` protobuf, written by hand -------------------------
# The deployer's hot path: ~100,000 puts are encoded once each, straight to bytes, with no message
# object per put. Every store takes operations in this form (`Store.txn_start`, `txn_wire`).


_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))


def varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:  # keys, values and operations up to 16 KiB: two bytes, no loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def wire_put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    """`RequestOp{request_put: PutRequest{key, value, lease}}` as bytes (one join: a deploy
    encodes one per key)."""
    klen, vlen = varint(len(key)), varint(len(value))
    tail = b"\x18" + varint(lease) if lease else b""
    size = 2 + len(klen) + len(key) + len(vlen) + len(value) + len(tail)
    return b"".join((b"\x12", varint(size), b"\x0a", klen, key, b"\x12", vlen, value, tail))


def wire_delete(key: bytes) -> bytes:
    """`RequestOp{request_delete_range: DeleteRangeRequest{key}}` as bytes."""
    body = b"\x0a" + varint(len(key)) + key
    return b"\x1a" + varint(len(body)) + body


class Store(Protocol):
    """A connection to the key-value store. Errors are `gitconf.errors.EtcdError` subclasses
    carrying the server's text; see `etcdstore.map_etcd_errors` for the table."""

    # -- reads ---------------------------------------------------------------------------------
    def revision(self, within: bytes | None = None) -> int:
        """The store's current revision; `within` reads it from a key under that prefix (for
        users whose role grants only the prefix)."""
        ...

    def get(self, key: bytes) -> KV | None: ...

    def range(self, start: bytes, end: bytes | None = None, *, keys_only: bool = False,
              count_only: bool = False, min_mod_revision: int = 0, limit: int = 0,
              revision: int = 0, serializable: bool = False) -> RangeResult: ...

    def scan(self, prefix: bytes, *, keys_only: bool = False, min_mod_revision: int = 0,
             page: int = 20_000) -> tuple[list[KV], int]:
        """Every key under `prefix` at one revision, and that revision."""
        ...

    def count(self, prefix: bytes, end: bytes | None = None) -> tuple[int, int]: ...

    def changes_since(self, prefix: bytes, start_revision: int, until_revision: int,
                      timeout: float = 10.0, *, scope: WatchScope = "keyspace",
                      cuts: Sequence[bytes] = ()) -> Replay | None:
        """Every put and delete under `prefix` in [start, until]; None when unknown. `cuts`:
        keys inside the prefix where reading it may be split into parallel parts."""
        ...

    # -- transactions and writes ---------------------------------------------------------------
    def txn(self, compares: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnResult: ...

    def txn_start(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> PendingTxn: ...

    def txn_finish(self, started: PendingTxn) -> TxnResult: ...

    def txn_wire(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> TxnResult: ...

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int: ...

    def delete(self, key: bytes) -> int: ...

    # -- builders ------------------------------------------------------------------------------
    def cmp_mod(self, key: bytes, mod_revision: int) -> Compare:
        """`mod_revision(key) == rev`; 0: the key does not exist."""
        ...

    def cmp_range_unchanged(self, prefix: bytes, revision: int) -> Compare:
        """No key under `prefix` was created or modified after `revision`."""
        ...

    def cmp_created(self, key: bytes, create_revision: int) -> Compare:
        """`create_revision(key) == rev`; 0: the key does not exist (leader election)."""
        ...

    def op_put(self, key: bytes, value: bytes, lease: int = 0) -> Op: ...

    def op_delete(self, key: bytes) -> Op: ...

    def op_get(self, key: bytes) -> Op: ...

    def op_range_prefix(self, prefix: bytes) -> Op: ...

    def wire_put(self, key: bytes, value: bytes, lease: int = 0) -> bytes: ...

    def wire_delete(self, key: bytes) -> bytes: ...

    # -- leases and watches --------------------------------------------------------------------
    def lease_grant(self, ttl: int) -> int: ...

    def lease_keepalive(self, lease_id: int) -> int:
        """Refresh once; the remaining TTL (0: the lease is gone)."""
        ...

    def lease_revoke(self, lease_id: int) -> None: ...

    def watch_prefix(self, prefix: bytes, start_revision: int,
                     callback: Callable[[WatchBatch | Exception], None]) -> WatchId:
        """Call `callback` with each `WatchBatch` under `prefix` from `start_revision`; an
        error (an `EtcdError`) ends the watch and is passed to the callback."""
        ...

    def cancel_watch(self, watch_id: WatchId) -> None: ...

    def close(self) -> None: ...
