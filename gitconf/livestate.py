"""Reading units from etcd into `LiveUnit`s: envelopes with their mod revisions, and each unit's
record, pending deploy and pin.

A few units are read with range requests packed into one transaction (one round trip, one
revision); many units with one paginated snapshot of the whole prefix.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end

from .etcdstore import KV, EtcdStore
from .model import LiveKey, LiveState, LiveUnit, UnitId
from .plan import NOT_ENVELOPE
from .records import DeployRecord, Keys, Pin, RecordError, UnitRecord, decode_envelope

SCAN_THRESHOLD = 48  # above this many units, one snapshot of the prefix is cheaper
_PER_UNIT_OPS = 4


def live_key(kv: KV, keep_envelope: bool = False) -> LiveKey:
    """Planning needs the value and its revision; the raw bytes are kept only when they are
    not an envelope (to show them), the envelope only when asked (`gitconf get`)."""
    env = decode_envelope(kv.value)
    if env is None:
        return LiveKey(NOT_ENVELOPE, kv.value, kv.mod_revision, None)
    return LiveKey(env["value"], b"", kv.mod_revision, env if keep_envelope else None)


def _apply_record(unit: LiveUnit, kind: str, kv: KV) -> None:
    """A record that cannot be decoded keeps its revision (every guarded write compares it, so
    nothing overwrites it blindly) and reads as a record at deploy 0."""
    if kind == "units":
        try:
            unit.record = UnitRecord.from_json(kv.value)
        except RecordError:
            unit.record = UnitRecord(0, "", "", "git", "", "")
        unit.record_revision = kv.mod_revision
    elif kind == "pending":
        try:
            unit.pending = DeployRecord.from_json(kv.value)
        except RecordError:
            unit.pending = DeployRecord(0, unit.unit.service, unit.unit.environment, "", "",
                                        "git", "", "")
        unit.pending_revision = kv.mod_revision
    elif kind == "pins":
        try:
            unit.pin = Pin.from_json(kv.value)
        except RecordError:
            unit.pin = Pin("?", "?", "?", "unreadable pin record: `gitconf unpin` removes it")


def read_units(store: EtcdStore, keys: Keys, units: Collection[UnitId] | None) -> LiveState:
    """Live state of `units` (None: every unit found under the prefix)."""
    if units is None or len(units) > SCAN_THRESHOLD:
        return _read_by_scan(store, keys, units)
    return _read_by_txn(store, keys, units)


def _read_by_scan(store: EtcdStore, keys: Keys, units: Collection[UnitId] | None) -> LiveState:
    kvs, revision = store.scan(keys.root_b)
    wanted = set(units) if units is not None else None
    out: dict[UnitId, LiveUnit] = {}

    def get(unit: UnitId) -> LiveUnit | None:
        if wanted is not None and unit not in wanted:
            return None
        lu = out.get(unit)
        if lu is None:
            lu = out[unit] = LiveUnit(unit, {})
        return lu

    for kv in kvs:
        parsed = keys.parse_data_key(kv.key)
        if parsed is not None:
            lu = get(parsed[0])
            if lu is not None:
                lu.keys[parsed[1]] = live_key(kv)
            continue
        rec = keys.parse_unit_record_key(kv.key)
        if rec is not None and rec[0] in ("units", "pending", "pins"):
            lu = get(rec[1])
            if lu is not None:
                _apply_record(lu, rec[0], kv)
    if wanted is not None:
        for unit in wanted:
            out.setdefault(unit, LiveUnit(unit, {}))
    for lu in out.values():
        lu.read_revision = revision
    return LiveState(out, revision)


def _range_op(key: bytes, prefix: bool = False) -> Any:
    req = etcdrpc.RangeRequest(key=key)
    if prefix:
        req.range_end = prefix_range_end(key)
    return etcdrpc.RequestOp(request_range=req)


def _read_by_txn(store: EtcdStore, keys: Keys, units: Iterable[UnitId],
                 keep_envelopes: bool = False) -> LiveState:
    out: dict[UnitId, LiveUnit] = {}
    todo = sorted(set(units))
    per_txn = max(1, 120 // _PER_UNIT_OPS)
    revision = 0
    for i in range(0, len(todo), per_txn):
        chunk = todo[i:i + per_txn]
        ops = []
        for unit in chunk:
            ops += [_range_op(keys.unit_prefix(unit), prefix=True),
                    _range_op(keys.unit_record(unit)), _range_op(keys.pending(unit)),
                    _range_op(keys.pin(unit))]
        res = store.txn([], ops)
        revision = max(revision, res.revision)
        for j, unit in enumerate(chunk):
            lu = out[unit] = LiveUnit(unit, {}, read_revision=res.revision)
            data, record, pending, pin = res.responses[j * 4:(j + 1) * 4]
            for kv in data.response_range.kvs:
                parsed = keys.parse_data_key(kv.key)
                if parsed is not None:
                    lu.keys[parsed[1]] = live_key(KV(kv.key, kv.value, kv.mod_revision,
                                                     kv.create_revision), keep_envelopes)
            for kind, resp in (("units", record), ("pending", pending), ("pins", pin)):
                for kv in resp.response_range.kvs:
                    _apply_record(lu, kind, KV(kv.key, kv.value, kv.mod_revision,
                                               kv.create_revision))
    return LiveState(out, revision)


def read_unit(store: EtcdStore, keys: Keys, unit: UnitId,
              keep_envelopes: bool = False) -> LiveUnit:
    return _read_by_txn(store, keys, [unit], keep_envelopes).units[unit]
