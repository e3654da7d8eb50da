"""Executing a plan: each unit's changes as guarded etcd transactions, with its deploy record.

Guarding (SPEC §4): every transaction compares the `mod_revision` of each key it changes or
deletes, and of the unit's record, with what the plan read; keys it adds are covered by one
compare over the unit's range (nothing in it created or modified since the plan's read). A
concurrent writer makes it fail, and the unit is re-planned from fresh state instead of being
overwritten.

Size: a unit that fits one transaction (ops, compares and bytes within the server's limits) is
written in one, and small units are packed several to a transaction. A larger unit first writes
a `pending` record (the whole deploy record, create-only), then its data in batches, then the
history and unit records in a last transaction that also deletes `pending`; a deploy killed in
between leaves `pending` behind, and the next run finishes it under the same deploy number.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import field
from typing import Any

from .errors import EtcdError
from .fastclass import dataclass
from .gitsource import CommitInfo
from .masking import MASK
from .model import JSON, Change, DeploySource, UnitId, UnitPlan
from .plan import canon, left_alone
from .records import (
    DeployRecord,
    EnvelopeMeta,
    KeyChange,
    Keys,
    Pin,
    UnitRecord,
    encode_envelope,
    envelope_from_json,
)
from .store import (
    EtcdAuthFailed,
    EtcdPermissionDenied,
    Store,
    TxnResult,
    TxnTooLarge,
    wire_delete,
    wire_put,
)

IN_FLIGHT = 2  # transactions sent and not yet answered, per deploy
DEFAULT_MAX_OPS = 128
DEFAULT_MAX_BYTES = 1_572_864
_REQUEST_OVERHEAD = 64 * 1024  # headroom for protobuf framing and the records
_RECORD_VALUE_LIMIT = 1024  # larger values are summarised in deploy records
_RECORD_LIST_BUDGET = 256 * 1024  # past this, a record lists the first keys and the totals
_MAX_ATTEMPTS = 4


@dataclass
class DeployContext:
    keys: Keys
    commit: CommitInfo
    source: DeploySource
    actor: str
    deployed_at: str
    max_ops: int = DEFAULT_MAX_OPS
    max_bytes: int = DEFAULT_MAX_BYTES
    restored_commit: str | None = None
    set_pins: dict[UnitId, Pin] = field(default_factory=dict)
    lift_pins: set[UnitId] = field(default_factory=set)
    workers: int = 4
    fence: list[Any] = field(default_factory=list)  # compares every transaction must pass
    fence_key: tuple[bytes, int] | None = None  # (key, mod_revision) the fence compares
    drift_units: set[UnitId] = field(default_factory=set)  # deploys that revert drift
    override_id: str | None = None  # source `override`: the override this deploy records


@dataclass
class DeployOutcome:
    unit: UnitId
    deploy: int
    version: str
    added: list[str]
    changed: list[str]
    deleted: list[str]
    revision: int
    retries: int = 0
    source: DeploySource = "git"

    def as_json(self) -> dict[str, Any]:
        return {"service": self.unit.service, "environment": self.unit.environment,
                "deploy": self.deploy, "version": self.version, "added": self.added,
                "changed": self.changed, "deleted": self.deleted}


@dataclass
class _UnitWrite:
    plan: UnitPlan
    deploy: int
    data_compares: list[Any]  # for one transaction: a range guard + each changed/deleted key
    guards: list[tuple[bytes, int]]  # (key, mod_revision seen) for each op, for batches
    data_ops: list[bytes]  # encoded RequestOps (etcdstore.wire_put / wire_delete)
    data_bytes: int
    record: DeployRecord
    unit_record: UnitRecord
    keys: ChangeLists  # every key of the deploy (the record may list only the first ones)
    _parts: dict[int, tuple[list[Any], list[Any], int]] = field(default_factory=dict)

    @property
    def unit(self) -> UnitId:
        return self.plan.unit


def _record_value(value: JSON, secret: bool) -> JSON:
    if secret:
        return MASK
    if isinstance(value, str):
        if len(value) <= _RECORD_VALUE_LIMIT // 4:
            return value
    elif not isinstance(value, (list, dict)):
        return value  # numbers, booleans, null
    text = canon(value)
    if len(text) > _RECORD_VALUE_LIMIT:
        return {"$summary": f"{len(text)} bytes of JSON"}
    return value


_KINDS = ("added", "changed", "deleted")
ChangeLists = dict[str, tuple[KeyChange, ...]]


def _change_lists(changes: list[Change]) -> ChangeLists:
    """Added keys are listed by name (their values are in Git at the deploy's commit, and a
    first deploy would otherwise double its bytes); changed and deleted keys keep the old value,
    which Git alone cannot tell once etcd has been written by someone else."""
    added, changed, deleted = [], [], []
    for c in changes:
        if c.op == "add":
            added.append(KeyChange(c.key))
        elif c.op == "change":
            changed.append(KeyChange(c.key, _record_value(c.old, c.secret),
                                     _record_value(c.new, c.secret)))
        else:
            deleted.append(KeyChange(c.key, _record_value(c.old, c.secret)))
    return {"added": tuple(added), "changed": tuple(changed), "deleted": tuple(deleted)}


def _bounded(lists: ChangeLists) -> tuple[ChangeLists, tuple[int, int, int] | None]:
    """The lists as a record keeps them: whole while they fit `_RECORD_LIST_BUDGET` bytes, else
    the first keys of each, with the totals (a record must fit one etcd transaction, and a
    100,000-key deploy lists ~2 MB of keys)."""
    size = sum(len(i.key) + 16 for kind in _KINDS for i in lists[kind])
    size += sum(len(canon(i.old)) + len(canon(i.new)) for i in lists["changed"])
    size += sum(len(canon(i.old)) for i in lists["deleted"])
    if size <= _RECORD_LIST_BUDGET:
        return lists, None
    totals = (len(lists["added"]), len(lists["changed"]), len(lists["deleted"]))
    keep = max(1, _RECORD_LIST_BUDGET // 2048)  # entries per list, values up to 1 KiB each
    return {k: v[:keep] for k, v in lists.items()}, totals


def _merge_pending(pending: DeployRecord, now: ChangeLists) -> ChangeLists:
    """Resuming an interrupted deploy: what it had planned, updated by what is left now (a key
    keeps the old value first recorded for it)."""
    merged: dict[str, dict[str, KeyChange]] = {k: {} for k in _KINDS}
    for kind in _KINDS:
        for item in getattr(pending, kind):
            merged[kind][item.key] = item
    for kind in _KINDS:
        for item in now[kind]:
            for other in _KINDS:
                prior = merged[other].pop(item.key, None) if other != kind else None
                if prior is not None and other != "added" and kind != "added":
                    item = KeyChange(item.key, prior.old, item.new)
            merged[kind][item.key] = item
    return {k: tuple(sorted(merged[k].values(), key=lambda i: i.key)) for k in _KINDS}


def _too_large(exc: Exception) -> str:
    return (f"too large for etcd even in the smallest transactions ({exc}): a value or the "
            "deploy record exceeds the server's --max-request-bytes")


class UnitWrites:
    """Turns a unit plan into what its deploy writes: the encoded data operations with their
    guards, the deploy and unit records, and the compares and operations that close it."""

    def __init__(self, store: Store, ctx: DeployContext):
        self.store = store
        self.ctx = ctx

    def build(self, up: UnitPlan) -> _UnitWrite:
        live = up.live
        pending = live.pending
        deploy = pending.deploy if pending else (live.record.deploy if live.record else 0) + 1
        c, ctx = self.ctx.commit, self.ctx
        meta = EnvelopeMeta(c.sha, c.author_email, c.author_time, c.approved_by,
                            ctx.deployed_at, ctx.actor, deploy, ctx.source)
        compares, guards, ops, size = self._data_ops(up, meta.suffix(c.version))
        record, unit_record, lists = self._records(up, deploy)
        return _UnitWrite(up, deploy, compares, guards, ops, size, record, unit_record, lists)

    def _data_ops(self, up: UnitPlan, suffix: str,
                  ) -> tuple[list[Any], list[tuple[bytes, int]], list[bytes], int]:
        """The unit's puts and deletes, encoded, with the compares that guard them."""
        keys, live = self.ctx.keys, up.live
        compares: list[Any] = []
        guards: list[tuple[bytes, int]] = []
        ops: list[bytes] = []
        size = 0
        cmp_mod = self.store.cmp_mod
        encoded = up.desired.encoded if up.desired is not None else {}
        if live.read_revision:
            # keys to add: none may have appeared, and nothing in the unit changed, since the
            # plan's read; keys to change or delete are still compared one by one (a range
            # compare cannot see a key someone deleted)
            compares.append(self.store.cmp_range_unchanged(keys.unit_prefix(up.unit),
                                                           live.read_revision))
        for ch in up.changes:
            k = keys.data_key(up.unit, ch.key)
            current = live.keys.get(ch.key)
            seen = current.mod_revision if current else 0
            guards.append((k, seen))
            if seen or not live.read_revision:
                compares.append(cmp_mod(k, seen))
            if ch.op == "delete":
                op = wire_delete(k)
            else:
                text = encoded.get(ch.key)
                v = envelope_from_json(text, suffix) if text is not None else \
                    encode_envelope(ch.new, suffix)
                op = wire_put(k, v)
            ops.append(op)
            size += len(op) + 8
        return compares, guards, ops, size

    def _records(self, up: UnitPlan, deploy: int,
                 ) -> tuple[DeployRecord, UnitRecord, ChangeLists]:
        """The deploy's history record, the unit record it leaves behind, and every key."""
        ctx, c, live = self.ctx, self.ctx.commit, up.live
        lists = _change_lists(up.changes)
        if live.pending is not None:
            lists = _merge_pending(live.pending, lists)
        shown, totals = _bounded(lists)
        record = DeployRecord(
            deploy, up.unit.service, up.unit.environment, c.version, c.sha, ctx.source,
            ctx.actor, ctx.deployed_at,
            previous_commit=live.record.commit if live.record else None,
            created_by=c.author_email, created_at=c.author_time, approved_by=c.approved_by,
            subject=c.subject, added=shown["added"], changed=shown["changed"],
            deleted=shown["deleted"], restored_commit=ctx.restored_commit,
            reverted_drift=up.unit in ctx.drift_units,
            lifted_pin=up.unit in ctx.lift_pins and live.pin is not None,
            override=ctx.override_id, totals=totals)
        n_keys = len(live.keys) + sum(1 for ch in up.changes if ch.op == "add") - sum(
            1 for ch in up.changes if ch.op == "delete")
        secrets = set(up.desired.secret_keys) if up.desired else set()
        if live.record is not None:  # once secret, masked for good
            secrets.update(live.record.secret_keys)
        unit_record = UnitRecord(deploy, c.sha, c.version, ctx.source, ctx.deployed_at,
                                 ctx.actor, n_keys, tuple(sorted(secrets)),
                                 ctx.restored_commit,
                                 tuple(sorted(left_alone(up.desired, live))))
        return record, unit_record, lists

    def record_parts(self, w: _UnitWrite, pending_revision: int | None,
                      ) -> tuple[list[Any], list[Any], int]:
        """Compares and ops that close a unit's deploy: history, unit record, pending, pin
        (built once per unit and pending revision: sizing and sending both need them)."""
        cached = w._parts.get(pending_revision or 0)
        if cached is None:
            cached = w._parts[pending_revision or 0] = self._build_record_parts(
                w, pending_revision)
        return cached

    def _build_record_parts(self, w: _UnitWrite, pending_revision: int | None,
                            ) -> tuple[list[Any], list[Any], int]:
        keys, unit, live = self.ctx.keys, w.unit, w.plan.live
        hist, urec = w.record.to_json(), w.unit_record.to_json()
        cmps = [self.store.cmp_mod(keys.history(unit, w.deploy), 0),
                self.store.cmp_mod(keys.unit_record(unit), live.record_revision)]
        ops = [wire_put(keys.history(unit, w.deploy), hist),
               wire_put(keys.unit_record(unit), urec)]
        if pending_revision:
            cmps.append(self.store.cmp_mod(keys.pending(unit), pending_revision))
            ops.append(wire_delete(keys.pending(unit)))
        pin = self.ctx.set_pins.get(unit)
        if pin is not None:
            ops.append(wire_put(keys.pin(unit), pin.to_json()))
        elif unit in self.ctx.lift_pins and live.pin is not None:
            ops.append(wire_delete(keys.pin(unit)))
        return cmps, ops, len(hist) + len(urec) + 256

    def cost(self, w: _UnitWrite) -> tuple[int, int, int]:
        """Operations, compares and bytes the unit adds to a transaction, records included."""
        cmps, ops, size = self.record_parts(w, w.plan.live.pending_revision or None)
        return len(w.data_ops) + len(ops), len(w.data_compares) + len(cmps), w.data_bytes + size


