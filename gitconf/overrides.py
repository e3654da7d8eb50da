"""Emergency overrides and adopted drift (SPEC §5): the records, and the guarded writes that
open, extend and close them.

An override is a unit's keys changed in etcd now, with provenance `source: override`, held
against apply and the daemon until Git catches up (merged), its pull request is closed or it
is cancelled (closed), or its TTL passes (expired). A unit has at most one open override; a
second one adds its keys. Every write is one guarded transaction: the data keys, the override
record, a history record (a deploy with source `override`) and the unit record move together,
so a racing writer is never overwritten and the unit record's revision keeps telling gitconf's
writes from everyone else's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from .actor import now_iso
from .errors import CheckFailed, UsageError
from .fastclass import dataclass
from .livestate import read_unit
from .masking import Masker
from .model import JSON, UNSET, Change, LiveUnit, UnitId, Unset  # UNSET: "remove this key"
from .plan import NOT_ENVELOPE, json_equal, shown_live
from .records import (
    DeployRecord,
    EnvelopeMeta,
    KeyChange,
    Keys,
    OverrideKey,
    OverrideRecord,
    OverrideSource,
    OverrideState,
    PullRequestRef,
    RecordError,
    encode_envelope,
)
from .store import Store

_ATTEMPTS = 5
_TTL = re.compile(r"^\s*(\d+)\s*(m|h|d|w)\s*$")
_TTL_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_id() -> str:
    return "ovr-" + uuid.uuid4().hex[:10]


def parse_ttl(text: str) -> timedelta:
    """`30m`, `4h`, `2d`, `1w`: an override's time to live."""
    m = _TTL.match(text)
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"--ttl {text!r} is not a duration (30m, 4h, 2d, 1w)")
    return timedelta(seconds=int(m.group(1)) * _TTL_UNITS[m.group(2)])


def parse_value(text: str) -> JSON:
    """VALUE as one YAML flow value (`42`, `true`, `"text"`, `[1, 2]`, `{a: 1}`), read with the
    same safe loader as the repository (no tags, no duplicate keys)."""
    from . import safeyaml

    loaded = safeyaml.load(text, "VALUE")
    if loaded.problems:
        p = loaded.problems[0]
        raise UsageError(f"VALUE is not one YAML value: {p.message} (column {p.column})")
    if "\n" in text.strip() and not text.strip().startswith(("[", "{", '"', "'")):
        raise UsageError("VALUE is one YAML flow value, on one line")
    return loaded.data


def read_value(live_key: Any) -> JSON:
    """A live value as an override records it: a foreign non-envelope write is read as JSON,
    else as a string (SPEC §5)."""
    if live_key.value is not NOT_ENVELOPE:
        return live_key.value
    text = shown_live(live_key)
    try:
        import json

        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class KeyEdit:
    """One key an override sets (or removes, when `value is UNSET`)."""

    key: str
    value: JSON | Unset

    @property
    def unset(self) -> bool:
        return self.value is UNSET


@dataclass
class Actor:
    who: str
    reason: str
    source: OverrideSource = "override"
    expires_at: str | None = None


