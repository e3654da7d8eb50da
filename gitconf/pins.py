"""Pins (SPEC §4): after a rollback, apply and the daemon leave a unit alone until someone
unpins it, or until a commit made on top of the branch head of the time changes its files.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .actor import now_iso
from .errors import CheckFailed, GitconfError
from .gitsource import GitSource
from .model import LiveUnit, UnitId
from .records import Keys, Pin, RecordError
from .repo_format import unit_of_path
from .store import Store


def new_pin(commit: str, head: str, actor: str, reason: str | None) -> Pin:
    return Pin(commit, actor, now_iso(), reason, head)


def lifted_pins(source: GitSource, target: str, units: Collection[UnitId],
                live: Mapping[UnitId, LiveUnit]) -> set[UnitId]:
    """Pinned units whose pin a commit on top of the pin's branch head has lifted, by changing
    the unit's files."""
    lifted: set[UnitId] = set()
    by_head: dict[str, set[str]] = {}
    for unit in units:
        lv = live.get(unit)
        if lv is None or lv.pin is None:
            continue
        head = lv.pin.branch_head or ""
        if not head or head == target:
            continue
        if head not in by_head:
            try:
                ok = source.is_ancestor(head, target)
                by_head[head] = set(source.changed_paths(head, target)) if ok else set()
            except GitconfError:
                by_head[head] = set()
        for path in by_head[head]:
            hit = unit_of_path(path)
            if hit and hit[0] == unit.service and hit[1] in (None, unit.environment):
                lifted.add(unit)
                break
    return lifted


def set_pin(store: Store, keys: Keys, unit: UnitId, pin: Pin,
            only_if_different: bool = False) -> bool:
    """Write a pin, guarded; with `only_if_different`, leave an equal pin as it is."""
    key = keys.pin(unit)
    current = store.get(key)
    if only_if_different and current is not None:
        try:
            if Pin.from_json(current.value).commit == pin.commit:
                return False
        except RecordError:
            pass
    res = store.txn([store.cmp_mod(key, current.mod_revision if current else 0)],
                    [store.op_put(key, pin.to_json())])
    if not res.succeeded:
        raise CheckFailed(f"{unit}: its pin changed while gitconf was writing it; try again")
    return True


def unpin(store: Store, keys: Keys, unit: UnitId) -> Pin | None:
    """Remove a unit's pin; None when it had none (nothing to do is not an error)."""
    key = keys.pin(unit)
    current = store.get(key)
    if current is None:
        return None
    res = store.txn([store.cmp_mod(key, current.mod_revision)], [store.op_delete(key)])
    if not res.succeeded:
        raise CheckFailed(f"{unit}: its pin changed while gitconf was removing it; try again")
    try:
        return Pin.from_json(current.value)
    except RecordError:
        return Pin("?", "?", "?", "unreadable pin record")
