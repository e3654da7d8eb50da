"""One pass of the path Git -> DesiredState, etcd -> LiveState, plan(), deploy: shared by diff,
apply, rollback, status and every daemon cycle.

A pass selects the units to look at (`selection.py`: incremental by default), reads their live
state, streams their desired state from the tree, gives each a verdict with `plan_one()`, and
then either hands it to the deployer or to whoever observes the pass (diff and status render,
the daemon counts). Drift, the difference in a unit Git did not change, is left in place,
reverted or handed to the overrides, as the policy says.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import field, replace
from typing import Any, NamedTuple

from . import layoutcache
from .actor import default_actor, now_iso
from .deploy import DEFAULT_MAX_BYTES, DEFAULT_MAX_OPS, DeployContext, Deployer, DeployOutcome
from .errors import CheckFailed, GitconfError, UsageError
from .fastclass import dataclass
from .gitsource import CommitInfo, GitSource
from .livestate import SCAN_THRESHOLD, LiveView, read_live, read_unit
from .loading import PARALLEL_SERVICES, iter_units_parallel
from .model import (
    DeploySource,
    DesiredUnit,
    DriftPolicy,
    LiveUnit,
    Plan,
    Problem,
    UnitId,
    UnitPlan,
)
from .overrides import UNSET, Actor, KeyEdit, close_override, is_expired, read_value, write_override
from .pins import lifted_pins
from .plan import (
    MassDeleteGuard,
    PlanOptions,
    add_to_plan,
    git_caught_up,
    plan_one,
    plan_unit,
    shows_drift,
    unit_masker,
)
from .publish import publish_schemas
from .records import Keys, OverrideRecord, OverrideState, Pin
from .repo_format import (
    SETTINGS_FILES,
    Layout,
    LoadOptions,
    iter_units,
    read_layout,
    unit_of_path,
    units_in_layout,
)
from .schema import ServiceSchema
from .selection import (
    Outcome,
    Previous,
    Selection,
    previous_write,
    read_previous,
    revision_after,
    select,
)
from .store import PendingTxn, Store, Witness
from .trees import FileTree, Tree

DRIFT_POLICIES: tuple[DriftPolicy, ...] = ("revert", "report", "pr")


@dataclass
class Request:
    ref: str = "HEAD"
    services: Collection[str] | None = None
    environments: Collection[str] | None = None
    prune: bool = True
    full: bool = False
    dry_run: bool = False
    actor: str | None = None
    source: DeploySource = "git"
    respect_pins: bool = True
    units: Collection[UnitId] | None = None  # exact units (rollback), overrides selection
    set_pins: dict[UnitId, Pin] = field(default_factory=dict)
    max_ops: int = DEFAULT_MAX_OPS
    max_bytes: int = DEFAULT_MAX_BYTES
    progress: Callable[[int], None] | None = None
    worktree: bool = False  # desired state from the working tree's files (local development)
    cancel: threading.Event | None = None  # set: submit no further unit (SIGTERM)
    drift_policy: DriftPolicy | None = None  # None: `.gitconf.yaml` drift (default pr)
    fence: tuple[bytes, int] | None = None  # (key, mod_revision) every write must still see
    # called with every unit the pass examined, whatever its verdict; a dry run that has an
    # observer keeps no plans (status streams its rows)
    observe: Callable[[UnitPlan, bool], None] | None = None
    # the fate of an open override's pull request, None when not known (no token, GitHub
    # unreachable); asked once per open override of a selected unit
    pull_request_state: Callable[[OverrideRecord], PullRequestFate | None] | None = None
    allow_mass_delete: bool = False  # the mass-delete guard (`.gitconf.yaml` mass_delete)
    witness: Witness | None = None  # what the daemon's watch saw of the prefix's writes


class PullRequestFate(NamedTuple):
    state: str  # open | merged | closed
    head_sha: str | None = None  # the pull request's last commit


@dataclass
class Result:
    ref: str
    commit: CommitInfo
    plan: Plan  # for a real run: skipped and failed units; per-unit plans only for dry runs
    deploys: list[DeployOutcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    units_examined: int = 0
    conflicts: int = 0
    drifted: list[UnitPlan] = field(default_factory=list)  # drift left in place (policy)
    reverted: list[UnitId] = field(default_factory=list)  # drift reverted to Git
    cancelled: bool = False
    own_revisions: list[int] = field(default_factory=list)  # of every write this run made
    held: list[tuple[UnitId, str]] = field(default_factory=list)  # keys held by an override
    kept: list[tuple[UnitId, str]] = field(default_factory=list)  # foreign keys left alone
    closed_overrides: list[OverrideRecord] = field(default_factory=list)
    new_overrides: list[OverrideRecord] = field(default_factory=list)  # drift adopted (`pr`)
    mark: int = 0  # the `seen` of the last-applied record the pass started from

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
            "held": pairs(self.held), "kept": pairs(self.kept),
            "overrides": {"opened": [r.shown() for r in self.new_overrides],
                          "closed": [r.shown() for r in self.closed_overrides]},
        }


@dataclass
class _Pass:
    """Everything one `Reconciler.run()` carries from selection to the last record."""

    req: Request
    target: str
    tree: Tree
    layout: Layout
    prev: Previous
    sel: Selection
    candidates: set[UnitId]  # what selection found, before --service/--env
    selected: set[UnitId]
    live: LiveView  # records of every unit; keys read as each unit is planned
    result: Result
    options: PlanOptions
    ctx: DeployContext
    policy: DriftPolicy
    refused: dict[UnitId, Problem]
    deployer: Deployer | None = None
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # compiled, to publish
    leftovers: set[UnitId] = field(default_factory=set)  # kept by --no-prune
    cancelled: set[UnitId] = field(default_factory=set)
    own: list[int] = field(default_factory=list)  # revisions of override writes of this pass
    ended: set[UnitId] = field(default_factory=set)  # units whose override ended in this pass


class OverrideStep:
    """The part of a pass that concerns overrides: whether an open one has ended (and with it
    the hold on its keys), and drift adopted as a new one under the `pr` policy."""

    def __init__(self, source: GitSource, store: Store, keys: Keys):
        self.source = source
        self.store = store
        self.keys = keys

    def fate(self, p: _Pass, desired: DesiredUnit | None, lv: LiveUnit,
                       ) -> tuple[LiveUnit, frozenset[str]]:
        """An open override ends when its TTL passed (expired), its pull request merged or
        Git gave its keys their values (merged), or its pull request was closed (closed).
        Then its keys are planned like any other (a merged override's keys get Git's
        provenance back); else they are held. A dry run decides without writing."""
        record = lv.override
        if record is None:
            return lv, frozenset()
        state: OverrideState | None = None
        if is_expired(record):
            state, why = "expired", f"its TTL passed at {record.expires_at}"
        else:
            asked = p.req.pull_request_state
            fate = asked(record) if asked is not None and record.pull_request else None
            if git_caught_up(desired, lv) or (fate is not None and fate.state == "merged"
                                              and self.contains(p.target, fate.head_sha)):
                state, why = "merged", "Git has the overridden values"
            elif fate is not None and fate.state == "closed":
                state, why = "closed", "its pull request was closed unmerged"
        if state is None:
            return lv, frozenset()
        if p.deployer is not None:
            closed = close_override(self.store, self.keys, record, lv.override_revision, state,
                                    why)
            if closed is None:
                return lv, frozenset()  # changed meanwhile: the next pass decides again
            p.result.closed_overrides.append(closed[0])
            p.own.append(closed[1])
        freed = replace(lv, override=None, override_revision=0)
        return freed, (record.held if state == "merged" else frozenset())

    def contains(self, target: str, commit: str | None) -> bool:
        """The commit a merged pull request brought is in what this pass applies (until
        then, closing its override would flip the keys back to the old values)."""
        if not commit:
            return False
        try:
            return commit == target or self.source.is_ancestor(commit, target)
        except GitconfError:
            return False

    def adopt(self, p: _Pass, up: UnitPlan) -> bool:
        """Drift under the `pr` policy becomes an override (source `drift`, by `etcd`): the
        values someone wrote stay, held, and a pull request will propose them to Git."""
        lv, desired = up.live, up.desired
        edits = [KeyEdit(c.key, UNSET) if c.op == "add" else
                 KeyEdit(c.key, read_value(lv.keys[c.key])) for c in up.changes]
        newest = max((lv.keys[c.key].mod_revision for c in up.changes if c.key in lv.keys),
                     default=lv.read_revision)
        actor = Actor("etcd", f"changed in etcd at revision {newest}", source="drift")
        try:
            record = write_override(self.store, self.keys, up.unit, edits,
                                    desired.values if desired else {},
                                    unit_masker(desired, lv), actor, write_values=False)
        except CheckFailed:
            return False  # changed again meanwhile: reported now, adopted by the next pass
        p.result.new_overrides.append(record)
        p.own.append(record.revision)
        return True


class Reconciler:
    """Holds a repository, a store and a prefix; `run()` is one pass."""

    def __init__(self, source: GitSource, store: Store, keys: Keys):
        self.source = source
        self.store = store
        self.keys = keys
        # a commit's layout, reused from the previous commit when that only modified files
        self.layouts = layoutcache.Layouts(source)
        self.overrides = OverrideStep(source, store, keys)
        # the daemon's passes leave their last-applied write in flight (`settle`)
        self.defer_previous = False
        self._previous: PendingTxn | None = None
        self._applied: str | None = None  # the target of this reconciler's last real pass

    def run(self, req: Request) -> Result:
        self.settle()
        p = self._begin(req)
        if _settings_broken(p.layout):
            # `.gitconf.yaml` decides what is a service and an environment: nothing is safe
            bad = next(x for x in p.layout.problems if x.file in SETTINGS_FILES
                       or x.code == "settings")
            why = f"invalid .gitconf.yaml: {bad.file}:{bad.line}:{bad.column} {bad.message}"
            p.result.plan.failed.extend((u, why) for u in sorted(p.selected))
            return p.result
        self._plan_and_deploy(p)
        if p.deployer is not None:
            self._finish(p)
            if req.units is None and not req.worktree:
                self._applied = p.target
        return p.result

    def settle(self) -> int:
        """Wait for the `last-applied` write an earlier pass left in flight, if any; its
        revision (0: none, or someone else changed the record first, as `write_previous`).
        With `defer_previous` (the daemon) a pass ends once its deploy is answered: etcd
        answers a write before its log is on disk, and the next request waits for that
        (7-10 ms measured in a 1M-key etcd, after the commit that triggered the pass); the
        daemon settles before anything reads etcd again (the next pass, an idle cycle, its
        shutdown), so no pass reads a `last-applied` older than the last one written.
        Raises the write's `EtcdError`."""
        pending, self._previous = self._previous, None
        if pending is None:
            return 0
        res = self.store.txn_finish(pending)
        return res.revision if res.succeeded else 0

    # -- the steps of a pass ----------------------------------------------------------------

    def _start(self, req: Request) -> tuple[Previous, str, CommitInfo]:
        """`last-applied`, the target commit and its info. A reconciler that has applied a
        pass (the daemon's) starts the commit's `git show` first and reads etcd while it
        runs, guessing that the record names the commit it applied last (the diff since then
        comes with the info); a wrong guess costs a `git diff` later, nothing else."""
        guess = None if req.worktree else self._applied
        if guess is None:
            prev = read_previous(self.store, self.keys)
            target = self.source.resolve(req.ref)
            last = prev.record.commit if prev.record is not None else None
            return prev, target, self.source.commit_info(
                target, since=None if req.worktree else last)
        target = self.source.resolve(req.ref)
        info = self.source.start_commit_info(target, since=guess)
        try:
            prev = read_previous(self.store, self.keys)
        except BaseException:
            with suppress(GitconfError):
                info()  # reaped; etcd's error is the one to report
            raise
        return prev, target, info()

    def _source_tree(self, req: Request, prev: Previous, target: str, commit: CommitInfo,
                     ) -> tuple[CommitInfo, Tree, Layout]:
        last = prev.record.commit if prev.record is not None else None
        if not req.worktree:
            tree: Tree = self.source.tree(target)
            return commit, tree, self.layouts.at(target, tree, since=last)
        if self.source.work_tree is None:
            raise UsageError("--worktree needs a working tree, not a bare repository")
        tree = FileTree(self.source.work_tree)
        return replace(commit, version=f"{commit.version}+worktree"), tree, read_layout(tree)

    def _begin(self, req: Request) -> _Pass:
        prev, target, commit = self._start(req)
        commit, tree, layout = self._source_tree(req, prev, target, commit)
        if req.units is not None:
            sel = Selection(set(req.units), revision_after(self.store, self.keys, prev))
        else:
            sel = select(self.source, self.store, self.keys, target, layout, prev,
                         req.full or req.worktree, req.witness)
        view = read_live(self.store, self.keys, sel.units, also=self._schema_keys(req, sel))
        live = view.units
        candidates = sel.units if sel.units is not None else units_in_layout(layout) | set(live)
        selected = {u for u in candidates if _wanted(u, req)}
        result = Result(req.ref, commit, Plan(units=[]), problems=list(layout.problems),
                        dry_run=req.dry_run, units_examined=len(selected),
                        mark=prev.record.seen if prev.record is not None else 0)
        lifted = lifted_pins(self.source, target, selected, live) if req.respect_pins else set()
        options = PlanOptions(prune=req.prune, respect_pins=req.respect_pins, lifted_pins=lifted,
                              source=req.source,
                              mass_delete=None if req.allow_mass_delete or req.source == "rollback"
                              else _guard(layout))
        ctx = DeployContext(self.keys, commit, req.source, default_actor(req.actor), now_iso(),
                            max_ops=req.max_ops, max_bytes=req.max_bytes,
                            restored_commit=target if req.source == "rollback" else None,
                            set_pins=req.set_pins, lift_pins=lifted,
                            fence=[self.store.cmp_mod(*req.fence)] if req.fence else [],
                            fence_key=req.fence)
        policy = req.drift_policy or _policy(layout)
        p = _Pass(req, target, tree, layout, prev, sel, candidates, selected, view, result,
                  options, ctx, policy, _refused_units(layout, live))
        if not req.dry_run:
            p.deployer = Deployer(self.store, ctx, self._replanner(req.prune), req.progress)
        return p

    def _schema_keys(self, req: Request, sel: Selection) -> list[bytes]:
        """The published schemas a real pass over a few units may rewrite, read with the
        units' live state (before the deploy writes; `publish_schemas` compares with them)."""
        if req.dry_run or sel.units is None or len(sel.units) > SCAN_THRESHOLD:
            return []
        return [self.keys.schema(s) for s in sorted({u.service for u in sel.units
                                                     if _wanted(u, req)})]

    def _replanner(self, prune: bool) -> Callable[[UnitPlan], UnitPlan | None]:
        def replan(lost: UnitPlan) -> UnitPlan | None:
            fresh = read_unit(self.store, self.keys, lost.unit)
            changes = plan_unit(lost.unit, lost.desired, fresh, prune)
            if not changes and fresh.pending is None:
                return None
            return UnitPlan(lost.unit, changes, lost.desired, fresh)

        return replan

    def _plan_and_deploy(self, p: _Pass) -> None:
        """Stream the selected units from the tree; each is planned as it arrives, so parsing
        overlaps with etcd writes and memory follows what changed (nothing selected, nothing
        read). Shared schemas are met through the `$ref`s of the service schemas that use
        them (`LoadOptions.check_shared`)."""
        req = p.req
        if not p.selected:
            return
        services = {u.service for u in p.selected}
        # only the selected environments: a one-key commit parses one values file of its
        # service, not all of them (the others' units would be skipped below anyway)
        load = LoadOptions(services=services, environments={u.environment for u in p.selected},
                           encode=not req.dry_run, check_shared=False)
        schema_objs: dict[str, ServiceSchema] = {}
        compiled: dict[str, dict[str, Any]] = {}
        if len(services) >= PARALLEL_SERVICES and not req.worktree:
            stream = iter_units_parallel(p.tree, p.layout, load, compiled)
        else:
            stream = iter_units(p.tree, p.layout, load, schemas_out=schema_objs)
        loaded: set[UnitId] = set()
        for unit_d, _problems in stream:
            if unit_d is None or unit_d.unit not in p.selected:
                continue
            loaded.add(unit_d.unit)
            self._consider(p, unit_d.unit, unit_d)
        for unit in sorted(p.selected - loaded):
            self._consider(p, unit, None)
        compiled.update({name: s.compiled for name, s in schema_objs.items()})
        p.schemas = compiled

    def _consider(self, p: _Pass, unit: UnitId, desired: DesiredUnit | None) -> None:
        req, result = p.req, p.result
        if req.cancel is not None and req.cancel.is_set():
            result.cancelled = True
            p.cancelled.add(unit)
            return
        lv = p.live.unit(unit)
        if unit in p.refused:
            bad = p.refused[unit]
            up = UnitPlan(unit, [], desired, lv, "failed",
                          f"invalid: {bad.file}:{bad.line}:{bad.column} {bad.code}: "
                          f"{bad.message}")
        else:
            ended = lv.override
            lv, refresh = self.overrides.fate(p, desired, lv)
            up = plan_one(unit, desired, lv, p.options, refresh)
            if ended is not None and lv.override is None:
                p.ended.add(unit)  # its keys return to Git now: not drift
        if up.held:
            result.held.append((unit, up.reason or "held by override"))
        if up.kept:
            result.kept.append((unit, f"left alone, not written by gitconf: "
                                      f"{', '.join(up.kept[:5])}"
                                      + (f" and {len(up.kept) - 5} more" if len(up.kept) > 5
                                         else "")))
        up.drift = (bool(up.changes) and unit not in p.ended and p.sel.is_drift(unit)
                    and shows_drift(lv))
        if req.observe is not None:
            req.observe(up, up.drift)
        if up.drift and p.policy != "revert":
            if p.deployer is None and req.observe is None:
                add_to_plan(result.plan, up)  # diff shows drift, marked as such
            if p.policy == "pr" and p.deployer is not None and self.overrides.adopt(p, up):
                return
            result.drifted.append(up)  # reported, left as it is
            return
        if up.drift:
            result.reverted.append(unit)
            p.ctx.drift_units.add(unit)
        if p.deployer is None:
            if req.observe is None or up.verdict != "changes":
                add_to_plan(result.plan, up)  # a real run keeps outcomes, not plans
        elif up.verdict != "changes":
            add_to_plan(result.plan, up)
        elif up.writes:
            p.deployer.submit(up)
        if not req.prune and lv.tracked and any(k not in (desired.values if desired else ())
                                                for k in lv.keys):
            p.leftovers.add(unit)  # kept by --no-prune: unconverged, looked at again

    def _finish(self, p: _Pass) -> None:
        assert p.deployer is not None
        deployer, result, req = p.deployer, p.result, p.req
        deployer.finish()
        result.deploys = deployer.outcomes
        result.plan.failed.extend(deployer.failed)
        result.conflicts = sum(o.retries for o in deployer.outcomes)
        own = list(deployer.revisions) + p.own
        own += publish_schemas(self.store, self.keys, p.schemas, p.live.also)
        txn = None if req.units is not None else previous_write(
            self.store, self.keys, p.prev, self._outcome(p, own), p.ctx.fence, now_iso())
        if txn is not None and self.defer_previous:
            # its revision is not among `own_revisions`: the daemon's watch ignores the
            # record's key whatever revision it carries
            self._previous = self.store.txn_start(*txn)
        elif txn is not None:
            res = self.store.txn_wire(*txn)
            if res.succeeded:
                own.append(res.revision)
        result.own_revisions = own

    def _outcome(self, p: _Pass, own: list[int]) -> Outcome:
        result = p.result
        converged = set(p.selected)
        converged -= {u for u, _ in result.plan.failed}
        converged -= {u for u, _ in result.plan.skipped}
        converged -= p.leftovers | p.cancelled
        drifted = {up.unit for up in result.drifted}
        converged -= drifted
        last = p.prev.record
        prior = last.unconverged_units() if last else set()
        moved = last is not None and last.commit != p.target and bool(p.candidates)
        return Outcome(p.target, p.sel.seen, own, (prior | p.candidates) - converged, drifted,
                       moved, p.sel.examined)


