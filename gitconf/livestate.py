"""Reading units from etcd into `LiveUnit`s: envelopes with their mod revisions, and each unit's
record, pending deploy and pin.

A few units are read with range requests packed into one transaction (one round trip, one
revision); many units with one paginated snapshot of the whole prefix. While etcd's NOSPACE alarm
is raised it refuses every transaction, read-only ones included, but still serves plain ranges:
the few units are then read range by range, all at the revision of the first, so `get` and
`diff` keep working when on-call needs them most.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .model import LiveKey, LiveState, LiveUnit, UnitId
from .plan import NOT_ENVELOPE
from .records import (
    DeployRecord,
    Keys,
    OverrideRecord,
    Pin,
    RecordError,
    UnitRecord,
    UnitRecordKind,
    decode_envelope,
)
from .store import KV, EtcdNoSpace, Store, prefix_end, scan_pages

SCAN_THRESHOLD = 48  # above this many units, one snapshot of the prefix is cheaper
_RECORD_KINDS: tuple[UnitRecordKind, ...] = ("units", "pending", "pins", "overrides")
_PER_UNIT_OPS = 1 + len(_RECORD_KINDS)


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
    elif kind == "overrides":
        try:
            unit.override = OverrideRecord.from_json(kv.value)
        except RecordError:
            unit.override = None  # unreadable: held keys cannot be known; the revision guards
        unit.override_revision = kv.mod_revision


def read_units(store: Store, keys: Keys, units: Collection[UnitId] | None) -> LiveState:
    """Live state of `units` (None: every unit found under the prefix)."""
    if units is None or len(units) > SCAN_THRESHOLD:
        return _read_by_scan(store, keys, units)
    return _read_by_txn(store, keys, units)


def _read_by_scan(store: Store, keys: Keys, units: Collection[UnitId] | None) -> LiveState:
    """The whole prefix, folded page by page into `LiveUnit`s (one page of raw values held at
    a time, not the whole prefix)."""
    wanted = set(units) if units is not None else None
    out: dict[UnitId, LiveUnit] = {}
    revision = 0

    def get(unit: UnitId) -> LiveUnit | None:
        if wanted is not None and unit not in wanted:
            return None
        lu = out.get(unit)
        if lu is None:
            lu = out[unit] = LiveUnit(unit, {})
        return lu

    for kvs, at in scan_pages(store, keys.root_b):
        revision = at
        for kv in kvs:
            parsed = keys.parse_data_key(kv.key)
            if parsed is not None:
                lu = get(parsed[0])
                if lu is not None:
                    lu.keys[parsed[1]] = live_key(kv)
                continue
            rec = keys.parse_unit_record_key(kv.key)
            if rec is not None and rec[0] in _RECORD_KINDS:
                lu = get(rec[1])
                if lu is not None:
                    _apply_record(lu, rec[0], kv)
    revision = revision or store.revision(within=keys.root_b)
    if wanted is not None:
        for unit in wanted:
            out.setdefault(unit, LiveUnit(unit, {}))
    for lu in out.values():
        lu.read_revision = revision
    return LiveState(out, revision)


def _read_by_txn(store: Store, keys: Keys, units: Iterable[UnitId],
                 keep_envelopes: bool = False) -> LiveState:
    out: dict[UnitId, LiveUnit] = {}
    todo = sorted(set(units))
    per_txn = max(1, 120 // _PER_UNIT_OPS)
    revision = 0
    for i in range(0, len(todo), per_txn):
        chunk = todo[i:i + per_txn]
        ops = []
        for unit in chunk:
            ops.append(store.op_range_prefix(keys.unit_prefix(unit)))
            ops += [store.op_get(keys.unit_kind(kind, unit)) for kind in _RECORD_KINDS]
        try:
            res = store.txn([], ops)
        except EtcdNoSpace:
            return _read_by_ranges(store, keys, todo, keep_envelopes)
        revision = max(revision, res.revision)
        ranges = res.ranges()
        for j, unit in enumerate(chunk):
            data, *records = ranges[j * _PER_UNIT_OPS:(j + 1) * _PER_UNIT_OPS]
            out[unit] = _unit_of(keys, unit, data, records, res.revision, keep_envelopes)
    return LiveState(out, revision)


def _read_by_ranges(store: Store, keys: Keys, units: list[UnitId],
                    keep_envelopes: bool) -> LiveState:
    """The same reads as `_read_by_txn`, one range request each, every one at the revision
    of the first (one consistent view, as the transaction gives)."""
    out: dict[UnitId, LiveUnit] = {}
    revision = 0
    for unit in units:
        first = store.range(keys.unit_prefix(unit), prefix_end(keys.unit_prefix(unit)),
                            revision=revision)
        revision = revision or first.revision
        records = [store.range(keys.unit_kind(kind, unit), revision=revision).kvs
                   for kind in _RECORD_KINDS]
        out[unit] = _unit_of(keys, unit, first.kvs, records, revision, keep_envelopes)
    return LiveState(out, revision)


def _unit_of(keys: Keys, unit: UnitId, data: list[KV], records: list[list[KV]], revision: int,
             keep_envelopes: bool) -> LiveUnit:
    lu = LiveUnit(unit, {}, read_revision=revision)
    for kv in data:
        parsed = keys.parse_data_key(kv.key)
        if parsed is not None:
            lu.keys[parsed[1]] = live_key(kv, keep_envelopes)
    for kind, kvs in zip(_RECORD_KINDS, records, strict=True):
        for kv in kvs:
            _apply_record(lu, kind, kv)
    return lu


def read_unit(store: Store, keys: Keys, unit: UnitId,
              keep_envelopes: bool = False) -> LiveUnit:
    return _read_by_txn(store, keys, [unit], keep_envelopes).units[unit]
