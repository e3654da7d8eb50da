"""Incremental selection (SPEC §4): which units a pass must look at, from what changed since
the last applied commit.

The units looked at are those whose files changed since the last applied commit, those left
unconverged by earlier runs, and those whose keys someone else wrote or deleted since gitconf
last looked. When every revision since then is one of gitconf's own transactions nothing is
read at all; otherwise etcd's history of those revisions is replayed with a watch (puts and
deletes alike); when that history has been compacted away, the pass looks at every unit. The
cost therefore follows what changed, not the repository's size. docs/etcd-layout.md tells the
whole story of `_system/last-applied`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from typing import Any, NamedTuple

from .errors import GitconfError
from .fastclass import dataclass
from .gitsource import GitSource
from .model import UnitId
from .records import Keys, LastApplied, RecordError, unit_name
from .repo_format import Layout, affects_everything, units_touched
from .store import Compare, KeyEvent, Store, Witness

MAX_OWN_INTERVALS = 512
# A no-op pass writes nothing; but in an etcd other applications write to, the revisions to
# replay since `seen` would grow without end. Once they pass this many, or the replay had to
# look at this many events (other applications' transactions may put hundreds of keys each),
# the no-op pass moves `seen` forward (one small write), so a replay stays this small.
ADVANCE_AFTER = 5_000
# A store that reads the prefix to find them may read these many parts of it at once (etcd
# serves them in parallel): in a repository of at least so many services.
WALK_PARTS = 4
WALK_PARTS_FROM = 64


@dataclass
class Selection:
    """What one pass looks at, and what it knows about why a unit differs from Git."""

    units: set[UnitId] | None  # None: every unit (a full pass)
    seen: int  # every write up to this revision has been examined
    from_git: set[UnitId] | None = None  # units whose files changed (None: unknown, so all)
    unconverged: set[UnitId] = field(default_factory=set)  # left unequal by earlier runs
    reported: set[UnitId] = field(default_factory=set)  # drift left in place by policy
    examined: int = 0  # events the replay of etcd's history had to look at

    def is_drift(self, unit: UnitId) -> bool:
        """A difference in a unit that Git did not change and that an earlier run left
        converged was made by someone else. This needs no etcd history, so it holds in a full
        pass and after a compaction too."""
        if self.from_git is None or unit in self.from_git:
            return False
        return unit in self.reported or unit not in self.unconverged


@dataclass
class Previous:
    """`_system/last-applied` as read, with the revision its guarded rewrite compares and
    the store's revision at the read (`read_at`: 0 when not known)."""

    record: LastApplied | None
    mod_revision: int = 0
    read_at: int = 0


def read_previous(store: Store, keys: Keys) -> Previous:
    """The record, and the store's revision with it: a pass takes that as the revision up
    to which it examines writes (`Selection.seen`) instead of asking etcd for it in another
    round trip. It is no later than the live reads that follow, so a write after it is
    looked at again by the next pass, never missed."""
    res = store.range(keys.last_applied)
    kv = res.kvs[0] if res.kvs else None
    if kv is None:
        return Previous(None, 0, res.revision)
    try:
        return Previous(LastApplied.from_json(kv.value), kv.mod_revision, res.revision)
    except RecordError:
        # unreadable: behave as on a first run (full pass), but keep the revision so the
        # rewrite still guards against a concurrent writer
        return Previous(None, kv.mod_revision, res.revision)


def revision_after(store: Store, keys: Keys, prev: Previous) -> int:
    """The revision a pass examines writes up to: the one read with `prev`, if known."""
    return prev.read_at or store.revision(within=keys.root_b)


def select(source: GitSource, store: Store, keys: Keys, target: str, layout: Layout,
           prev: Previous, full: bool, witness: Witness | None = None) -> Selection:
    """Units to look at (incremental unless `full` or etcd's history is gone), with what is
    known about Git's changes for telling drift apart. `witness`: what a watch on the prefix
    saw (a daemon's), asked before etcd's history."""
    now = revision_after(store, keys, prev)
    last = prev.record
    if last is None:
        return Selection(None, now)
    sel = Selection(None, now, _changed_by_git(source, last.commit, target, layout),
                    last.unconverged_units(), last.drifted_units())
    if full or sel.from_git is None:
        return sel
    units = sel.from_git | sel.unconverged
    first = last.first_foreign(now, prev.mod_revision)
    if first is not None:
        found = _witnessed(keys, last, first, now, witness) if witness is not None else None
        if found is None:
            found = _foreign_writes(store, keys, last, first, now, layout)
        if found is None:
            return sel  # history compacted (or unreadable): look at all
        units |= found.units
        sel.examined, sel.seen = found.examined, found.seen
    sel.units = units
    return sel