def _settings_broken(layout: Layout) -> bool:
    """Any error in `.gitconf.yaml` (a syntax error too): it decides what is a service and an
    environment, so nothing can be applied safely."""
    return any(p.severity == "error" and (p.code == "settings" or p.file in SETTINGS_FILES)
               for p in layout.problems)


def _guard(layout: Layout) -> MassDeleteGuard:
    conf = layout.settings.get("mass_delete") or {}
    return MassDeleteGuard(float(conf.get("max_percent", 50)), int(conf.get("min_keys", 10)))


def _policy(layout: Layout) -> DriftPolicy:
    value = str(layout.settings.get("drift", "pr"))
    for policy in DRIFT_POLICIES:
        if policy == value:
            return policy
    return "pr"


def _refused_units(layout: Layout, live: Collection[UnitId]) -> dict[UnitId, Problem]:
    """Units whose files the layout itself refuses (an unknown environment, a duplicate, a
    symbolic link where a file should be): failed, never pruned. A refused schema or base
    file fails every environment of its service."""
    refused: dict[UnitId, Problem] = {}
    for problem in layout.problems:
        hit = unit_of_path(problem.file)
        if not hit:
            continue
        service, env = hit
        if env:
            refused.setdefault(UnitId(service, env), problem)
            continue
        files = layout.services.get(service)
        envs = set(files.envs if files else ()) | {u.environment for u in live
                                                    if u.service == service}
        for e in envs:
            refused.setdefault(UnitId(service, e), problem)
    return refused


def _wanted(unit: UnitId, req: Request) -> bool:
    if req.services is not None and unit.service not in req.services:
        return False
    return not (req.environments is not None and unit.environment not in req.environments)
