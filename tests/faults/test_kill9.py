"""kill -9 of `gitconf apply` at random points of 50 consecutive deploys.

A repository of 5 units (two large enough to need many transactions) gets 50 commits that
change, add and delete keys, and now and then remove or bring back a whole unit. Each commit is
applied by a real `python -m gitconf apply` process that is killed with SIGKILL after a delay
drawn from a seeded RNG (before it connected, between transactions of a large unit, after it
finished...), then applied again to completion. "Anywhere" delays are drawn up to a little more
than the longest apply seen to finish so far, so the spread follows this machine's speed rather
than a guess at it. After every completed apply:

- etcd equals that commit per unit (`gitconf get SERVICE ENV -f json` against the YAML read
  by gitconf's own loader from the working tree);
- no unit is left with a pending multi-transaction deploy;
- history never loses or duplicates a record: deploy numbers are 1..N without gaps, N is the
  number of commits that changed the unit so far, and the records' key lists replay to exactly
  the keys etcd holds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.faults.support import check_history, desired_values, history, live_values
from tests.helpers import GitRepo, cli

SEED = 20250115
COMMITS = 50
UNITS = [UnitId(f"svc{i}", "prod") for i in range(5)]
LARGE = {UNITS[0]: 500, UNITS[1]: 350}  # keys: with --max-txn-ops 8, ~50-70 transactions
SMALL = 12
BUDGET = 240.0  # seconds for the whole loop (~65 s on 2 idle cores; a bound, not a target)


def render(values: dict[str, Any]) -> str:
    """A values file; keys are plain names so the flattened key is the name itself."""
    return yaml.safe_dump(values, sort_keys=True, default_flow_style=False, width=1000)


def initial() -> dict[UnitId, dict[str, Any]]:
    state: dict[UnitId, dict[str, Any]] = {}
    for u in UNITS:
        n = LARGE.get(u, SMALL)
        state[u] = {f"k{i:04d}": f"{u.service}-v0-{i}" for i in range(n)}
    state[UNITS[2]]["nested"] = {"a": 1, "b": [1, 2]}
    return state


def mutate(rng: random.Random, state: dict[UnitId, dict[str, Any]], gen: int,
           removed: set[UnitId]) -> None:
    """One commit's worth of edits: a few units get changed, added and deleted keys; a large
    unit sometimes gets most of its keys rewritten; a small unit sometimes disappears (pruned
    with a deploy record, past the mass-delete guard: `--allow-mass-delete`) or comes back."""
    touched = rng.sample(UNITS, rng.randint(1, 3))
    for u in touched:
        if u in removed:
            if rng.random() < 0.5:
                removed.discard(u)
                state[u] = {f"k{i:04d}": f"back-{gen}-{i}" for i in range(SMALL)}
            continue
        values = state[u]
        names = sorted(values)
        if u not in LARGE and len(removed) < 1 and rng.random() < 0.08:
            removed.add(u)
            continue
        if u in LARGE and rng.random() < 0.6:
            for k in rng.sample(names, int(len(names) * rng.uniform(0.5, 0.9))):
                values[k] = f"{u.service}-g{gen}-{k}"  # a large multi-transaction change
        else:
            for k in rng.sample(names, min(len(names), rng.randint(1, 8))):
                values[k] = rng.choice([gen, f"g{gen}", gen % 2 == 0, None, [gen, "x"],
                                        {"n": gen}])
        for k in rng.sample(names, min(len(names) - 1, rng.randint(0, 5))):
            if k in values and rng.random() < 0.6:
                del values[k]
        for i in range(rng.randint(0, 6)):
            values[f"new{gen:03d}x{i}"] = f"added-{gen}-{i}"


def files_of(state: dict[UnitId, dict[str, Any]], removed: set[UnitId],
             ) -> dict[str, str | None]:
    return {f"{u.service}/{u.environment}.yaml": (None if u in removed else render(state[u]))
            for u in UNITS}


def flat(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict) and v:
            out.update({f"{k}.{kk}": vv for kk, vv in flat(v).items()})
        else:
            out[k] = v
    return out


def killed_apply(repo: Path, env: dict[str, str], delay: float,
                 pending_of: tuple[EtcdStore, Keys] | None = None) -> tuple[str, float]:
    """Start `gitconf apply` as a process and SIGKILL it after `delay` seconds (if it is still
    running then). With `pending_of`, the delay counts from the moment a multi-transaction
    deploy has begun (its `pending` record exists), so the kill lands among its transactions.
    Returns, once the process has ended, what happened and how long the process ran."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitconf", "apply", "--repo", str(repo), "--max-txn-ops", "8",
         "--allow-mass-delete"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if pending_of is not None:
            store, keys = pending_of
            deadline = time.monotonic() + 20
            while (proc.poll() is None and time.monotonic() < deadline
                   and store.count(keys.kind_prefix("pending"))[0] == 0):
                time.sleep(0.01)
        proc.wait(timeout=delay)
        return f"finished ({proc.returncode})", time.monotonic() - began
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        return "killed", time.monotonic() - began


