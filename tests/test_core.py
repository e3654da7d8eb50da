"""Focused, table-driven tests of the pure core: merge, JSON equality, planning, compact
schemas, revision bookkeeping, path-to-unit mapping, and the hand-written wire encoding."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pyetcd import etcdrpc

from gitconf.etcdstore import EtcdStore, wire_delete, wire_put, wire_txn
from gitconf.masking import Masker, shown_change
from gitconf.model import LiveKey, LiveUnit, Position, UnitId
from gitconf.plan import NOT_ENVELOPE, PlanOptions, json_equal, plan, plan_unit
from gitconf.records import LastApplied, Pin, UnitRecord
from gitconf.repo_format import Values, merge_base, units_touched
from gitconf.schema import compile_compact, is_compact

P = Position("f", 1, 1)


def values(d: dict) -> Values:
    return Values(dict(d), {k: P for k in d}, [])


@pytest.mark.parametrize(("base", "env", "merged"), [
    ({"a": 1, "b": 2}, {"b": 3}, {"a": 1, "b": 3}),
    ({"db.host": "x", "db.port": 1}, {"db.port": 2}, {"db.host": "x", "db.port": 2}),
    ({"db.host": "x"}, {"db": 5}, {"db": 5}),  # a value replaces a whole group
    ({"db": 5}, {"db.host": "x"}, {"db.host": "x"}),  # a group replaces a value
    ({"list": [1, 2]}, {"list": [3]}, {"list": [3]}),  # sequences are replaced whole
    ({"q.a": 1}, {"q": {}}, {"q.a": 1}),  # an empty mapping keeps the base's keys
    ({"q": {}}, {"q.a": 1}, {"q.a": 1}),
    ({}, {"x": None}, {"x": None}),
])
def test_merge_base(base: dict, env: dict, merged: dict) -> None:
    assert merge_base(values(base), values(env))[0] == merged


@pytest.mark.parametrize(("a", "b", "equal"), [
    (1, 1, True), (1, 1.0, False), (1, True, False), (0, False, False), (None, None, True),
    ("1", 1, False), ([1, {"a": 2}], [1, {"a": 2}], True), ([1, True], [1, 1], False),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True), ({}, [], False),
])
def test_json_equality(a: object, b: object, equal: bool) -> None:
    assert json_equal(a, b) is equal


def live(**keys: object) -> LiveUnit:
    """A unit gitconf deployed before (it has a unit record, so its extra keys are pruned)."""
    u = UnitId("s", "e")
    return LiveUnit(u, {k: LiveKey(v, b"", 5, None) for k, v in keys.items()},
                    UnitRecord(1, "c" * 40, "v1", "git", "2025-01-01T00:00:00Z", "me", len(keys)))


def test_plan_unit_adds_changes_deletes_and_prune() -> None:
    from gitconf.model import DesiredUnit

    u = UnitId("s", "e")
    d = DesiredUnit(u, {"a": 1, "b": 2, "c": [1]}, {}, ("f",), frozenset({"b"}))
    changes = plan_unit(u, d, live(a=1, b=3, z=0))
    assert [(c.key, c.op, c.old, c.new, c.secret) for c in changes] == [
        ("b", "change", 3, 2, True), ("c", "add", None, [1], False),
        ("z", "delete", 0, None, False)]
    assert [c.key for c in plan_unit(u, d, live(a=1, b=3, z=0), prune=False)] == ["b", "c"]


def test_plan_skips_pins_fails_invalid_and_treats_foreign_bytes_as_change() -> None:
    from gitconf.model import DesiredUnit, Problem

    u1, u2, u3 = UnitId("a", "e"), UnitId("b", "e"), UnitId("c", "e")
    bad = DesiredUnit(u2, {}, {}, ("f",), problems=[Problem("b/e.yaml", 2, 3, "x", "broken")])
    pinned = live(x=1)
    pinned.unit, pinned.pin = u1, Pin("c" * 40, "me", "2025-01-01T00:00:00Z", "incident")
    foreign = LiveUnit(u3, {"x": LiveKey(NOT_ENVELOPE, b"raw", 7, None)})
    ok = DesiredUnit(u3, {"x": "raw"}, {}, ("f",))
    result = plan([u1, u2, u3], {u1: ok, u2: bad, u3: ok}, {u1: pinned, u3: foreign})
    assert result.skipped[0][0] == u1 and "incident" in result.skipped[0][1]
    assert result.failed == [(u2, "invalid: b/e.yaml:2:3 x: broken")]
    (up,) = result.units
    assert up.unit == u3 and up.changes[0].old == "raw" and up.changes[0].op == "change"
    lifted = plan([u1], {u1: ok}, {u1: pinned}, PlanOptions(lifted_pins={u1}))
    assert [x.unit for x in lifted.units] == [u1]


def test_compact_schema_compiles_to_draft_2020_12() -> None:
    doc = {"db": {"pool": {"type": "integer", "min": 1, "max": 9, "default": 3},
                  "host": {"type": "string", "min": 1, "required": True}},
           "token": {"type": "string", "secret": True}, "tags": {"type": "array", "max": 2}}
    assert is_compact(doc) and not is_compact({"type": "object"})
    out = compile_compact(doc)
    assert out["$schema"].endswith("2020-12/schema")
    assert out["required"] == ["db"]
    db = out["properties"]["db"]
    assert db["required"] == ["host"]
    assert db["properties"]["pool"] == {"type": "integer", "minimum": 1, "maximum": 9,
                                        "default": 3}
    assert db["properties"]["host"]["minLength"] == 1
    assert out["properties"]["token"]["writeOnly"] is True
    assert out["properties"]["tags"]["maxItems"] == 2
    assert Masker(frozenset({"db"})).is_secret("db.password")
    assert not Masker(frozenset({"d"})).is_secret("db")


@pytest.mark.parametrize(("seen", "own", "record", "now", "first"), [
    (10, [[11, 20]], 21, 21, None),  # every revision since was ours: nothing to replay
    (10, [[11, 20]], 22, 22, 21),  # someone wrote at 21
    (10, [], 11, 15, 12),
    (10, [[12, 14]], 15, 15, 11),
    (10, [[11, 12], [14, 15]], 16, 17, 13),
    (10, [], 0, 10, None),
])
def test_first_foreign_revision(seen: int, own: list, record: int, now: int,
                                first: int | None) -> None:
    last = LastApplied("c", seen, tuple((a, b) for a, b in own))
    assert last.first_foreign(now, record) == first


def test_changed_paths_map_to_units() -> None:
    envs = {"pay": ["dev", "prod"], "cart": ["prod"]}
    paths = ["pay/_base.yaml", "cart/prod.yml", "README.md", "schemas/x.json", "_old/dev.yaml",
             "cart/schema.json", "docs/a/b.yaml"]
    assert units_touched(paths, lambda s: envs.get(s, [])) == {
        UnitId("pay", "dev"), UnitId("pay", "prod"), UnitId("cart", "prod")}


@pytest.mark.parametrize(("key", "value", "lease"), [
    (b"/config/a/b/c", b'{"value":1}', 0),
    (b"/k", b"x" * 300, 0),  # multi-byte length varint
    (b"/k" * 100, b"\x00\xff" * 40_000, 7049155963993011212),  # large value, 64-bit lease
])
def test_wire_encoding_matches_protobuf(key: bytes, value: bytes, lease: int) -> None:
    assert wire_put(key, value, lease) == etcdrpc.RequestOp(
        request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease)).SerializeToString()
    assert wire_delete(key) == etcdrpc.RequestOp(
        request_delete_range=etcdrpc.DeleteRangeRequest(key=key)).SerializeToString()
    cmps = [EtcdStore.cmp_mod(key, 42), EtcdStore.cmp_range_unchanged(b"/config/a/", 9)]
    ops = [wire_put(key, value), wire_delete(key)]
    expected = etcdrpc.TxnRequest(compare=cmps, success=[
        etcdrpc.RequestOp.FromString(op) for op in ops]).SerializeToString()
    assert wire_txn(cmps, ops) == expected


def test_pure_core_imports_no_io_library() -> None:
    """model, safeyaml, repo_format, schema, plan and records stay free of etcd, git
    subprocesses, the CLI and the terminal (ARCHITECTURE.md)."""
    code = ("import sys; import gitconf.model, gitconf.safeyaml, gitconf.repo_format, "
            "gitconf.schema, gitconf.plan, gitconf.records; "
            "print(sorted(m for m in ('pyetcd', 'grpc', 'typer', 'rich', 'subprocess') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_secret_leaving_git_stays_masked() -> None:
    """The schema that marked it is gone with it; the unit record remembers (also by prefix)."""
    from gitconf.model import DesiredUnit

    u = UnitId("s", "e")
    lv = live(**{"db.password": "hunter2", "creds.token": "t0k", "plain": 1})
    lv.record = UnitRecord(1, "c" * 40, "v1", "git", "2025-01-01T00:00:00Z", "me", 3,
                           ("db.password", "creds"))
    changes = plan_unit(u, DesiredUnit(u, {}, {}, ("f",)), lv)
    shown = {c.key: shown_change(c).old for c in changes}
    assert shown == {"creds.token": "***", "db.password": "***", "plain": 1}
