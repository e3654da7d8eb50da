"""`records.py`: every `_system/` record goes to JSON and back unchanged, carries its format
version, tolerates fields it does not know, and refuses what is not a record."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitconf.model import UnitId
from gitconf.records import (
    FORMAT,
    DeployRecord,
    EnvelopeMeta,
    KeyChange,
    Keys,
    LastApplied,
    LeaderRecord,
    Pin,
    RecordError,
    TriggerRecord,
    UnitRecord,
    decode_envelope,
    encode_envelope,
)

text = st.text(min_size=1, max_size=12)
json_scalar = st.none() | st.booleans() | st.integers(-10**6, 10**6) | text
# what a deploy records: added keys by name, changed keys with both values, deleted with old
added = st.builds(KeyChange, text, st.none(), st.none())
changed = st.builds(KeyChange, text, json_scalar, json_scalar)
deleted = st.builds(KeyChange, text, json_scalar, st.none())
deploy_record = st.builds(
    DeployRecord, st.integers(1, 10**6), text, text, text, text,
    st.sampled_from(["git", "rollback", "override"]), text, text,
    previous_commit=st.none() | text, added=st.lists(added, max_size=3).map(tuple),
    changed=st.lists(changed, max_size=3).map(tuple),
    deleted=st.lists(deleted, max_size=3).map(tuple), restored_commit=st.none() | text,
    reverted_drift=st.booleans(), override=st.none() | text)


@given(deploy_record)
def test_deploy_record_round_trips(record: DeployRecord) -> None:
    assert DeployRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("record", [
    UnitRecord(3, "a" * 40, "v1.2.0", "rollback", "2025-01-01T00:00:00Z", "me", 12,
               ("db.password",), restored_commit="b" * 40),
    Pin("c" * 40, "alice", "2025-01-01T00:00:00Z", "incident 42", "d" * 40),
    LastApplied("e" * 40, 17, ((18, 20), (25, 25)), ("pay/prod",), ("cart/dev",), "2025"),
    LeaderRecord("host:1:abc", 1.5),
    TriggerRecord("f" * 40, 2.0, "host:2:def", "pull_request", 7, "delivery-1"),
])
def test_records_round_trip_with_their_format(record: object) -> None:
    cls = type(record)
    raw = record.to_json()  # type: ignore[attr-defined]
    assert json.loads(raw)["format"] == FORMAT
    assert cls.from_json(raw) == record  # type: ignore[attr-defined]


def test_unknown_fields_are_ignored_and_missing_format_is_accepted() -> None:
    doc = {"commit": "c", "by": "me", "at": "now", "reason": None, "from_the_future": [1]}
    assert Pin.from_json(json.dumps(doc)) == Pin("c", "me", "now")


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"by": "me"}', b'{"deploy": "x"}',
                                 b"\xff\xfe"])
def test_what_is_not_a_record_is_refused_with_a_typed_error(raw: bytes) -> None:
    with pytest.raises(RecordError):
        UnitRecord.from_json(raw)


def test_optional_fields_are_omitted_when_empty() -> None:
    record = UnitRecord(1, "c", "v", "git", "t", "me")
    assert "restored_commit" not in json.loads(record.to_json())


@pytest.mark.parametrize(("seen", "own", "own_write", "now", "first"), [
    (10, ((11, 20),), 21, 21, None),  # every revision since was ours: nothing to replay
    (10, ((11, 20),), 22, 22, 21),  # someone wrote at 21
    (10, (), 11, 15, 12),
    (10, ((12, 14),), 15, 15, 11),
    (10, ((11, 12), (14, 15)), 16, 17, 13),
])
def test_first_foreign_revision(seen: int, own: tuple[tuple[int, int], ...], own_write: int,
                                now: int, first: int | None) -> None:
    assert LastApplied("c", seen, own).first_foreign(now, own_write) == first


def test_envelope_is_the_runtime_contract() -> None:
    meta = EnvelopeMeta("a" * 40, "dev@x.io", "2025-01-15T10:30:00Z", None,
                        "2025-01-15T10:31:00Z", "ci", 7, "git")
    raw = encode_envelope({"n": 50}, meta.suffix("v1.2.3"))
    doc = decode_envelope(raw)
    assert doc == {"value": {"n": 50}, "version": "v1.2.3", "metadata": {
        "git_commit": "a" * 40, "created_by": "dev@x.io", "created_at": "2025-01-15T10:30:00Z",
        "approved_by": None, "deployed_at": "2025-01-15T10:31:00Z", "deployed_by": "ci",
        "deploy": 7, "source": "git"}}
    assert decode_envelope(b'{"value": 1}') is None  # no metadata: a foreign write
    assert decode_envelope(b"plain text") is None


def test_keys_layout() -> None:
    keys, unit = Keys("/config/"), UnitId("pay", "prod")
    assert keys.data_key(unit, "db.pool") == b"/config/pay/prod/db.pool"
    assert keys.parse_data_key(b"/config/pay/prod/db.pool") == (unit, "db.pool")
    assert keys.parse_data_key(b"/config/_system/units/pay/prod") is None
    assert keys.history(unit, 7) == b"/config/_system/history/pay/prod/0000000007"
    assert keys.parse_unit_record_key(keys.pin(unit)) == ("pins", unit)
    assert keys.parse_unit_record_key(keys.override(unit)) == ("overrides", unit)
    assert Keys("").data_key(unit, "k") == b"/pay/prod/k"
