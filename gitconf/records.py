"""The etcd key layout (SPEC §3) and gitconf's own records under `{prefix}/_system/`.

Every key gitconf reads or writes is built by `Keys`; every record it keeps is a frozen
dataclass here with one `to_json()` / `from_json()` pair, so nothing else in the package builds
or reads a record's JSON by string key. Each record carries `"format": 1`; readers accept a
missing format (written before records were versioned) and ignore fields they do not know, so
a newer gitconf can add fields without breaking an older reader. Documented in
docs/etcd-layout.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from json.encoder import encode_basestring
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar, cast

from .fastclass import dataclass
from .names import JSON, DeploySource, UnitId

SYSTEM = "_system"
FORMAT = 1
UNIT_RECORD_KINDS = ("units", "pending", "pins", "history", "overrides")
UnitRecordKind = Literal["units", "pending", "pins", "history", "overrides"]


def dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


_SCALARS: dict[Any, str] = {True: "true", False: "false", None: "null"}


def dumps_value(value: Any) -> str:
    """`dumps(value)`, with strings, integers, booleans and null (almost every config value)
    encoded without building a JSON encoder each time (a first apply encodes every key)."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool or value is None:
        return _SCALARS[value]
    return dumps(value)


class RecordError(ValueError):
    """A record's bytes are not the JSON object its type expects (corrupt or foreign)."""


R = TypeVar("R", bound="Record")


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


class Record:
    """Base of every `_system/` record: JSON out and back, with a format version.

    Subclasses are frozen dataclasses whose fields are JSON values, tuples (written as lists)
    or nested records. `_decode` hooks let a subclass turn nested JSON back into typed values.
    """

    _omit_none: ClassVar[tuple[str, ...]] = ()  # optional fields left out when None
    _own_dict: ClassVar[tuple[str, ...]] = ()  # fields the subclass's as_dict writes itself

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT}
        own = self._own_dict
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is None and name in self._omit_none:
                continue
            doc[name] = None if name in own else _plain(value)
        return doc

    def to_json(self) -> bytes:
        return dumps(self.as_dict()).encode("utf-8")

    @classmethod
    def from_dict(cls: type[R], doc: Mapping[str, Any]) -> R:
        known = _field_names(cls)
        kwargs = {k: v for k, v in doc.items() if k in known}
        try:
            return cls(**cls._decode(kwargs))
        except (TypeError, ValueError, KeyError) as exc:
            raise RecordError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def from_json(cls: type[R], raw: bytes | str) -> R:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"{cls.__name__}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise RecordError(f"{cls.__name__}: not a JSON object")
        return cls.from_dict(doc)

    @classmethod
    def _decode(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset):
        return sorted(value)
    return value


# -- deploys ----------------------------------------------------------------------------------


class KeyChange(NamedTuple):
    """One key of a deploy record: `old`/`new` as recorded (masked, or summarised when large).
    Added keys carry neither (their values are in Git at the deploy's commit). A named tuple,
    not a dataclass: a first deploy records one per key (100,000 and more)."""

    key: str
    old: JSON = None
    new: JSON = None

    def as_dict(self) -> dict[str, Any]:  # no format tag: it lives inside a DeployRecord
        return {"key": self.key, "old": self.old, "new": self.new}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> KeyChange:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("key"), str):
            raise RecordError(f"KeyChange: not a key entry: {str(doc)[:80]}")
        return cls(doc["key"], doc.get("old"), doc.get("new"))


def _changes(items: Iterable[Any]) -> tuple[KeyChange, ...]:
    return tuple(i if isinstance(i, KeyChange) else KeyChange.from_dict(i) for i in items)


