"""One pass of the path Git -> DesiredState, etcd -> LiveState, plan(), deploy: shared by diff,
apply, rollback, status and every daemon cycle.

Incremental by default (SPEC §4): the units looked at are those whose files changed since the
last applied commit, those left unconverged by earlier runs, and those whose keys someone else
wrote or deleted since gitconf last looked. When every revision since then is one of gitconf's
own transactions nothing is read at all; otherwise etcd's history of those revisions is
replayed with a watch (puts and deletes alike); when that history has been compacted away, the
pass looks at every unit. The cost therefore follows what changed, not the repository's size.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from .deploy import DEFAULT_MAX_BYTES, DEFAULT_MAX_OPS, DeployContext, Deployer, DeployOutcome
from .errors import EtcdError, GitconfError, UsageError
from .etcdstore import EtcdStore
from .gitsource import CommitInfo, GitSource
from .livestate import read_unit, read_units
from .model import DesiredUnit, LiveUnit, Plan, Problem, UnitId, UnitPlan
from .plan import PlanOptions, plan, plan_unit
from .records import Keys, dumps, loads
from .repo_format import (
    BASE_FILES,
    SCHEMA_FILES,
    SETTINGS_FILES,
    SHARED_SCHEMAS_DIR,
    Layout,
    LoadOptions,
    iter_units,
    iter_units_parallel,
    read_layout,
)
from .schema import ServiceSchema
from .trees import FileTree, Tree

MAX_OWN_INTERVALS = 512
PARALLEL_SERVICES = 200  # from this many services, parsing runs in worker processes


def default_actor(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Request:
    ref: str = "HEAD"
    services: Collection[str] | None = None
    environments: Collection[str] | None = None
    prune: bool = True
    full: bool = False
    dry_run: bool = False
    actor: str | None = None
    source: str = "git"  # git | rollback
    respect_pins: bool = True
    units: Collection[UnitId] | None = None  # exact units (rollback), overrides selection
    set_pins: dict[UnitId, dict[str, Any]] = field(default_factory=dict)
    max_ops: int = DEFAULT_MAX_OPS
    max_bytes: int = DEFAULT_MAX_BYTES
    progress: Callable[[int], None] | None = None
    worktree: bool = False  # desired state from the working tree's files (local development)
    cancel: threading.Event | None = None  # set: submit no further unit (SIGTERM)
    drift_policy: str | None = "revert"  # revert | report | pr; None: `.gitconf.yaml` drift
    fence: tuple[bytes, int] | None = None  # (key, mod_revision) every write must still see


@dataclass
class Result:
    ref: str
    commit: CommitInfo
    plan: Plan  # for a real run: skipped and failed units; per-unit plans only for dry runs
    deploys: list[DeployOutcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    full: bool = False
    units_examined: int = 0
    conflicts: int = 0
    drifted: list[UnitPlan] = field(default_factory=list)  # drift left in place (policy)
    reverted: list[UnitId] = field(default_factory=list)  # drift reverted to Git
    cancelled: bool = False
    own_revisions: list[int] = field(default_factory=list)  # of every write this run made

    @property
    def failed(self) -> list[tuple[UnitId, str]]:
        return self.plan.failed

    @property
    def ok(self) -> bool:
        return not self.plan.failed and not any(p.severity == "error" for p in self.problems)

    def as_json(self) -> dict[str, Any]:
        def pairs(items: list[tuple[UnitId, str]]) -> list[dict[str, str]]:
            return [{"service": u.service, "environment": u.environment, "reason": r}
                    for u, r in items]

        return {
            "ref": self.ref, "commit": self.commit.sha, "version": self.commit.version,
            "dry_run": self.dry_run,
            "deploys": [d.as_json() for d in sorted(self.deploys, key=lambda d: d.unit)],
            "skipped": pairs(self.plan.skipped),
            "failed": pairs(self.plan.failed),
            "problems": [p.as_json() for p in self.problems],
        }


# ---------------------------------------------------------------------------------------------
# the record of the last applied commit


@dataclass
class LastApplied:
    commit: str
    seen: int  # every write up to this revision has been examined
    own: list[list[int]]  # revision intervals of gitconf's own transactions after `seen`
    unconverged: list[str]
    drifted: list[str] = field(default_factory=list)  # drift left in place by policy
    mod_revision: int = 0

    @classmethod
    def read(cls, store: EtcdStore, keys: Keys) -> LastApplied | None:
        kv = store.get(keys.last_applied)
        if kv is None:
            return None
        try:
            doc = loads(kv.value)
            return cls(doc["commit"], int(doc["seen"]), list(doc.get("own", [])),
                       list(doc.get("unconverged", [])), list(doc.get("drifted", [])),
                       kv.mod_revision)
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: behave as on a first run (full pass)

    def is_own(self, revision: int) -> bool:
        return any(a <= revision <= b for a, b in self.own)

    def first_foreign(self, now: int) -> int | None:
        """The first revision after `seen` made by someone else (None: every one since was
        ours, including this record's own write, and there is nothing to replay)."""
        r = self.seen + 1
        spans = sorted([*map(tuple, self.own), (self.mod_revision, self.mod_revision)])
        for a, b in spans:
            if r > now:
                return None
            if a > r:
                return r
            r = max(r, b + 1)
        return r if r <= now else None

    def as_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "seen": self.seen, "own": self.own,
                "unconverged": sorted(self.unconverged), "drifted": sorted(self.drifted),
                "at": now_iso()}


