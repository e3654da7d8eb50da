"""Wiring shared by the commands: open the repository, connect to etcd, pick the prefix."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from ..etcdstore import EtcdStore
    from ..gitsource import GitSource
    from ..model import UnitId
    from ..reconcile import Reconciler
    from ..records import Keys

T = TypeVar("T")


def default_prefix() -> str:
    return os.environ.get("GITCONF_PREFIX", "/config")


def from_root(name: str, value: T) -> T:
    """A connection option (`etcd`, `prefix`) as the user meant it: the command's own flag,
    else the same flag given before the command (`gitconf --etcd h:p status`), else the
    command's value from its environment variable or default."""
    ctx = _current_context()
    if ctx is None:
        return value
    source = ctx.get_parameter_source(name)
    if source is not None and source.name == "COMMANDLINE":
        return value
    given = ctx.find_root().obj
    if isinstance(given, dict) and given.get(name) is not None:
        return cast(T, given[name])
    return value


def _current_context() -> Any:
    """The running command's context (typer bundles its own click since 0.25)."""
    import importlib

    try:
        module = importlib.import_module("typer._click.globals")
    except ImportError:  # an older typer, on click itself
        module = importlib.import_module("click.globals")
    return module.get_current_context(silent=True)


@contextmanager
def store_for(etcd: str | None) -> Iterator[EtcdStore]:
    from ..etcdstore import connect

    store = connect(from_root("etcd", etcd))
    try:
        yield store
    except KeyboardInterrupt:
        # the process is ending: an orderly close can wait on calls still in flight (the
        # transaction is finished or abandoned by etcd either way)
        raise
    except BaseException:
        store.close()
        raise
    else:
        store.close()


def open_source(repo: str) -> GitSource:
    from ..gitsource import GitSource

    return GitSource.open(repo)


def keys_for(prefix: str) -> Keys:
    from ..records import Keys

    return Keys(from_root("prefix", prefix))


def warn_uncommitted(source: GitSource, ref: str, force: bool = False) -> None:
    """Commands read commits, not files: say so when the files differ from what is read. Only
    for a person at a terminal: `git status` costs time in proportion to the tree."""
    if ref != "HEAD" or not (force or sys.stderr.isatty()):
        return
    dirty = source.uncommitted()
    if dirty:
        from .app import err

        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        err(f"note: reading HEAD; uncommitted changes to {shown} are not included "
            "(commit them, or use `gitconf daemon --worktree` for local development)")


@contextmanager
def reconciler_for(repo: str, etcd: str | None, prefix: str,
                   ref: str | None = None) -> Iterator[Reconciler]:
    from ..reconcile import Reconciler

    source = open_source(repo)
    if ref is not None:
        warn_uncommitted(source, ref)
    with store_for(etcd) as store:
        yield Reconciler(source, store, keys_for(prefix))


def unmatched(units: set[UnitId], services: Sequence[str] | None,
               environments: Sequence[str] | None) -> list[str]:
    """The --service/--env values that select no unit (with the other option applied)."""
    out = [f"--service {s}" for s in services or ()
           if not any(u.service == s and (not environments or u.environment in environments)
                      for u in units)]
    out += [f"--env {e}" for e in environments or ()
            if not any(u.environment == e and (not services or u.service in services)
                       for u in units)]
    return out


def deployed_units(rec: Reconciler) -> set[UnitId]:
    """Units gitconf has deployed under the prefix (their `_system/units/` records)."""
    kvs, _ = rec.store.scan(rec.keys.kind_prefix("units"), keys_only=True)
    found = (rec.keys.parse_unit_record_key(kv.key) for kv in kvs)
    return {hit[1] for hit in found if hit is not None}


def check_selection(rec: Reconciler, ref: str, services: Sequence[str] | None,
                    environments: Sequence[str] | None) -> None:
    """A --service or --env that matches no unit (neither in the repository at REF nor
    deployed in etcd) is a mistake, not an empty success: CheckFailed naming it."""
    if not services and not environments:
        return
    from ..errors import CheckFailed
    from ..repo_format import units_in_layout

    target = rec.source.resolve(ref)
    known = units_in_layout(rec.layouts.at(target, rec.source.tree(target)))
    missing = unmatched(known, services, environments)
    if missing:
        missing = unmatched(known | deployed_units(rec), services, environments)
    if missing:
        names = sorted({u.service for u in known})
        hint = (f" (services at {ref}: {', '.join(names[:8])}"
                + (f" and {len(names) - 8} more" if len(names) > 8 else "") + ")") if names \
            else f" (no services at {ref})"
        raise CheckFailed(f"no unit matches {' '.join(missing)}{hint}")


def selection_size(rec: Reconciler, commit: str, services: Sequence[str] | None,
                   environments: Sequence[str] | None) -> int:
    """How many units of the repository at COMMIT the selection holds (after a pass over
    COMMIT the layout is cached: no second listing of the tree). Counted, not collected: the
    summary's "in sync" needs only the number, at 30,000 units too."""
    layout = rec.layouts.at(commit, rec.source.tree(commit))
    return layout.unit_count(services, environments)
