"""Reading units from etcd into `LiveUnit`s: envelopes with their mod revisions, and each unit's
record, pending deploy and pin.

A few units are read with range requests packed into one transaction (one round trip, one
revision); many units (a full pass) with an index of units and their records, each unit's keys
read as it is planned, a chunk of neighbouring services per range, so a pass over a million keys
holds a chunk of them, not all. While etcd's NOSPACE alarm
is raised it refuses every transaction, read-only ones included, but still serves plain ranges:
the few units are then read range by range, all at the revision of the first, so `get` and
`diff` keep working when on-call needs them most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace

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

SCAN_THRESHOLD = 48  # above this many units, an index of the prefix is cheaper
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


def _unknown(_: UnitId) -> int:
    return 0


class LiveView:
    """What a pass knows of etcd: every unit it may plan with its records (`units`), and its
    keys when it is planned (`load`); `absent_at(unit)`, the revision at which a unit `load`
    does not know had nothing in etcd (0: not known)."""

    def __init__(self, units: Mapping[UnitId, LiveUnit],
                 load: Callable[[UnitId], LiveUnit | None],
                 absent_at: Callable[[UnitId], int] = _unknown,
                 also: Mapping[bytes, KV | None] | None = None):
        self.units = units
        self.load = load
        self.absent_at = absent_at
        # the other keys asked for with the units (`read_live(also=...)`), None for an absent
        # one; None when they were not read (many units: the caller reads them itself)
        self.also = also

    def unit(self, unit: UnitId) -> LiveUnit:
        """The unit to plan: as read, or empty, read when it was known to be absent (its first
        deploy then guards every addition with one range compare over the unit, which a write
        there since then fails, instead of one compare per key)."""
        return self.load(unit) or LiveUnit(unit, {}, read_revision=self.absent_at(unit))


def read_live(store: Store, keys: Keys, units: Collection[UnitId] | None,
              also: Collection[bytes] = ()) -> LiveView:
    """A few units: read whole (one transaction), with the keys `also` names (the services'
    published schemas: read now, the pass needs no read after its deploy, which in a 1M-key
    etcd waited ~7 ms behind the deploy's own write). Many, or all: an index of units and
    their records now, and each unit's keys when it is planned, a chunk of services at a
    time, so the memory of a full pass follows a chunk, not the prefix (`also` is not read)."""
    if units is not None and len(units) <= SCAN_THRESHOLD:
        state, extra = _read_by_txn(store, keys, units, also=also)
        return LiveView(state.units, state.units.get, also=extra)
    index = LiveIndex(store, keys, units)
    return LiveView(index.units, index.load, index.absent_revision)


class LiveIndex:
    """Every unit under the prefix (or of `wanted`), with its records but not its keys: keys
    are read by `load`, one range over a chunk of neighbouring services at a time (the two
    latest chunks kept), and handed out in a fresh `LiveUnit` the index does not keep."""

    CHUNK = 40  # services a key read covers at most
    CHUNK_KEYS = 4_000  # keys it covers, about: fewer services when they hold more keys
    KEEP = 2  # chunks kept: a pass asks for units in service order

    def __init__(self, store: Store, keys: Keys, wanted: Collection[UnitId] | None):
        self.store, self.keys = store, keys
        self._want = want = set(wanted) if wanted is not None else None
        self.units: dict[UnitId, LiveUnit] = {}
        self.scanned_at = 0  # the earliest revision of the scans of data keys
        sizes: Counter[str] = Counter()  # keys per service
        for start, stop in _outside_system(keys, keys.root_b, prefix_end(keys.root_b)):
            for kvs, at in scan_pages(store, start, end=stop, keys_only=True):
                self.scanned_at = min(self.scanned_at or at, at)
                for kv in kvs:
                    parsed = keys.parse_data_key(kv.key)
                    if parsed is not None and (want is None or parsed[0] in want):
                        self.units.setdefault(parsed[0], LiveUnit(parsed[0], {}))
                        sizes[parsed[0].service] += 1
        for kind in _RECORD_KINDS:
            for kvs, _ in scan_pages(store, keys.kind_prefix(kind)):
                for kv in kvs:
                    rec = keys.parse_unit_record_key(kv.key)
                    if rec is not None and (want is None or rec[1] in want):
                        unit = rec[1]
                        _apply_record(self.units.setdefault(unit, LiveUnit(unit, {})), kind, kv)
        order = sorted({u.service for u in self.units}, key=lambda s: f"{s}/".encode())
        self._chunks = self._pack(order, sizes)
        self._chunk_of = {svc: i for i, chunk in enumerate(self._chunks) for svc in chunk}
        self._loaded: dict[int, dict[UnitId, dict[str, LiveKey]]] = {}
        self._revisions: dict[int, int] = {}

    def _pack(self, order: list[str], sizes: Counter[str]) -> list[list[str]]:
        """Neighbouring services in chunks of about `CHUNK_KEYS` keys and at most `CHUNK`
        services: what a pass holds follows a chunk's keys, not how many a file has."""
        chunks: list[list[str]] = []
        keys = 0
        for svc in order:
            if not chunks or len(chunks[-1]) >= self.CHUNK or keys >= self.CHUNK_KEYS:
                chunks.append([])
                keys = 0
            chunks[-1].append(svc)
            keys += sizes[svc]
        return chunks

    def load(self, unit: UnitId) -> LiveUnit | None:
        known = self.units.get(unit)
        if known is None:
            return None
        chunk = self._chunk_of[unit.service]
        if chunk not in self._loaded:
            if len(self._loaded) >= self.KEEP:
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[chunk] = self._read_chunk(self._chunks[chunk])
        keys, revision = self._loaded[chunk].get(unit, {}), self._revisions[chunk]
        return replace(known, keys=dict(keys), read_revision=revision)

    def absent_revision(self, unit: UnitId) -> int:
        """A wanted unit the index does not hold had no key at the revision of the scans (the
        earliest, when the prefix took two), nor any record; 0 for a unit left out of them."""
        if unit in self.units or (self._want is not None and unit not in self._want):
            return 0
        return self.scanned_at

    def _read_chunk(self, services: list[str]) -> dict[UnitId, dict[str, LiveKey]]:
        """The keys of neighbouring services: one range per side of `_system/` (never read
        here: it holds the history)."""
        root = self.keys.root_b
        first, last = (root + f"{services[0]}/".encode(),
                       prefix_end(root + f"{services[-1]}/".encode()))
        out: dict[UnitId, dict[str, LiveKey]] = {}
        revision = 0
        for start, stop in _outside_system(self.keys, first, last):
            for kvs, at in scan_pages(self.store, start, end=stop):
                revision = revision or at
                for kv in kvs:
                    parsed = self.keys.parse_data_key(kv.key)
                    if parsed is not None and parsed[0] in self.units:
                        out.setdefault(parsed[0], {})[parsed[1]] = live_key(kv)
        self._revisions[self._chunk_of[services[0]]] = revision
        return out


def _outside_system(keys: Keys, first: bytes, last: bytes) -> list[tuple[bytes, bytes]]:
    """[first, last) as ranges that leave out `_system/` (records and the deploy history, read
    by their own kinds or never)."""
    system = keys.system_b
    if first < system < last:
        return [(first, system), (prefix_end(system), last)]
    return [(first, last)]


_READ_OPS = 120  # operations per reading transaction (etcd allows 128 by default)


def _read_by_txn(store: Store, keys: Keys, units: Iterable[UnitId],
                 keep_envelopes: bool = False, also: Collection[bytes] = (),
                 ) -> tuple[LiveState, dict[bytes, KV | None]]:
    """The units (a range and the records of each) and the keys of `also`, packed into as
    few transactions as etcd takes (one for a few units)."""
    out: dict[UnitId, LiveUnit] = {}
    extra: dict[bytes, KV | None] = {}
    todo = sorted(set(units))
    revision = 0
    for chunk, gets in _batches(todo, sorted(set(also))):
        ops = []
        for unit in chunk:
            ops.append(store.op_range_prefix(keys.unit_prefix(unit)))
            ops += [store.op_get(keys.unit_kind(kind, unit)) for kind in _RECORD_KINDS]
        ops += [store.op_get(key) for key in gets]
        try:
            res = store.txn([], ops)
        except EtcdNoSpace:
            return _read_by_ranges(store, keys, todo, keep_envelopes, also)
        revision = max(revision, res.revision)
        ranges = res.ranges()
        for j, unit in enumerate(chunk):
            data, *records = ranges[j * _PER_UNIT_OPS:(j + 1) * _PER_UNIT_OPS]
            out[unit] = _unit_of(keys, unit, data, records, res.revision, keep_envelopes)
        for key, kvs in zip(gets, ranges[len(chunk) * _PER_UNIT_OPS:], strict=True):
            extra[key] = kvs[0] if kvs else None
    return LiveState(out, revision), extra


def _batches(units: list[UnitId], gets: list[bytes],
             ) -> list[tuple[list[UnitId], list[bytes]]]:
    """Units and single keys in transactions of at most `_READ_OPS` operations; the keys
    fill the room the units leave."""
    batches: list[tuple[list[UnitId], list[bytes]]] = [([], [])]
    room = _READ_OPS
    for unit in units:
        if room < _PER_UNIT_OPS:
            batches.append(([], []))
            room = _READ_OPS
        batches[-1][0].append(unit)
        room -= _PER_UNIT_OPS
    for key in gets:
        if room < 1:
            batches.append(([], []))
            room = _READ_OPS
        batches[-1][1].append(key)
        room -= 1
    return [b for b in batches if b[0] or b[1]]


def _read_by_ranges(store: Store, keys: Keys, units: list[UnitId], keep_envelopes: bool,
                    also: Collection[bytes] = (),
                    ) -> tuple[LiveState, dict[bytes, KV | None]]:
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
    extra: dict[bytes, KV | None] = {}
    for key in sorted(set(also)):
        res = store.range(key, revision=revision)
        revision = revision or res.revision
        extra[key] = res.kvs[0] if res.kvs else None
    return LiveState(out, revision), extra


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
    return _read_by_txn(store, keys, [unit], keep_envelopes)[0].units[unit]