def expires(ttl: timedelta | None) -> str | None:
    if ttl is None:
        return None
    return (datetime.now(timezone.utc) + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_expired(record: OverrideRecord, now: str | None = None) -> bool:
    return record.expires_at is not None and (now or now_iso()) >= record.expires_at


# -- opening and extending ----------------------------------------------------------------------


def write_override(store: Store, keys: Keys, unit: UnitId, edits: list[KeyEdit],
                   git_values: Mapping[str, JSON], masker: Masker, actor: Actor,
                   write_values: bool = True) -> OverrideRecord:
    """Open the unit's override, or add `edits` to the one that is open, in one guarded
    transaction; re-read and retry when someone wrote in between (two terminals racing both
    stand, in one override). With `write_values` false the keys are already as wanted in etcd
    (drift being adopted): only the records are written, guarded by the keys' revisions."""
    for _ in range(_ATTEMPTS):
        live = read_unit(store, keys, unit)
        if live.record is None:
            raise CheckFailed(f"{unit} has never been deployed: apply it before overriding it")
        if not write_values and _moved(live, edits):
            raise CheckFailed(f"{unit}: the drifted keys changed again; next pass")
        record, compares, ops = _override_txn(store, keys, live, edits, git_values, masker,
                                              actor, write_values)
        res = store.txn(compares, ops)
        if res.succeeded:
            # the revision of a write is known only once it is made: recorded right after
            # (the override key alone; the data keys and the unit record are not touched)
            written = replace(record, revision=res.revision, keys=tuple(
                replace(k, revision=res.revision) if k.revision == 0 else k
                for k in record.keys))
            stored = update_record(store, keys, unit, record.id,
                                   {"revision": written.revision, "keys": written.keys})
            return stored or written
    raise CheckFailed(f"{unit}: concurrent writes kept changing the unit; nothing was written "
                      f"after {_ATTEMPTS} attempts")


def _moved(live: LiveUnit, edits: list[KeyEdit]) -> bool:
    for e in edits:
        current = live.keys.get(e.key)
        if e.unset != (current is None):
            return True
        if current is not None and not json_equal(read_value(current), e.value):
            return True
    return False


def _override_txn(store: Store, keys: Keys, live: LiveUnit, edits: list[KeyEdit],
                  git_values: Mapping[str, JSON], masker: Masker, actor: Actor,
                  write_values: bool) -> tuple[OverrideRecord, list[Any], list[Any]]:
    unit, unit_record = live.unit, live.record
    assert unit_record is not None
    now = now_iso()
    deploy = unit_record.deploy + 1
    record = _merged_record(live.override, unit, edits, git_values, masker, actor, now)
    compares = [store.cmp_mod(keys.override(unit), live.override_revision),
                store.cmp_mod(keys.unit_record(unit), live.record_revision),
                store.cmp_mod(keys.history(unit, deploy), 0)]
    ops: list[Any] = []
    meta = EnvelopeMeta(unit_record.commit, actor.who, now, None, now, actor.who, deploy,
                        "override")
    suffix = meta.suffix(f"override-{record.id}")
    for e in edits:
        current = live.keys.get(e.key)
        compares.append(store.cmp_mod(keys.data_key(unit, e.key),
                                      current.mod_revision if current else 0))
        if not write_values:
            continue
        if e.unset:
            ops.append(store.op_delete(keys.data_key(unit, e.key)))
        else:
            ops.append(store.op_put(keys.data_key(unit, e.key), encode_envelope(e.value, suffix)))
    changes = [_change(live, e, masker) for e in edits]
    history = DeployRecord(
        deploy, unit.service, unit.environment, f"override-{record.id}", unit_record.commit,
        "override", actor.who, now, previous_commit=unit_record.commit, created_by=actor.who,
        created_at=now, subject=f"{actor.source}: {actor.reason}",
        added=tuple(KeyChange(c.key) for c in changes if c.op == "add"),
        changed=tuple(KeyChange(c.key, c.old, c.new) for c in changes if c.op == "change"),
        deleted=tuple(KeyChange(c.key, c.old) for c in changes if c.op == "delete"),
        override=record.id)
    n_keys = len(live.keys) + sum(c.op == "add" for c in changes) - \
        sum(c.op == "delete" for c in changes)
    if not write_values:
        n_keys = len(live.keys)
    new_unit = replace(unit_record, deploy=deploy, source="override", deployed_at=now,
                       deployed_by=actor.who, keys=n_keys)
    ops += [store.op_put(keys.override(unit), record.to_json()),
            store.op_put(keys.history(unit, deploy), history.to_json()),
            store.op_put(keys.unit_record(unit), new_unit.to_json())]
    return record, compares, ops


def _change(live: LiveUnit, e: KeyEdit, masker: Masker) -> Change:
    current = live.keys.get(e.key)
    old = read_value(current) if current is not None else None
    if e.unset:
        return masker.change(Change(e.key, "delete", old, None))
    if current is None:
        return masker.change(Change(e.key, "add", None, e.value))
    return masker.change(Change(e.key, "change", old, e.value))


def _merged_record(open_: OverrideRecord | None, unit: UnitId, edits: list[KeyEdit],
                   git_values: Mapping[str, JSON], masker: Masker, actor: Actor,
                   now: str) -> OverrideRecord:
    new_keys = {e.key: OverrideKey(e.key, masker.value(e.key, git_values.get(e.key)),
                                   None if e.unset else masker.value(e.key, e.value),
                                   e.unset, 0, now) for e in edits}
    if open_ is None:
        return OverrideRecord(new_id(), unit.service, unit.environment, actor.source, "open",
                              tuple(sorted(new_keys.values(), key=lambda k: k.key)), actor.who,
                              actor.reason, now, actor.expires_at)
    merged = {k.key: k for k in open_.keys}
    for key, item in new_keys.items():
        first = merged.get(key)
        # Git's value before the override stays the one first recorded
        merged[key] = replace(item, old=first.old) if first is not None else item
    reason = open_.reason if actor.reason in open_.reason else f"{open_.reason}; {actor.reason}"
    expires_at = max(filter(None, (open_.expires_at, actor.expires_at)), default=None)
    return replace(open_, keys=tuple(sorted(merged.values(), key=lambda k: k.key)),
                   reason=reason, expires_at=expires_at)


# -- the pull request and closing -----------------------------------------------------------------


def update_record(store: Store, keys: Keys, unit: UnitId, override_id: str,
                  changes: Mapping[str, Any]) -> OverrideRecord | None:
    """Change fields of the unit's open override (its pull request, say), guarded; None when
    that override is no longer open."""
    for _ in range(_ATTEMPTS):
        kv = store.get(keys.override(unit))
        if kv is None:
            return None
        try:
            current = OverrideRecord.from_json(kv.value)
        except RecordError:
            return None
        if current.id != override_id:
            return None
        updated = replace(current, **changes)
        res = store.txn([store.cmp_mod(keys.override(unit), kv.mod_revision)],
                        [store.op_put(keys.override(unit), updated.to_json())])
        if res.succeeded:
            return updated
    return None


def set_pull_request(store: Store, keys: Keys, record: OverrideRecord,
                     pr: PullRequestRef | None, pending: bool, note: str | None,
                     ) -> OverrideRecord | None:
    return update_record(store, keys, record.unit, record.id,
                         {"pull_request": pr, "pr_pending": pending, "pr_note": note})


def close_override(store: Store, keys: Keys, record: OverrideRecord, revision: int,
                   state: OverrideState, reason: str) -> tuple[OverrideRecord, int] | None:
    """Close the open override (guarded by the revision it was read at) and keep it under
    `overrides-closed/`; None when someone changed it first (the next pass decides again).
    Returns the closed record and the revision of the write."""
    now = now_iso()
    closed = replace(record, state=state, closed_at=now, closed_reason=reason, pr_pending=False)
    res = store.txn([store.cmp_mod(keys.override(record.unit), revision)],
                    [store.op_delete(keys.override(record.unit)),
                     store.op_put(keys.closed_override(record.unit, now, record.id),
                                  closed.to_json())])
    return (closed, res.revision) if res.succeeded else None


def list_overrides(store: Store, keys: Keys, include_closed: bool = False,
                   ) -> list[OverrideRecord]:
    """Open overrides (and with `include_closed`, closed ones too), by unit, newest last."""
    kinds = ["overrides"] + (["overrides-closed"] if include_closed else [])
    out: list[OverrideRecord] = []
    for kind in kinds:
        kvs, _ = store.scan(keys.kind_prefix(kind))
        for kv in kvs:
            try:
                out.append(OverrideRecord.from_json(kv.value))
            except RecordError:
                continue
    out.sort(key=lambda r: (r.service, r.environment, r.created_at))
    return out


def values_with(base: Mapping[str, JSON], edits: Iterable[KeyEdit]) -> dict[str, JSON]:
    """A unit's values with edits applied: what the schema must accept, and what the edited
    file must flatten to."""
    out = dict(base)
    for e in edits:
        if e.unset:
            out.pop(e.key, None)
        else:
            out[e.key] = e.value
    return out


def held_edits(live: LiveUnit) -> list[KeyEdit]:
    """The open override's keys with the values etcd holds now."""
    if live.override is None:
        return []
    edits = []
    for k in live.override.keys:
        current = live.keys.get(k.key)
        edits.append(KeyEdit(k.key, UNSET if current is None else read_value(current)))
    return edits
