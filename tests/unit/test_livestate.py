"""Reading units from a store (`gitconf.livestate`): the index a full pass reads (units and
records now, keys a chunk of services at a time) must give each unit exactly what reading the
unit alone gives, whatever the names, their order in the keyspace, and the chunking. The
in-memory store stands in for etcd; `test_memstore.py` holds it to etcd's answers. What a
pass reads with its units (`also`) is tested against etcd itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitconf.etcdstore import EtcdStore
from gitconf.livestate import SCAN_THRESHOLD, LiveIndex, read_live, read_unit
from gitconf.memstore import MemStore
from gitconf.model import UnitId
from gitconf.publish import publish_schemas
from gitconf.records import Keys, Pin, SchemaRecord, UnitRecord, encode_envelope

KEYS = Keys("/p")
SUFFIX = ',"version":"v1","metadata":{"commit":"c"}}'
# names whose keys interleave around `_system/` and each other ("svc-a/" sorts before "svc/")
SERVICES = st.sampled_from(["0a", "9z", "a", "svc", "svc-a", "svc.b", "zz", "_other", "b_"])
ENVS = st.sampled_from(["dev", "prod", "prod-eu"])
KEY_NAMES = st.sampled_from(["a", "b.c", "d/e", "x"])


@pytest.fixture
def small_chunks() -> Iterator[None]:
    saved = LiveIndex.CHUNK, LiveIndex.CHUNK_KEYS
    # many chunks, and chunks evicted and read again; cut by services or by keys
    LiveIndex.CHUNK, LiveIndex.CHUNK_KEYS = 3, 4
    try:
        yield
    finally:
        LiveIndex.CHUNK, LiveIndex.CHUNK_KEYS = saved


@given(sizes=st.lists(st.integers(0, 9_000), max_size=300))
def test_chunks_hold_neighbouring_services_up_to_a_budget_of_keys(sizes: list[int]) -> None:
    order = [f"s{i:03d}" for i in range(len(sizes))]
    counts = Counter(dict(zip(order, sizes, strict=True)))
    index = LiveIndex.__new__(LiveIndex)
    chunks = index._pack(order, counts)
    assert [svc for chunk in chunks for svc in chunk] == order
    for chunk in chunks:
        assert 1 <= len(chunk) <= LiveIndex.CHUNK
        # only the service that crossed the budget may take a chunk past it
        assert sum(counts[s] for s in chunk[:-1]) < LiveIndex.CHUNK_KEYS
    for chunk in chunks[:-1]:  # a chunk ends only when it has to
        assert len(chunk) == LiveIndex.CHUNK or sum(counts[s] for s in chunk) >= \
            LiveIndex.CHUNK_KEYS


def _record(deploy: int) -> bytes:
    return UnitRecord(deploy, "c" * 40, "v1", "git", "2026-01-01T00:00:00Z", "ci").to_json()


def fill(store: MemStore, units: dict[UnitId, dict[str, int]], recorded: set[UnitId],
         pinned: set[UnitId]) -> None:
    for unit, values in units.items():
        for key, value in values.items():
            store.put(KEYS.data_key(unit, key), encode_envelope(value, SUFFIX))
    for n, unit in enumerate(sorted(recorded)):
        store.put(KEYS.unit_record(unit), _record(n + 1))
    for unit in pinned:
        store.put(KEYS.unit_kind("pins", unit), Pin("c" * 40, "ci", "now", "why").to_json())
    store.put(b"/p/_system/history/svc/prod/1", b"{}")  # never read by the index
    store.put(b"/p/README", b"not a unit key")
    store.put(b"/q/svc/prod/a", b"another prefix")


UNITS = st.dictionaries(st.builds(UnitId, SERVICES, ENVS),
                        st.dictionaries(KEY_NAMES, st.integers(0, 9), max_size=3), max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=UNITS, data=st.data())
def test_the_index_gives_each_unit_what_reading_it_alone_gives(small_chunks: None,
                                                               units: dict[UnitId, dict[str, int]],
                                                               data: st.DataObject) -> None:
    store = MemStore()
    every = sorted(units)
    recorded = set(data.draw(st.lists(st.sampled_from(every), unique=True))) if every else set()
    pinned = set(data.draw(st.lists(st.sampled_from(every), unique=True))) if every else set()
    fill(store, units, recorded, pinned)
    view = read_live(store, KEYS, None)
    assert set(view.units) == {u for u in units if units[u]} | recorded | pinned
    order = data.draw(st.permutations(sorted(view.units))) if view.units else []
    for unit in order:  # any order: chunks are read again when evicted
        alone = read_unit(store, KEYS, unit)
        got = view.load(unit)
        assert got is not None
        assert (got.keys, got.record, got.record_revision, got.pin) == \
            (alone.keys, alone.record, alone.record_revision, alone.pin)
        assert got.read_revision == store.revision()
    assert view.load(UnitId("absent", "prod")) is None


def test_loaded_keys_are_not_kept_by_the_index(small_chunks: None) -> None:
    store = MemStore()
    units = {UnitId(f"s{i}", "prod"): {"a": i} for i in range(7)}
    fill(store, units, set(units), set())
    index = LiveIndex(store, KEYS, None)
    for unit in sorted(units):
        assert index.load(unit).keys["a"].value == units[unit]["a"]  # type: ignore[union-attr]
        assert index.units[unit].keys == {}  # records only: a pass holds a chunk of keys
    assert len(index._loaded) <= LiveIndex.KEEP


def test_wanted_units_only_and_many_units_use_the_index() -> None:
    store = MemStore()
    units = {UnitId(f"s{i:02}", "prod"): {"a": i} for i in range(60)}
    fill(store, units, set(units), set())
    wanted = {u for u in units if u.service < "s55"}
    view = read_live(store, KEYS, wanted)
    assert set(view.units) == wanted
    assert view.load(UnitId("s58", "prod")) is None
    few = read_live(store, KEYS, {UnitId("s01", "prod"), UnitId("new", "prod")})
    assert set(few.units) == {UnitId("s01", "prod"), UnitId("new", "prod")}
    assert few.load(UnitId("new", "prod")).keys == {}  # type: ignore[union-attr]


def test_a_unit_the_index_did_not_see_was_absent_at_the_scan() -> None:
    """A wanted unit with no key and no record is planned as read empty at the index's scan: a
    first deploy guards its additions with one range compare over the unit, which a key
    written there since the scan fails (and nothing is claimed of units left out of it)."""
    store = MemStore()
    fill(store, {UnitId("svc", "prod"): {"a": 1}}, set(), set())
    fresh, other = UnitId("new", "prod"), UnitId("left-out", "prod")
    view = read_live(store, KEYS, [UnitId("svc", "prod"), fresh] + [
        UnitId(f"s{i}", "dev") for i in range(60)])  # past SCAN_THRESHOLD: the index
    scanned = store.revision()
    lv = view.unit(fresh)
    assert (lv.keys, lv.record, lv.read_revision) == ({}, None, scanned)
    assert view.unit(other).read_revision == 0  # not wanted: not scanned for
    guard = store.cmp_range_unchanged(KEYS.unit_prefix(fresh), lv.read_revision)
    assert store.txn_wire([guard], []).succeeded
    store.put(KEYS.data_key(fresh, "x"), b"written meanwhile")
    assert not store.txn_wire([guard], []).succeeded


def test_other_keys_ride_in_the_transactions_of_a_few_units(store: EtcdStore,
                                                            keys: Keys) -> None:
    """`read_live(also=...)` reads single keys (a pass's published schemas) with a few units,
    in the transactions the units need and more only when they are full, against real etcd:
    each unit as read alone, each key as `get` gives it, None for an absent one; many units
    go through the index and leave the keys to the caller (None)."""
    units = [UnitId(f"s{i:02}", "prod") for i in range(30)]  # past one transaction's room
    for i, unit in enumerate(units):
        store.put(keys.data_key(unit, "a"), encode_envelope(i, SUFFIX))
    store.put(keys.unit_record(units[0]), _record(1))
    extra = [keys.schema(f"s{i:02}") for i in range(0, 140, 3)]
    for key in extra[::2]:
        store.put(key, b'{"format": 1}')
    view = read_live(store, keys, units, also=extra)
    assert view.also is not None and set(view.also) == set(extra)
    for key in extra:
        got, now = view.also[key], store.get(key)
        assert (got.value if got else None) == (now.value if now else None)
    for unit in units:
        alone, got = read_unit(store, keys, unit), view.unit(unit)
        assert (got.keys, got.record, got.record_revision) == \
            (alone.keys, alone.record, alone.record_revision)
    assert read_live(store, keys, units[:1], also=[]).also == {}
    many = [UnitId(f"m{i:02}", "dev") for i in range(SCAN_THRESHOLD + 1)]
    assert read_live(store, keys, many, also=extra).also is None


def test_schemas_read_before_the_deploy_are_not_read_again(store: EtcdStore,
                                                           keys: Keys) -> None:
    """`publish_schemas` compares with the records the pass read with its units (`known`) and
    reads only the others: a record it was told is current is not written, whatever etcd
    holds; one that differs, or was absent, is."""
    same = SchemaRecord({"type": "object"}).to_json()
    store.put(keys.schema("told"), b"changed since, but the pass read it as current")
    store.put(keys.schema("unread"), same)
    schemas = {"told": {"type": "object"}, "new": {"type": "object"},
               "stale": {"type": "object"}, "unread": {"type": "object"}}
    told = store.get(keys.schema("told"))
    assert told is not None
    known = {keys.schema("told"): told._replace(value=same), keys.schema("new"): None,
             keys.schema("stale"): told}
    revisions = publish_schemas(store, keys, schemas, known)
    assert len(revisions) == 1
    assert store.get(keys.schema("told")).value == told.value  # type: ignore[union-attr]
    for name in ("new", "stale", "unread"):
        assert store.get(keys.schema(name)).value == same  # type: ignore[union-attr]