@pytest.mark.slow
def test_kill_9_at_random_points_of_50_deploys(tmp_path: Path, env: dict[str, str],
                                               store: EtcdStore, keys: Keys) -> None:
    rng = random.Random(SEED)
    state = initial()
    removed: set[UnitId] = set()
    repo = GitRepo(tmp_path / "config")
    repo.commit(files_of(state, removed), message="initial")
    # what each unit looked like at the last commit, to count the commits that changed it
    seen: dict[UnitId, dict[str, Any] | None] = {u: None for u in UNITS}
    expected_deploys = dict.fromkeys(UNITS, 0)
    outcomes: dict[str, int] = {}
    finished: list[float] = []  # seconds each apply that was not killed ran
    started = time.monotonic()

    for gen in range(COMMITS):
        assert time.monotonic() - started < BUDGET, f"over budget at commit {gen}"
        big = False
        if gen:
            before = {u: flat(state[u]) for u in LARGE}
            mutate(rng, state, gen, removed)
            big = any(sum(before[u].get(k) != v for k, v in flat(state[u]).items()) > 8
                      for u in LARGE)
            repo.commit(files_of(state, removed), message=f"commit {gen}")
        if big and rng.random() < 0.7:  # among the transactions of a large deploy
            delay = rng.uniform(0.0, 0.3)
            what, _ = killed_apply(repo.path, env, delay, (store, keys))
        else:  # anywhere: before it connected, while it plans or writes, as it exits
            delay = rng.uniform(0.05, 1.2) * max(finished, default=1.0)
            what, ran = killed_apply(repo.path, env, delay)
            if what.startswith("finished"):
                finished.append(ran)
        if what == "killed" and any(store.get(keys.pending(u)) is not None for u in LARGE):
            what = "killed mid-deploy"  # between the transactions of a large unit
        outcomes[what] = outcomes.get(what, 0) + 1
        res = cli("apply", "--repo", str(repo.path), "--allow-mass-delete", "-f", "json",
                  env=env)
        assert res.exit_code == 0, \
            f"commit {gen} ({what} after {delay:.2f}s): {res.stderr}{res.stdout}"

        want = desired_values(repo.path)
        for u in UNITS:
            now = None if u in removed else flat(state[u])
            assert (want.get(u)) == now, f"generator and loader disagree on {u}"
            if (now or {}) != (seen[u] or {}):
                expected_deploys[u] += 1
            seen[u] = now
            live = live_values(env, u)
            where = f"commit {gen} ({what} after {delay:.2f}s), {u}"
            if now is None:
                assert not live, f"{where}: a removed unit still has {sorted(live or {})[:5]}"
            else:
                assert live == now, f"{where}: etcd differs from Git: " + ", ".join(
                    f"{k}: {live.get(k) if live else None!r} != {now.get(k)!r}"
                    for k in sorted(set(live or {}) | set(now))
                    if (live or {}).get(k) != now.get(k))[:400]
            assert store.get(keys.pending(u)) is None, f"{where}: a pending deploy is left"
            records = history(env, u)
            check_history(records, (live or {}).keys())
            assert len(records) == expected_deploys[u], \
                f"{where}: {len(records)} deploy records for {expected_deploys[u]} changes"

    # the kills landed in different places, and the last state is stable
    assert outcomes.get("killed", 0) + outcomes.get("killed mid-deploy", 0) >= 20, outcomes
    assert outcomes.get("killed mid-deploy", 0) >= 3, outcomes
    revision = store.revision()
    assert cli("apply", "--repo", str(repo.path), "--allow-mass-delete", env=env).exit_code == 0
    assert store.revision() == revision