def _changed_by_git(source: GitSource, last: str, target: str, layout: Layout,
                    ) -> set[UnitId] | None:
    """Units whose files differ between the last applied commit and the target; None when
    that cannot be told (the commit is unknown after a force-push, or settings or shared
    schemas changed, which may change every unit)."""
    try:
        changed = source.changed_paths(last, target)
    except GitconfError:
        return None
    if any(affects_everything(p) for p in changed):
        return None

    def envs_of(service: str) -> Iterable[str]:
        files = layout.services.get(service)
        return files.envs if files else ()

    return units_touched(changed, envs_of)


class _Found(NamedTuple):
    units: set[UnitId]  # touched by someone else's writes
    examined: int  # events looked at to find them
    seen: int  # every write up to this revision has been examined


def _witnessed(keys: Keys, last: LastApplied, first: int, now: int, witness: Witness,
               ) -> _Found | None:
    """Units touched by someone else's writes from `first` on, as the daemon's watch saw
    them, up to the last revision it has seen (`now` at most): the pass has then examined the
    writes up to there, and the next one goes on from there (every later write wakes the
    daemon anyway). None when the watch began after `first`: etcd's history answers."""
    through = min(now, witness.through)
    if through < first:
        return _Found(set(), 0, first - 1) if witness.since <= first else None
    events = witness.between(first, through)
    if events is None:
        return None
    return _Found(_touched(keys, last, events), len(events), through)


def _foreign_writes(store: Store, keys: Keys, last: LastApplied, first: int, now: int,
                    layout: Layout) -> _Found | None:
    """Units touched by someone else's writes in [first, now], and how many events finding
    them took. None when etcd's history no longer reaches back that far. Should the store
    read the prefix itself, it may read it in `WALK_PARTS` parts, cut at services spaced
    evenly through the layout."""
    cuts = [keys.root_b + name.encode() + b"/" for name in layout.spread(WALK_PARTS)] \
        if len(layout.services) >= WALK_PARTS_FROM else []
    changes = store.changes_since(keys.root_b, first, now, scope="auto", cuts=cuts)
    if changes is None:
        return None
    return _Found(_touched(keys, last, changes), changes.examined, now)


def _touched(keys: Keys, last: LastApplied, changes: Iterable[KeyEvent]) -> set[UnitId]:
    """The units whose data keys or records these writes touched, gitconf's own left out."""
    units: set[UnitId] = set()
    for ch in changes:
        if last.is_own(ch.mod_revision) or ch.key == keys.last_applied:
            continue
        parsed = keys.parse_data_key(ch.key)
        if parsed is not None:
            units.add(parsed[0])
            continue
        rec = keys.parse_unit_record_key(ch.key)
        if rec is not None and rec[0] in ("units", "pending", "pins", "overrides"):
            units.add(rec[1])
    return units


def intervals(revisions: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Revisions as closed intervals: gitconf's own writes are few runs of consecutive
    revisions."""
    out: list[list[int]] = []
    for r in sorted(set(revisions)):
        if out and r == out[-1][1] + 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return tuple((a, b) for a, b in out)


@dataclass
class Outcome:
    """What a pass leaves for the next one to know."""

    target: str
    seen: int
    own: list[int]
    unconverged: set[UnitId]
    drifted: set[UnitId]
    moved: bool  # the pass looked at units of a commit other than the last applied one
    examined: int = 0  # events the replay looked at (`Selection.examined`)


def previous_write(store: Store, keys: Keys, prev: Previous, out: Outcome,
                   fence: list[Any], at: str) -> tuple[list[Compare], list[bytes]] | None:
    """The guarded transaction (compares, encoded operations) that rewrites `last-applied`
    when the pass wrote anything or what it must remember changed; None when an apply with
    nothing to do writes nothing at all."""
    last = prev.record
    unconverged = tuple(sorted(unit_name(u) for u in out.unconverged))
    drifted = tuple(sorted(unit_name(u) for u in out.drifted))
    if (not out.own and last is not None and not out.moved
            and tuple(sorted(last.unconverged)) == unconverged
            and tuple(sorted(last.drifted)) == drifted
            and out.seen - last.seen < ADVANCE_AFTER and out.examined < ADVANCE_AFTER):
        return None
    own = intervals(out.own)
    if len(own) > MAX_OWN_INTERVALS:  # too fragmented: re-examine them next time
        own = ()
    record = LastApplied(out.target, out.seen, own, unconverged, drifted, at)
    return ([*fence, store.cmp_mod(keys.last_applied, prev.mod_revision)],
            [store.wire_put(keys.last_applied, record.to_json())])


def write_previous(store: Store, keys: Keys, prev: Previous, out: Outcome,
                   fence: list[Any], at: str) -> int:
    """Rewrite `last-applied` if `previous_write` says so. Returns the write's revision (0:
    none, or someone else changed the record since it was read)."""
    txn = previous_write(store, keys, prev, out, fence, at)
    if txn is None:
        return 0
    res = store.txn_wire(*txn)
    return res.revision if res.succeeded else 0
