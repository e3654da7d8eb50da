"""Plain data shared by every layer: what Git wants, what etcd has, and the plan between them.

Everything here is a value: no I/O, no clients. Loading produces a `DesiredState`,
reading etcd produces a `LiveState`, and `plan.plan()` turns the two into a `Plan`.
"""

from __future__ import annotations

import enum
from dataclasses import field
from typing import Any, Literal, NamedTuple

from .fastclass import dataclass
from .names import (  # noqa: F401  (re-exported: the shared names, where callers look)
    JSON,
    ChangeOp,
    DeploySource,
    DriftPolicy,
    UnitId,
    UnitState,
    Verdict,
)
from .records import DeployRecord, OverrideRecord, Pin, UnitRecord


class Unset(enum.Enum):
    """Type of the `UNSET` sentinel (an enum so that type checkers can narrow on it): "remove
    this key", for a file edit (`yamledit.apply_edits`) and an override alike."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset.UNSET


class Position(NamedTuple):
    """Where something was written: a repo-relative file (with `/`), 1-based line and column."""

    file: str
    line: int
    column: int


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the repository; collected and reported together, never raised."""

    file: str
    line: int
    column: int
    code: str
    message: str
    key: str | None = None
    severity: Literal["error", "warning"] = "error"
    secret: bool = False  # the key holds a secret: renderers must not quote its source line

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "code": self.code,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass
class DesiredUnit:
    """A unit as Git describes it at one commit (or in a working tree)."""

    unit: UnitId
    values: dict[str, JSON]
    positions: dict[str, Position]
    files: tuple[str, ...]
    secret_keys: frozenset[str] = frozenset()
    problems: list[Problem] = field(default_factory=list)
    encoded: dict[str, str] = field(default_factory=dict)  # key -> the value as compact JSON

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


@dataclass
class DesiredState:
    """Everything one load of the repository produced."""

    units: dict[UnitId, DesiredUnit]
    schemas: dict[str, dict[str, Any]]  # service -> compiled JSON Schema (Draft 2020-12)
    problems: list[Problem]  # every problem, including the units' own
    files: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> int:
        return sum(len(u.values) for u in self.units.values())


@dataclass(frozen=True)
class LiveKey:
    """One envelope as etcd holds it; `mod_revision` guards the write that replaces it."""

    value: JSON  # plan.NOT_ENVELOPE when the stored bytes are not a gitconf envelope
    raw: bytes  # the stored bytes, kept only when they are not an envelope
    mod_revision: int
    envelope: dict[str, Any] | None  # the whole envelope, when the reader asked for it


@dataclass
class LiveUnit:
    """A unit as etcd holds it, with the revisions every guarded write compares against."""

    unit: UnitId
    keys: dict[str, LiveKey]
    record: UnitRecord | None = None  # _system unit record
    record_revision: int = 0
    pending: DeployRecord | None = None  # an interrupted multi-transaction deploy
    pending_revision: int = 0
    pin: Pin | None = None
    read_revision: int = 0  # the etcd revision this view was read at (0: unknown)
    override: OverrideRecord | None = None  # the unit's open override
    override_revision: int = 0

    @property
    def tracked(self) -> bool:
        """gitconf has deployed this unit (keys under a unit no deploy of ours wrote are not
        ours: they are never pruned)."""
        return self.record is not None or self.pending is not None


@dataclass
class LiveState:
    units: dict[UnitId, LiveUnit]
    revision: int = 0


class Change(NamedTuple):
    key: str
    op: ChangeOp
    old: JSON
    new: JSON
    secret: bool = False


@dataclass
class UnitPlan:
    """What plan() decided for one unit: its verdict, the changes that converge it, and, for a
    unit left alone, the one-line reason the renderers show."""

    unit: UnitId
    changes: list[Change]
    desired: DesiredUnit | None
    live: LiveUnit
    verdict: Verdict = "changes"
    reason: str | None = None
    held: tuple[str, ...] = ()  # keys left alone because an open override holds them
    drift: bool = False  # the changes undo someone else's writes to a unit Git did not change
    kept: tuple[str, ...] = ()  # keys another tool wrote before gitconf: never pruned

    @property
    def writes(self) -> bool:
        """The deployer has something to do: changes, or an interrupted deploy to finish."""
        return self.verdict == "changes" and (bool(self.changes) or self.live.pending is not None)


@dataclass
class Plan:
    units: list[UnitPlan]
    skipped: list[tuple[UnitId, str]] = field(default_factory=list)
    failed: list[tuple[UnitId, str]] = field(default_factory=list)