@dataclass(frozen=True)
class DeployRecord(Record):
    """`_system/history/{svc}/{env}/{deploy}`, and `_system/pending/{svc}/{env}` while a deploy
    too large for one transaction is under way."""

    deploy: int
    service: str
    environment: str
    version: str
    commit: str
    source: DeploySource
    deployed_by: str
    deployed_at: str
    previous_commit: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    approved_by: str | None = None
    subject: str | None = None
    added: tuple[KeyChange, ...] = ()
    changed: tuple[KeyChange, ...] = ()
    deleted: tuple[KeyChange, ...] = ()
    restored_commit: str | None = None
    reverted_drift: bool = False
    lifted_pin: bool = False
    override: str | None = None  # the override id, for source `override`
    # (added, changed, deleted) when the lists hold only the first keys of a very large deploy
    totals: tuple[int, int, int] | None = None

    _omit_none: ClassVar[tuple[str, ...]] = ("restored_commit", "override", "totals")
    _own_dict: ClassVar[tuple[str, ...]] = ("added", "changed", "deleted")

    def counts(self) -> tuple[int, int, int]:
        return self.totals or (len(self.added), len(self.changed), len(self.deleted))

    @property
    def unit(self) -> UnitId:
        return UnitId(self.service, self.environment)

    def as_dict(self) -> dict[str, Any]:
        """Added keys by name, changed keys with old and new, deleted keys with old."""
        doc = super().as_dict()
        doc["added"] = [{"key": c.key} for c in self.added]
        doc["changed"] = [{"key": c.key, "old": c.old, "new": c.new} for c in self.changed]
        doc["deleted"] = [{"key": c.key, "old": c.old} for c in self.deleted]
        return doc

    @classmethod
    def _decode(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for name in ("added", "changed", "deleted"):
            if name in kwargs:
                kwargs[name] = _changes(kwargs[name])
        kwargs["deploy"] = int(kwargs["deploy"])
        if kwargs.get("totals") is not None:
            a, c, d = kwargs["totals"]
            kwargs["totals"] = (int(a), int(c), int(d))
        return kwargs


@dataclass(frozen=True)
class UnitRecord(Record):
    """`_system/units/{svc}/{env}`: the unit's last deploy. Its `mod_revision` is that deploy's
    final revision: a data key written later was written by someone else (drift)."""

    deploy: int
    commit: str
    version: str
    source: DeploySource
    deployed_at: str
    deployed_by: str
    keys: int = 0
    # every key (or group) that was ever deployed as secret: masked forever after, even once
    # the schema no longer says so (docs/security.md)
    secret_keys: tuple[str, ...] = ()
    restored_commit: str | None = None
    # keys another tool had written under the unit before its first deploy, which Git does not
    # have: left alone, never pruned
    foreign: tuple[str, ...] = ()

    _omit_none: ClassVar[tuple[str, ...]] = ("restored_commit",)

    @classmethod
    def _decode(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["deploy"] = int(kwargs["deploy"])
        kwargs["secret_keys"] = tuple(str(k) for k in kwargs.get("secret_keys", ()))
        kwargs["foreign"] = tuple(str(k) for k in kwargs.get("foreign", ()))
        return kwargs


@dataclass(frozen=True)
class Pin(Record):
    """`_system/pins/{svc}/{env}`: apply and the daemon leave the unit alone until `unpin`, or
    until a commit on top of `branch_head` changes the unit's files."""

    commit: str
    by: str
    at: str
    reason: str | None = None
    branch_head: str | None = None

    def shown(self) -> dict[str, Any]:
        """The pin as `status` shows it (SPEC §7)."""
        return {"commit": self.commit, "by": self.by, "at": self.at, "reason": self.reason}


@dataclass(frozen=True)
class LastApplied(Record):
    """`_system/last-applied`: the repository-wide last applied commit and what the next run
    must look at again (docs/etcd-layout.md, "How last-applied keeps apply incremental")."""

    commit: str
    seen: int  # every write up to this revision has been examined
    own: tuple[tuple[int, int], ...] = ()  # revision intervals of our own writes after `seen`
    unconverged: tuple[str, ...] = ()  # "svc/env" of units not equal to `commit`
    drifted: tuple[str, ...] = ()  # "svc/env" of units whose drift is left in place
    at: str | None = None

    @classmethod
    def _decode(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["seen"] = int(kwargs["seen"])
        kwargs["own"] = tuple((int(a), int(b)) for a, b in kwargs.get("own", ()))
        kwargs["unconverged"] = tuple(str(u) for u in kwargs.get("unconverged", ()))
        kwargs["drifted"] = tuple(str(u) for u in kwargs.get("drifted", ()))
        return kwargs

    def unconverged_units(self) -> set[UnitId]:
        return {unit_from_name(n) for n in self.unconverged}

    def drifted_units(self) -> set[UnitId]:
        return {unit_from_name(n) for n in self.drifted}

    def is_own(self, revision: int) -> bool:
        return any(a <= revision <= b for a, b in self.own)

    def first_foreign(self, now: int, own_write: int) -> int | None:
        """The first revision after `seen` made by someone else (None: every one since was
        ours, including `own_write`, this record's own write, and there is nothing to
        replay)."""
        r = self.seen + 1
        for a, b in sorted([*self.own, (own_write, own_write)]):
            if r > now:
                return None
            if a > r:
                return r
            r = max(r, b + 1)
        return r if r <= now else None


def unit_name(unit: UnitId) -> str:
    return f"{unit.service}/{unit.environment}"


def unit_from_name(name: str) -> UnitId:
    service, _, environment = name.partition("/")
    return UnitId(service, environment)


OverrideSource = Literal["override", "drift"]
OverrideState = Literal["open", "merged", "closed", "expired"]


@dataclass(frozen=True)
class OverrideKey(Record):
    """One key of an override: Git's value before it and the override's value, both as shown
    (masked when secret), the etcd revision of the write, and `unset` when it removed the key.
    The real value lives only in etcd; the follow-up pull request reads it from there."""

    key: str
    old: JSON = None
    new: JSON = None
    unset: bool = False
    revision: int = 0
    at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new, "unset": self.unset,
                "revision": self.revision, "at": self.at}


@dataclass(frozen=True)
class PullRequestRef(Record):
    branch: str
    number: int | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "url": self.url, "branch": self.branch}


@dataclass(frozen=True)
class OverrideRecord(Record):
    """`_system/overrides/{svc}/{env}`: the unit's open override (at most one); once closed,
    kept under `_system/overrides-closed/{svc}/{env}/{closed_at}-{id}`."""

    id: str
    service: str
    environment: str
    source: OverrideSource
    state: OverrideState
    keys: tuple[OverrideKey, ...]
    by: str
    reason: str
    created_at: str
    expires_at: str | None = None
    revision: int = 0  # of the last write the override made
    pull_request: PullRequestRef | None = None
    pr_pending: bool = False  # a pull request is still to be opened (retried by the daemon)
    pr_note: str | None = None  # why there is none yet, for `overrides list`
    closed_at: str | None = None
    closed_reason: str | None = None

    @property
    def unit(self) -> UnitId:
        return UnitId(self.service, self.environment)

    @property
    def held(self) -> frozenset[str]:
        return frozenset(k.key for k in self.keys)

    @property
    def branch(self) -> str:
        return f"gitconf/override/{self.service}/{self.environment}"

    def shown(self) -> dict[str, Any]:
        """The shape of `gitconf overrides -o json` (SPEC §5); values are already masked."""
        return {"id": self.id, "service": self.service, "environment": self.environment,
                "source": self.source, "state": self.state,
                "keys": [{"key": k.key, "old": k.old, "new": k.new} for k in self.keys],
                "by": self.by, "reason": self.reason, "created_at": self.created_at,
                "expires_at": self.expires_at,
                "pull_request": self.pull_request.as_dict() if self.pull_request else None,
                "pr_pending": self.pr_pending, "closed_at": self.closed_at,
                "closed_reason": self.closed_reason}

    @classmethod
    def _decode(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["keys"] = tuple(OverrideKey.from_dict(k) for k in kwargs.get("keys", ()))
        pr = kwargs.get("pull_request")
        kwargs["pull_request"] = PullRequestRef.from_dict(pr) if isinstance(pr, dict) else None
        return kwargs


@dataclass(frozen=True)
class LeaderRecord(Record):
    """`_system/leader`, attached to the leader's lease."""

    identity: str
    since: float


@dataclass(frozen=True)
class TriggerRecord(Record):
    """`_system/trigger`: a webhook delivery relayed to the leader by whichever replica got it.
    `kind` is `push` (reconcile now) or `pull_request` (an override's PR changed state)."""

    after: str
    at: float
    by: str
    kind: str = "push"
    number: int | None = None
    delivery: str | None = None


@dataclass(frozen=True)
class SchemaRecord:
    """`_system/schemas/{service}`: the compiled JSON Schema as clients read it (no envelope,
    no format tag: the document is a JSON Schema and `$schema` says its version)."""

    schema: Mapping[str, Any]

    def to_json(self) -> bytes:
        return dumps(self.schema).encode("utf-8")


# -- keys -------------------------------------------------------------------------------------


class Keys:
    """Key builders for one prefix (default `/config`)."""

    def __init__(self, prefix: str = "/config"):
        stripped = prefix.strip("/")
        self.prefix = "/" + stripped if stripped else ""
        self.root = self.prefix + "/"
        self.system = f"{self.root}{SYSTEM}/"
        self.root_b = self.root.encode()
        self.system_b = self.system.encode()

    # -- data -------------------------------------------------------------------------------
    def unit_prefix(self, unit: UnitId) -> bytes:
        return f"{self.root}{unit.service}/{unit.environment}/".encode()

    def data_key(self, unit: UnitId, key: str) -> bytes:
        return f"{self.root}{unit.service}/{unit.environment}/{key}".encode()

    def parse_data_key(self, raw: bytes) -> tuple[UnitId, str] | None:
        """`/config/svc/env/key` -> (unit, key); None for `_system/` and foreign keys."""
        if not raw.startswith(self.root_b) or raw.startswith(self.system_b):
            return None
        parts = raw[len(self.root_b):].decode("utf-8", "replace").split("/", 2)
        if len(parts) != 3 or not all(parts):
            return None
        return UnitId(parts[0], parts[1]), parts[2]

    # -- records ----------------------------------------------------------------------------
    def unit_kind(self, kind: UnitRecordKind, unit: UnitId) -> bytes:
        return f"{self.system}{kind}/{unit.service}/{unit.environment}".encode()

    def unit_record(self, unit: UnitId) -> bytes:
        return self.unit_kind("units", unit)

    def pending(self, unit: UnitId) -> bytes:
        return self.unit_kind("pending", unit)

    def pin(self, unit: UnitId) -> bytes:
        return self.unit_kind("pins", unit)

    def override(self, unit: UnitId) -> bytes:
        return self.unit_kind("overrides", unit)

    def closed_override(self, unit: UnitId, closed_at: str, override_id: str) -> bytes:
        return (f"{self.system}overrides-closed/{unit.service}/{unit.environment}/"
                f"{closed_at}-{override_id}").encode()

    def history_prefix(self, unit: UnitId) -> bytes:
        return self.unit_kind("history", unit) + b"/"

    def history(self, unit: UnitId, deploy: int) -> bytes:
        return self.history_prefix(unit) + f"{deploy:010d}".encode()

    def kind_prefix(self, kind: str) -> bytes:
        return f"{self.system}{kind}/".encode()

    def parse_unit_record_key(self, raw: bytes) -> tuple[UnitRecordKind, UnitId] | None:
        """`_system/{kind}/svc/env[/...]` -> (kind, unit) for the per-unit record kinds."""
        if not raw.startswith(self.system_b):
            return None
        parts = raw[len(self.system_b):].decode("utf-8", "replace").split("/")
        if len(parts) >= 3 and parts[0] in UNIT_RECORD_KINDS:
            return cast(UnitRecordKind, parts[0]), UnitId(parts[1], parts[2])
        return None

    def schema(self, service: str) -> bytes:
        return f"{self.system}schemas/{service}".encode()

    @property
    def last_applied(self) -> bytes:
        return f"{self.system}last-applied".encode()

    @property
    def leader(self) -> bytes:
        return f"{self.system}leader".encode()

    @property
    def trigger(self) -> bytes:
        return f"{self.system}trigger".encode()

    @property
    def deliveries(self) -> bytes:
        return f"{self.system}deliveries/".encode()


# -- envelopes (the runtime contract, SPEC §3) ------------------------------------------------


@dataclass(frozen=True)
class EnvelopeMeta:
    """The `metadata` of every envelope one deploy writes to a unit."""

    git_commit: str
    created_by: str | None
    created_at: str | None
    approved_by: str | None
    deployed_at: str
    deployed_by: str
    deploy: int
    source: DeploySource

    def suffix(self, version: str) -> str:
        """Everything after the value: identical for every key one deploy writes to a unit, so
        it is serialised once and each envelope costs one `json.dumps` of its value."""
        meta = {name: getattr(self, name) for name in _field_names(EnvelopeMeta)}
        return f',"version":{dumps(version)},"metadata":{dumps(meta)}}}'


def encode_envelope(value: JSON, suffix: str) -> bytes:
    return ('{"value":' + dumps_value(value) + suffix).encode("utf-8")


def envelope_from_json(value_json: str, suffix: str) -> bytes:
    """The same envelope from the value's JSON text (the loader encodes values once)."""
    return ('{"value":' + value_json + suffix).encode("utf-8")


def decode_envelope(raw: bytes) -> dict[str, Any] | None:
    """The envelope, or None when the bytes are not one (a foreign write)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and "value" in doc and isinstance(doc.get("metadata"), dict):
        return doc
    return None