class Deployer:
    """Writes unit plans; `submit()` as plans come, `finish()` to wait and settle conflicts."""

    def __init__(self, store: Store, ctx: DeployContext,
                 replan: Callable[[UnitPlan], UnitPlan | None],
                 progress: Callable[[int], None] | None = None):
        self.store = store
        self.ctx = ctx
        self.replan = replan
        self.progress = progress
        self.outcomes: list[DeployOutcome] = []
        self.failed: list[tuple[UnitId, str]] = []
        self.revisions: list[int] = []  # of every transaction of ours that succeeded
        self._batch: list[_UnitWrite] = []
        self._batch_ops = self._batch_cmps = self._batch_bytes = 0
        self._retry: list[UnitPlan] = []  # lost a race: re-planned from fresh state
        # parsing outruns etcd: a bounded window of transactions in flight (grpc futures, no
        # thread each) keeps etcd busy without holding the repository in queued requests.
        # Two are enough: one is applied while the next arrives. More queue inside etcd, whose
        # applies then wait on each other's backend commits: at 1M keys a window of 32 drew
        # 12 "apply request took too long" warnings (up to 224 ms; 106-157 over 300 ms before
        # the first-apply fixes), 2 drew none, in the same 63 s (docs/benchmarks.md)
        self._window = IN_FLIGHT
        self._inflight: deque[tuple[Any, list[_UnitWrite]]] = deque()
        self._slots = threading.BoundedSemaphore(max(1, ctx.workers))  # large units
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, ctx.workers))
        self._futures: list[Future[None]] = []
        self.writes = UnitWrites(store, ctx)
        self._conflicts: dict[UnitId, int] = {}

    def _within(self, n_ops: int, n_cmps: int, nbytes: int) -> bool:
        return (n_ops <= self.ctx.max_ops
                and n_cmps + len(self.ctx.fence) <= self.ctx.max_ops
                and nbytes <= self.ctx.max_bytes - _REQUEST_OVERHEAD)

    # -- submitting -----------------------------------------------------------------------

    def submit(self, up: UnitPlan) -> None:
        w = self.writes.build(up)
        n_ops, n_cmps, nbytes = self.writes.cost(w)
        if not self._within(n_ops, n_cmps, nbytes):  # too large for one transaction
            self._flush()
            self._slots.acquire()
            self._futures.append(self._pool.submit(self._write_large, w))
            return
        if not self._within(self._batch_ops + n_ops, self._batch_cmps + n_cmps,
                            self._batch_bytes + nbytes):
            self._flush()
        self._batch.append(w)
        self._batch_ops += n_ops
        self._batch_cmps += n_cmps
        self._batch_bytes += nbytes

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        self._batch_ops = self._batch_cmps = self._batch_bytes = 0
        compares: list[Any] = list(self.ctx.fence)
        ops: list[Any] = []
        for w in batch:
            cmps, rops, _ = self.writes.record_parts(w, w.plan.live.pending_revision or None)
            compares += w.data_compares + cmps
            ops += w.data_ops + rops
        self._inflight.append((self.store.txn_start(compares, ops), batch))
        while len(self._inflight) > self._window:
            self._settle(*self._inflight.popleft())

    def _settle(self, started: Any, batch: list[_UnitWrite]) -> None:
        try:
            res = self.store.txn_finish(started)
        except TxnTooLarge as exc:
            if not self._shrink_limits():
                with self._lock:
                    self.failed.extend((w.unit, _too_large(exc)) for w in batch)
                return
            with self._lock:
                self._retry.extend(w.plan for w in batch)
            return
        except (EtcdPermissionDenied, EtcdAuthFailed):
            raise  # not this unit's fault: the whole command stops (exit 2), one line
        except EtcdError as exc:
            with self._lock:
                self.failed.extend((w.unit, str(exc)) for w in batch)
            return
        with self._lock:
            if res.succeeded:
                self.revisions.append(res.revision)
                for w in batch:
                    self._done(w, res.revision)
            else:
                self._retry.extend(w.plan for w in batch)

    def _write_large(self, w: _UnitWrite) -> None:
        try:
            self._write_large_unit(w)
        finally:
            self._slots.release()

    def _write_large_unit(self, w: _UnitWrite) -> None:
        try:
            ok, revision = self._write_large_steps(w)
        except TxnTooLarge as exc:
            if not self._shrink_limits():
                with self._lock:
                    self.failed.append((w.unit, _too_large(exc)))
                return
            ok, revision = False, 0
        except (EtcdPermissionDenied, EtcdAuthFailed):
            raise  # not this unit's fault: the whole command stops (exit 2), one line
        except EtcdError as exc:
            with self._lock:
                self.failed.append((w.unit, str(exc)))
            return
        with self._lock:
            if ok:
                self._done(w, revision, large=True)
            else:
                self._retry.append(w.plan)

    def _write_large_steps(self, w: _UnitWrite) -> tuple[bool, int]:
        store, keys, live = self.store, self.ctx.keys, w.plan.live
        pending_rev = live.pending_revision
        if not live.pending:
            res = self._txn([store.cmp_mod(keys.pending(w.unit), 0),
                             store.cmp_mod(keys.unit_record(w.unit), live.record_revision)],
                            [wire_put(keys.pending(w.unit), w.record.to_json())])
            if not res.succeeded:
                return False, 0
            pending_rev = res.revision
        guard = store.cmp_mod(keys.pending(w.unit), pending_rev)
        limit_ops = self.ctx.max_ops - 1 - len(self.ctx.fence)
        limit_bytes = self.ctx.max_bytes - _REQUEST_OVERHEAD
        i = 0
        n = len(w.data_ops)
        while i < n:
            j, size = i, 0
            while j < n and j - i < limit_ops:
                op_size = len(w.data_ops[j]) + 4
                if j > i and size + op_size > limit_bytes:
                    break
                size += op_size
                j += 1
            cmps = [self.store.cmp_mod(k, seen) for k, seen in w.guards[i:j]]
            res = self._txn([guard, *cmps], w.data_ops[i:j])
            if not res.succeeded:
                return False, 0
            if self.progress:
                self.progress(j - i)
            i = j
        cmps, ops, _ = self.writes.record_parts(w, pending_rev)
        res = self._txn(cmps, ops)
        return res.succeeded, res.revision

    def _txn(self, compares: list[Any], ops: list[bytes]) -> TxnResult:
        res = self.store.txn_wire([*self.ctx.fence, *compares], ops)
        if res.succeeded:
            with self._lock:
                self.revisions.append(res.revision)
        return res

    def _shrink_limits(self) -> bool:
        """Halve the limits after the server refused a transaction for its size; False when
        they are already at their floor (then it is not the batching: something is too big)."""
        with self._lock:
            ops, nbytes = max(8, self.ctx.max_ops // 2), max(256 * 1024, self.ctx.max_bytes // 2)
            shrunk = (ops, nbytes) != (self.ctx.max_ops, self.ctx.max_bytes)
            self.ctx.max_ops, self.ctx.max_bytes = ops, nbytes
            return shrunk

    def _done(self, w: _UnitWrite, revision: int, large: bool = False) -> None:
        r, k = w.record, w.keys
        self.outcomes.append(DeployOutcome(w.unit, w.deploy, r.version,
                                           [i.key for i in k["added"]],
                                           [i.key for i in k["changed"]],
                                           [i.key for i in k["deleted"]], revision,
                                           self._conflicts.get(w.unit, 0), r.source))
        if self.progress and not large:  # large units report batch by batch
            self.progress(len(w.data_ops))

    # -- settling -------------------------------------------------------------------------

    def finish(self) -> None:
        """Wait for every write; re-plan and retry, one unit at a time, what lost a race."""
        self._flush()
        self._drain()
        while self._retry:
            if self._fence_lost():
                self.failed.extend((lost.unit, "this replica is no longer the leader: nothing "
                                               "more was written") for lost in self._retry)
                self._retry = []
                break
            todo, self._retry = self._retry, []
            for lost in todo:
                unit = lost.unit
                attempts = self._conflicts.get(unit, 0) + 1
                self._conflicts[unit] = attempts
                if attempts > _MAX_ATTEMPTS:
                    self.failed.append((unit, "concurrent writes kept changing the unit; "
                                              f"gave up after {_MAX_ATTEMPTS} attempts"))
                    continue
                up = self.replan(lost)
                if up is None:
                    continue  # nothing left to do: someone else converged it
                self.submit(up)
                self._flush()
                self._drain()
        self._pool.shutdown(wait=True)

    def _fence_lost(self) -> bool:
        if self.ctx.fence_key is None:
            return False
        key, revision = self.ctx.fence_key
        kv = self.store.get(key)
        return kv is None or kv.mod_revision != revision

    def _drain(self) -> None:
        while self._inflight:
            self._settle(*self._inflight.popleft())
        while self._futures:
            fut = self._futures.pop(0)
            fut.result()