def _intervals(revisions: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for r in sorted(set(revisions)):
        if out and r == out[-1][1] + 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return out


def unit_of_path(path: str) -> tuple[str, str | None] | None:
    """`svc/prod.yaml` -> (svc, prod); `svc/_base.yaml` / schema -> (svc, None); else None."""
    top, sep, rest = path.partition("/")
    if not sep or "/" in rest or top.startswith((".", "_")) or top == SHARED_SCHEMAS_DIR:
        return None
    if rest in BASE_FILES or rest in SCHEMA_FILES:
        return top, None
    if rest.endswith((".yaml", ".yml")) and not rest.startswith((".", "_")):
        return top, rest.rsplit(".", 1)[0]
    return None


def units_touched(paths: Iterable[str], envs_of: Callable[[str], Iterable[str]]) -> set[UnitId]:
    """Units whose files are among `paths`: an environment file names its unit; `_base.yaml`
    or a schema names every environment `envs_of(service)` gives."""
    units: set[UnitId] = set()
    for path in paths:
        hit = unit_of_path(path)
        if hit is None:
            continue
        svc, env = hit
        if env is not None:
            units.add(UnitId(svc, env))
        else:
            units.update(UnitId(svc, e) for e in envs_of(svc))
    return units


def affects_everything(path: str) -> bool:
    return path in SETTINGS_FILES or path.startswith(SHARED_SCHEMAS_DIR + "/")


def units_in_layout(layout: Layout) -> set[UnitId]:
    return {UnitId(s.name, e) for s in layout.services.values() for e in s.envs}


# ---------------------------------------------------------------------------------------------


class Reconciler:
    """Holds a repository, a store and a prefix; `run()` is one pass."""

    def __init__(self, source: GitSource, store: EtcdStore, keys: Keys):
        self.source = source
        self.store = store
        self.keys = keys
        self._layout: tuple[str, Layout] | None = None  # (commit, its layout), for the daemon

    def layout_at(self, commit: str, tree: Tree) -> Layout:
        """The layout depends only on which files exist and on `.gitconf.yaml`: when a commit
        only modifies files the previous one had, its layout is reused instead of listing the
        whole tree again (which costs time in proportion to the repository)."""
        if self._layout is not None:
            prev, layout = self._layout
            if prev == commit:
                return layout
            try:
                status = self.source.changed_status(prev, commit)
            except GitconfError:
                status = [("?", "")]
            if all(s == "M" and p not in SETTINGS_FILES for s, p in status):
                self._layout = (commit, layout)
                return layout
        layout = read_layout(tree)
        self._layout = (commit, layout)
        return layout

    def select(self, target: str, layout: Layout, last: LastApplied | None, full: bool,
               ) -> tuple[set[UnitId] | None, int, set[UnitId]]:
        """Units to look at (None: all), the revision up to which writes were examined, and
        the units only someone else changed (drift: Git did not change them)."""
        now = self.store.revision()
        if last is None:
            return None, now, set()
        reported = {UnitId(*n.split("/", 1)) for n in last.drifted}
        if full:
            return None, now, reported
        try:
            changed = self.source.changed_paths(last.commit, target)
        except Exception:
            return None, now, reported  # last commit unknown (force-push, another repository)
        if any(affects_everything(p) for p in changed):
            return None, now, reported

        def envs_of(service: str) -> Iterable[str]:
            files = layout.services.get(service)
            return files.envs if files else ()

        units = units_touched(changed, envs_of)
        from_git = set(units)
        drift = set(reported)
        for name in last.unconverged:
            svc, _, env = name.partition("/")
            units.add(UnitId(svc, env))
        first = last.first_foreign(now)
        if first is not None:
            changes = self.store.changes_since(self.keys.root_b, first, now)
            if changes is None:
                return None, now, set()  # history compacted (or unreadable): look at all
            for ch in changes:
                if last.is_own(ch.mod_revision) or ch.key == self.keys.last_applied:
                    continue
                parsed = self.keys.parse_data_key(ch.key)
                if parsed is not None:
                    units.add(parsed[0])
                    drift.add(parsed[0])
                    continue
                rec = self.keys.parse_unit_record_key(ch.key)
                if rec is not None and rec[0] in ("units", "pending", "pins"):
                    units.add(rec[1])
        return units, now, drift - from_git

    def run(self, req: Request) -> Result:
        target = self.source.resolve(req.ref)
        commit = self.source.commit_info(target)
        tree: Tree = self.source.tree(target)
        if req.worktree:
            if self.source.work_tree is None:
                raise UsageError("--worktree needs a working tree, not a bare repository")
            tree = FileTree(self.source.work_tree)
            commit = replace(commit, version=f"{commit.version}+worktree")
        layout = read_layout(tree) if req.worktree else self.layout_at(target, tree)
        settings_broken = [p for p in layout.problems if p.code == "settings"]
        last = LastApplied.read(self.store, self.keys)

        drift_only: set[UnitId] = set()
        if req.units is not None:
            candidates: set[UnitId] | None = set(req.units)
            seen = self.store.revision()
        else:
            candidates, seen, drift_only = self.select(target, layout, last,
                                                       req.full or req.worktree)
        full = candidates is None

        live_state = read_units(self.store, self.keys, candidates)
        live = live_state.units
        if candidates is None:
            candidates = units_in_layout(layout) | set(live)
        selected = {u for u in candidates if _wanted(u, req)}
        result = Result(req.ref, commit, Plan(units=[]), problems=list(layout.problems),
                        dry_run=req.dry_run, full=full, units_examined=len(selected))
        if settings_broken:
            result.plan.failed.extend((u, "invalid .gitconf.yaml") for u in sorted(selected))
            return result

        # units whose files the layout itself refuses are failed, never pruned
        refused: dict[UnitId, Problem] = {}
        for p in layout.problems:
            hit = unit_of_path(p.file)
            if hit and hit[1]:
                refused.setdefault(UnitId(hit[0], hit[1]), p)

        # drift the daemon leaves in place until the overrides work (follow-up PRs) lands:
        # `pr` reports like `report` (docs/daemon.md)
        policy = req.drift_policy or str(layout.settings.get("drift", "pr"))
        lifted = self._lifted_pins(target, selected, live) if req.respect_pins else set()
        options = PlanOptions(prune=req.prune, respect_pins=req.respect_pins, lifted_pins=lifted,
                              source=req.source)
        ctx = DeployContext(self.keys, commit, req.source, default_actor(req.actor), now_iso(),
                            max_ops=req.max_ops, max_bytes=req.max_bytes,
                            restored_commit=target if req.source == "rollback" else None,
                            set_pins=req.set_pins, lift_pins=lifted,
                            fence=[self.store.cmp_mod(*req.fence)] if req.fence else [],
                            fence_key=req.fence)
        loaded: set[UnitId] = set()  # units are not kept: memory follows what changed

        def replan(lost: UnitPlan) -> UnitPlan | None:
            fresh = read_unit(self.store, self.keys, lost.unit)
            changes = plan_unit(lost.unit, lost.desired, fresh, req.prune)
            if not changes and fresh.pending is None:
                return None
            return UnitPlan(lost.unit, changes, lost.desired, fresh)

        deployer = None if req.dry_run else Deployer(self.store, ctx, replan, req.progress)
        leftovers: set[UnitId] = set()
        cancelled: set[UnitId] = set()
        schemas: dict[str, dict[str, Any]] = {}

        def consider(unit: UnitId, d: DesiredUnit | None) -> None:
            if req.cancel is not None and req.cancel.is_set():
                result.cancelled = True
                cancelled.add(unit)
                return
            if unit in refused:
                p = refused[unit]
                result.plan.failed.append((unit, f"invalid: {p.file}:{p.line}:{p.column} "
                                                 f"{p.code}: {p.message}"))
                return
            lv = live.get(unit) or LiveUnit(unit, {})
            part = plan([unit], {unit: d}, {unit: lv}, options)
            result.plan.failed.extend(part.failed)
            result.plan.skipped.extend(part.skipped)
            for up in part.units:
                if unit in drift_only and up.changes:
                    if policy != "revert":
                        result.drifted.append(up)  # reported, left as it is
                        return
                    result.reverted.append(unit)
                    ctx.drift_units.add(unit)
                if deployer is None:
                    result.plan.units.append(up)  # a real run keeps outcomes, not plans
                elif up.changes or lv.pending is not None:
                    deployer.submit(up)
            if not req.prune and d is not None and any(k not in d.values for k in lv.keys):
                leftovers.add(unit)

        services = {u.service for u in selected}
        load = LoadOptions(services=services, encode=not req.dry_run)
        schema_objs: dict[str, ServiceSchema] = {}
        if len(services) >= PARALLEL_SERVICES and not req.dry_run and not req.worktree:
            stream = iter_units_parallel(tree, layout, load, schemas)
        else:
            stream = iter_units(tree, layout, load, schemas_out=schema_objs)
        for unit_d, _problems in stream:
            if unit_d is None or unit_d.unit not in selected:
                continue
            loaded.add(unit_d.unit)
            consider(unit_d.unit, unit_d)
        for unit in sorted(selected - loaded):
            consider(unit, None)
        schemas.update({name: s.compiled for name, s in schema_objs.items()})

        if deployer is not None:
            deployer.finish()
            result.deploys = deployer.outcomes
            result.plan.failed.extend(deployer.failed)
            result.conflicts = sum(o.retries for o in deployer.outcomes)
            own = list(deployer.revisions)
            own += self._publish_schemas(schemas)
            if req.units is None:
                rev = self._write_last_applied(target, last, seen, own, candidates, selected,
                                               result, leftovers | cancelled, ctx.fence)
                if rev:
                    own.append(rev)
            result.own_revisions = own
        return result

    def _lifted_pins(self, target: str, units: Collection[UnitId],
                     live: dict[UnitId, LiveUnit]) -> set[UnitId]:
        """A pin holds until a commit on top of the branch head it was set at changes the
        unit's files (SPEC §4)."""
        lifted: set[UnitId] = set()
        by_head: dict[str, set[str]] = {}
        for unit in units:
            lv = live.get(unit)
            if lv is None or lv.pin is None:
                continue
            head = str(lv.pin.get("branch_head") or "")
            if not head or head == target:
                continue
            if head not in by_head:
                try:
                    ok = self.source.is_ancestor(head, target)
                    by_head[head] = set(self.source.changed_paths(head, target)) if ok else set()
                except Exception:
                    by_head[head] = set()
            for path in by_head[head]:
                hit = unit_of_path(path)
                if hit and hit[0] == unit.service and hit[1] in (None, unit.environment):
                    lifted.add(unit)
                    break
        return lifted

    def _publish_schemas(self, schemas: dict[str, dict[str, Any]]) -> list[int]:
        """Each service's compiled schema under `_system/schemas/`, for clients that resolve
        defaults; written only when it changed."""
        if not schemas:
            return []
        names = sorted(schemas)
        current: dict[bytes, bytes] = {}
        if len(names) > 64:  # many: one snapshot of the prefix is cheaper
            for kv in self.store.scan(self.keys.kind_prefix("schemas"))[0]:
                current[kv.key] = kv.value
        else:  # a few (a small commit): read just those, in one transaction
            res = self.store.txn([], [self.store.op_get(self.keys.schema(n)) for n in names])
            for resp in res.responses:
                for kv in resp.response_range.kvs:
                    current[kv.key] = kv.value
        revisions: list[int] = []
        ops = []
        for name, compiled in sorted(schemas.items()):
            key, value = self.keys.schema(name), dumps(compiled).encode()
            if current.get(key) != value:
                ops.append(self.store.op_put(key, value))
        for i in range(0, len(ops), 64):
            try:
                revisions.append(self.store.txn([], ops[i:i + 64]).revision)
            except EtcdError:
                pass  # a convenience for clients: the deploy itself has succeeded
        return revisions

    def _write_last_applied(self, target: str, last: LastApplied | None, seen: int,
                            own: list[int], candidates: set[UnitId],
                            selected: set[UnitId], result: Result, leftovers: set[UnitId],
                            ctx_fence: list[Any]) -> int:
        converged = set(selected)
        converged -= {u for u, _ in result.plan.failed}
        converged -= {u for u, _ in result.plan.skipped}
        converged -= leftovers
        drifted = {up.unit for up in result.drifted}
        converged -= drifted
        prior = {UnitId(*n.split("/", 1)) for n in (last.unconverged if last else [])}
        unconverged = sorted(f"{u.service}/{u.environment}"
                             for u in ((prior | candidates) - converged))
        drifted_names = sorted(f"{u.service}/{u.environment}" for u in drifted)
        moved = last is not None and last.commit != target and bool(candidates)
        if (not own and last is not None and not moved
                and sorted(last.unconverged) == unconverged
                and sorted(last.drifted) == drifted_names):
            return 0  # an apply with nothing to do writes nothing at all
        intervals = _intervals(own)
        if len(intervals) > MAX_OWN_INTERVALS:  # too fragmented: re-examine them next time
            intervals = []
        record = LastApplied(target, seen, intervals, unconverged, drifted_names)
        res = self.store.txn([*ctx_fence, self.store.cmp_mod(self.keys.last_applied,
                                                             last.mod_revision if last else 0)],
                             [self.store.op_put(self.keys.last_applied,
                                                dumps(record.as_json()).encode())])
        return res.revision if res.succeeded else 0


def _wanted(unit: UnitId, req: Request) -> bool:
    if req.services is not None and unit.service not in req.services:
        return False
    return not (req.environments is not None and unit.environment not in req.environments)


