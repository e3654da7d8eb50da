"""An in-memory `Store`: etcd's data model (one revision counter, mod and create revisions per
key, compare-guarded transactions, prefix ranges, history, leases, watches) without a server, for
fast tests of planning and deploy decisions.

It interprets the compares and operations its own builders make and the encoded operations of
`store.wire_put`/`wire_delete` (the deployer's hot path), and refuses what etcd refuses with
etcd's text: more than 128 operations or compares, a request over 1.5 MiB, a key written twice
in one transaction. Old revisions are not kept: a range at a past revision is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from .errors import EtcdError
from .fastclass import dataclass
from .store import (
    KV,
    Compare,
    EtcdCompacted,
    KeyEvent,
    Op,
    PendingTxn,
    RangeResult,
    Replay,
    TxnResult,
    TxnTooLarge,
    WatchBatch,
    WatchId,
    WatchScope,
    prefix_end,
    wire_delete,
    wire_put,
)

MAX_TXN_OPS = 128
MAX_REQUEST_BYTES = 1_572_864


@dataclass(frozen=True)
class _Cmp:
    target: str  # "mod" or "create"
    key: bytes
    end: bytes | None  # a range: every key in it must pass
    less: bool  # "<" instead of "=="
    value: int


@dataclass(frozen=True)
class _Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class _Delete:
    key: bytes
    end: bytes | None = None


@dataclass(frozen=True)
class _Get:
    key: bytes
    end: bytes | None = None


def _fields(data: bytes) -> dict[int, bytes | int]:
    """The fields of a protobuf message of length-delimited and varint fields."""
    out: dict[int, bytes | int] = {}
    i = 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        if tag & 7 == 0:
            out[tag >> 3], i = _read_varint(data, i)
        else:
            n, i = _read_varint(data, i)
            out[tag >> 3], i = data[i:i + n], i + n
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def decode_wire_op(op: bytes) -> _Put | _Delete:
    """An encoded `RequestOp` (put or delete) back as an operation."""
    outer = _fields(op)
    if 2 in outer:
        f = _fields(cast(bytes, outer[2]))
        return _Put(cast(bytes, f.get(1, b"")), cast(bytes, f.get(2, b"")),
                    cast(int, f.get(3, 0)))
    f = _fields(cast(bytes, outer[3]))
    return _Delete(cast(bytes, f.get(1, b"")), cast("bytes | None", f.get(2)))


class _Data:
    """The keys, the revision counter and the history; callers hold the lock."""

    def __init__(self) -> None:
        self.kv: dict[bytes, KV] = {}
        self.lease_of: dict[bytes, int] = {}
        self.revision = 1  # etcd's first revision
        self.history: list[KeyEvent] = []
        self.compacted = 0

    def keys_in(self, key: bytes, end: bytes | None) -> list[bytes]:
        if end is None:
            return [key] if key in self.kv else []
        return sorted(k for k in self.kv if k >= key and (end == b"\0" or k < end))

    def holds(self, c: _Cmp) -> bool:
        keys = self.keys_in(c.key, c.end) if c.end is not None else [c.key]
        for k in keys:
            kv = self.kv.get(k)
            got = 0 if kv is None else kv.mod_revision if c.target == "mod" else kv.create_revision
            if not (got < c.value if c.less else got == c.value):
                return False
        return True

    def apply(self, ops: Sequence[Any]) -> tuple[list[Any], list[KeyEvent]]:
        written = [op.key for op in ops if isinstance(op, (_Put, _Delete))]
        if len(set(written)) != len(written):
            raise EtcdError("etcd: etcdserver: duplicate key given in txn request")
        rev = self.revision + 1
        responses: list[Any] = []
        events: list[KeyEvent] = []
        for op in ops:
            if isinstance(op, _Get):
                responses.append([self.kv[k] for k in self.keys_in(op.key, op.end)])
                continue
            responses.append([])
            if isinstance(op, _Put):
                old = self.kv.get(op.key)
                self.kv[op.key] = KV(op.key, op.value, rev, old.create_revision if old else rev)
                self.lease_of[op.key] = op.lease
                events.append(KeyEvent(op.key, rev, False, op.value))
            else:
                for k in self.keys_in(op.key, op.end):
                    del self.kv[k]
                    self.lease_of.pop(k, None)
                    events.append(KeyEvent(k, rev, True))
        if events:
            self.revision = rev
            self.history += events
        return responses, events


class MemStore:
    """A `store.Store` in memory. Watch callbacks run on the writing thread, after the write."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data = _Data()
        self._leases: dict[int, int] = {}
        self._watches: dict[int, tuple[bytes, Callable[[WatchBatch | Exception], None]]] = {}
        self._next_id = 1

    # -- builders ------------------------------------------------------------------------------
    @staticmethod
    def cmp_mod(key: bytes, mod_revision: int) -> Compare:
        return Compare(_Cmp("mod", key, None, False, mod_revision))

    @staticmethod
    def cmp_range_unchanged(prefix: bytes, revision: int) -> Compare:
        return Compare(_Cmp("mod", prefix, prefix_end(prefix), True, revision + 1))

    @staticmethod
    def cmp_created(key: bytes, create_revision: int) -> Compare:
        return Compare(_Cmp("create", key, None, False, create_revision))

    @staticmethod
    def op_put(key: bytes, value: bytes, lease: int = 0) -> Op:
        return Op(_Put(key, value, lease))

    @staticmethod
    def op_delete(key: bytes) -> Op:
        return Op(_Delete(key))

    @staticmethod
    def op_get(key: bytes) -> Op:
        return Op(_Get(key))

    @staticmethod
    def op_range_prefix(prefix: bytes) -> Op:
        return Op(_Get(prefix, prefix_end(prefix)))

    wire_put = staticmethod(wire_put)
    wire_delete = staticmethod(wire_delete)

    # -- reads ---------------------------------------------------------------------------------
    def revision(self, within: bytes | None = None) -> int:
        return self._data.revision

    def get(self, key: bytes) -> KV | None:
        return self._data.kv.get(key)

    def range(self, start: bytes, end: bytes | None = None, *, keys_only: bool = False,
              count_only: bool = False, min_mod_revision: int = 0, limit: int = 0,
              revision: int = 0, serializable: bool = False) -> RangeResult:
        with self._lock:
            data = self._data
            if revision and revision != data.revision:
                raise EtcdError(f"etcd: memstore keeps no revision but the current one "
                                f"({data.revision}), not {revision}")
            kvs = [data.kv[k] for k in data.keys_in(start, end)
                   if data.kv[k].mod_revision >= min_mod_revision]
            count = len(kvs)
            more = bool(limit) and count > limit
            kvs = [] if count_only else kvs[:limit] if limit else kvs
            if keys_only:
                kvs = [kv._replace(value=b"") for kv in kvs]
            return RangeResult(kvs, count, more, data.revision)

    def scan(self, prefix: bytes, *, keys_only: bool = False, min_mod_revision: int = 0,
             page: int = 20_000) -> tuple[list[KV], int]:
        res = self.range(prefix, prefix_end(prefix), keys_only=keys_only,
                         min_mod_revision=min_mod_revision)
        return res.kvs, res.revision

    def count(self, prefix: bytes, end: bytes | None = None) -> tuple[int, int]:
        res = self.range(prefix, end or prefix_end(prefix), count_only=True)
        return res.count, res.revision

    def changes_since(self, prefix: bytes, start_revision: int, until_revision: int,
                      timeout: float = 10.0, *, scope: WatchScope = "keyspace",
                      cuts: Sequence[bytes] = ()) -> Replay | None:
        with self._lock:
            if start_revision <= self._data.compacted:
                return None
            walked = [e for e in self._data.history
                      if start_revision <= e.mod_revision <= until_revision]
            return Replay([e for e in walked if e.key.startswith(prefix)], len(walked))

    def compact(self, revision: int) -> None:
        """Forget the history up to `revision` (etcd's compaction)."""
        with self._lock:
            self._data.compacted = revision
            self._data.history = [e for e in self._data.history if e.mod_revision > revision]

    # -- transactions and writes ---------------------------------------------------------------
    def txn(self, compares: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnResult:
        if max(len(compares), len(success), len(failure)) > MAX_TXN_OPS:
            raise TxnTooLarge("etcd refused the transaction: etcdserver: too many operations "
                              "in txn request")
        with self._lock:
            data = self._data
            ok = all(data.holds(cast(_Cmp, c)) for c in compares)
            responses, events = data.apply(success if ok else failure)
            result = TxnResult(ok, data.revision, responses)
        self._notify(events)
        return result

    def txn_wire(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> TxnResult:
        if sum(len(op) + 4 for op in ops) + 64 * len(compares) > MAX_REQUEST_BYTES:
            raise TxnTooLarge("etcd refused the transaction: etcdserver: request is too large")
        return self.txn(compares, [Op(decode_wire_op(op)) for op in ops])

    def txn_start(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> PendingTxn:
        try:
            return PendingTxn((self.txn_wire(compares, ops), None))
        except EtcdError as exc:
            return PendingTxn((None, exc))

    def txn_finish(self, started: PendingTxn) -> TxnResult:
        result, error = cast("tuple[TxnResult | None, EtcdError | None]", started)
        if error is not None:
            raise error
        assert result is not None
        return result

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        if lease and lease not in self._leases:
            raise EtcdError("etcd: etcdserver: requested lease not found")
        return self.txn([], [self.op_put(key, value, lease)]).revision

    def delete(self, key: bytes) -> int:
        with self._lock:
            existed = key in self._data.kv
            self.txn([], [self.op_delete(key)])
        return int(existed)

    # -- leases and watches --------------------------------------------------------------------
    def lease_grant(self, ttl: int) -> int:
        with self._lock:
            lease_id, self._next_id = self._next_id, self._next_id + 1
            self._leases[lease_id] = ttl
        return lease_id

    def lease_keepalive(self, lease_id: int) -> int:
        return self._leases.get(lease_id, 0)

    def lease_revoke(self, lease_id: int) -> None:
        """Also what a lease's expiry does: its keys are deleted in one revision."""
        with self._lock:
            if self._leases.pop(lease_id, None) is None:
                return
            keys = [k for k, lease in self._data.lease_of.items() if lease == lease_id]
            if keys:
                self.txn([], [self.op_delete(k) for k in keys])

    def watch_prefix(self, prefix: bytes, start_revision: int,
                     callback: Callable[[WatchBatch | Exception], None]) -> WatchId:
        with self._lock:
            past = self.changes_since(prefix, start_revision, self._data.revision)
            if past is None:
                callback(EtcdCompacted(f"etcd: required revision has been compacted (history "
                                       f"starts at {self._data.compacted})"))
                return WatchId(0)
            for rev in sorted({e.mod_revision for e in past}):
                callback(WatchBatch([e for e in past if e.mod_revision == rev], rev))
            watch_id, self._next_id = self._next_id, self._next_id + 1
            self._watches[watch_id] = (prefix, callback)
        return WatchId(watch_id)

    def cancel_watch(self, watch_id: WatchId) -> None:
        with self._lock:
            self._watches.pop(cast(int, watch_id), None)

    def _notify(self, events: list[KeyEvent]) -> None:
        if not events:
            return
        with self._lock:
            watches = list(self._watches.values())
        for prefix, callback in watches:
            mine = [e for e in events if e.key.startswith(prefix)]
            if mine:
                callback(WatchBatch(mine, mine[0].mod_revision))

    def close(self) -> None:
        with self._lock:
            self._watches.clear()


if TYPE_CHECKING:
    from .store import Store

    def _is_a_store(store: MemStore) -> Store:  # mypy checks MemStore against the protocol
        return store
