"""`gitconf apply` against its peer (benchmarks/raw_apply.py: raw batched transactions) on the
reference repository, in one run on one throwaway etcd; then a one-key commit applied as a whole
process, on the reference repository and on one a hundred times smaller (the cost must not
follow the repository's size), and a no-op apply; a first diff (every key to add) as text and
as JSON; the whole-repository commands.

    python benchmarks/bench_apply.py [--services 1000] [--out benchmarks/out]
    python benchmarks/bench_apply.py --services 10000        # the 1M-key mode (issue 13)
    python benchmarks/bench_apply.py --foreign 200000        # the shared-etcd mode
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate

from gitconf.embedded_etcd import EmbeddedEtcd

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {res.stderr[-800:]}")
    return elapsed


def commit_one_key(repo: Path, n: int) -> None:
    f = repo / "svc-0000" / "prod.yaml"
    text = f.read_text()
    f.write_text(text.replace("idle_ms: ", f"idle_ms: {n}", 1) if n else text)
    subprocess.run(["git", "commit", "-qam", f"one key #{n}"], cwd=repo, check=True,
                   env={**os.environ, **GIT_ENV})


def one_key_cost(repo: Path, endpoint: str, prefix: str, rounds: int = 5) -> tuple[float, float]:
    env = {"GITCONF_ETCD_ENDPOINTS": endpoint, "GITCONF_PREFIX": prefix}
    apply = [str(BIN / "gitconf"), "apply", "--repo", str(repo)]
    run(apply, env)  # first apply
    time.sleep(2)  # let etcd settle after a large write: the steady state is what is measured
    times = []
    for i in range(1, rounds + 1):
        commit_one_key(repo, i)
        times.append(run(apply, env))
    noop = min(run(apply, env) for _ in range(3))
    return sorted(times)[len(times) // 2], noop


RSS = ("import resource, subprocess, sys, time; t = time.perf_counter();"
       " r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE);"
       " assert r.returncode in (0, 1), r.stderr[-800:];"
       " print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def time_and_rss(args: list[str], repo: Path, endpoint: str, prefix: str) -> tuple[float, float]:
    """Wall time and peak RSS (MB, the largest process) of `gitconf ARGS --repo REPO`."""
    env = {**os.environ, "GITCONF_ETCD_ENDPOINTS": endpoint, "GITCONF_PREFIX": prefix}
    res = subprocess.run([sys.executable, "-c", RSS, str(BIN / "gitconf"), *args, "--repo",
                          str(repo)], env=env, capture_output=True, text=True, check=True)
    wall, rss = res.stdout.split()
    return float(wall), int(rss) / 1024


def whole_repo_costs(repo: Path, endpoint: str, prefix: str) -> dict[str, tuple[float, float]]:
    """`time_and_rss` of the commands that read the whole repository and the whole prefix, on
    an applied etcd: `status`, `diff --full` and a no-op `apply --full`."""
    return {name: time_and_rss(args, repo, endpoint, prefix)
            for name, args in (("status", ["status", "-f", "json"]),
                               ("diff --full", ["diff", "--full", "-f", "json"]),
                               ("diff --full (text)", ["diff", "--full"]),
                               ("apply --full", ["apply", "--full"]))}


def foreign_writes(endpoint: str, prefix: str, n: int) -> float:
    """Another application's traffic: `n` puts under a prefix gitconf does not own, in
    batched transactions (the shared-etcd mode)."""
    from gitconf.etcdstore import connect, wire_put

    t = time.perf_counter()
    store = connect(endpoint)
    try:
        for i in range(0, n, 128):
            store.txn_wire([], [wire_put(f"{prefix}/k{j % 5000:05d}".encode(), b"x" * 64)
                                for j in range(i, min(n, i + 128))])
    finally:
        store.close()
    return time.perf_counter() - t


def shared_etcd_cost(repo: Path, endpoint: str, prefix: str, foreign: int,
                     rounds: int = 3) -> tuple[float, list[float]]:
    """The best of three no-op applies on a quiet etcd, then, `rounds` times, `foreign` writes
    elsewhere in the same etcd followed by one no-op apply: the first after the traffic, the
    one that has to find out what changed during it."""
    env = {"GITCONF_ETCD_ENDPOINTS": endpoint, "GITCONF_PREFIX": prefix}
    apply = [str(BIN / "gitconf"), "apply", "--repo", str(repo)]
    run(apply, env)
    quiet = min(run(apply, env) for _ in range(3))
    firsts = []
    for _ in range(rounds):
        foreign_writes(endpoint, "/other-app", foreign)
        firsts.append(run(apply, env))
    return quiet, firsts


def print_shared(services: int, quiet: float, firsts: list[float], foreign: int) -> None:
    ratio = sorted(firsts)[len(firsts) // 2] / quiet
    print(f"shared etcd, {services} services: no-op apply {quiet:.3f} s quiet; the first after "
          f"{foreign:,} foreign writes {', '.join(f'{t:.3f}' for t in firsts)} s = median "
          f"{ratio:.2f}x (issue 13: <= 1.2x)")


LIBRARIES = "import typer, rich.console, pyetcd, yaml, jsonschema_rs"  # rich.table: only to fold


def import_floor(statement: str = LIBRARIES, runs: int = 7) -> float:
    """Best wall time of a Python process that only imports what every `gitconf apply` needs
    (the CLI framework, the terminal renderer, the etcd client, the YAML parser, the schema
    validator) and exits the way `gitconf` does, without the interpreter's teardown: what a
    one-key apply cannot go below, however little it does."""
    return min(run([sys.executable, "-c", f"{statement}; import os; os._exit(0)"])
               for _ in range(runs))


def slow_applies(etcd: EmbeddedEtcd) -> int:
    """etcd's "apply request took too long" warnings so far (it logs every apply over 100 ms):
    issue 13 asks that a first apply draw none."""
    assert etcd.data_dir is not None
    try:
        with open(os.path.join(etcd.data_dir, "etcd.log")) as log:
            return sum("took too long" in line for line in log)
    except OSError:
        return 0


def first_apply_rounds(repo: Path, rounds: int) -> tuple[list[float], list[float], list[int]]:
    """gitconf's first apply and the raw floor, alternating (which goes first alternates too),
    each onto an empty etcd of its own: in a shared one, every run would write into a larger
    database than the run before it. Also etcd's slow-apply warnings during gitconf's."""
    firsts: list[float] = []
    raws: list[float] = []
    slow: list[int] = []
    for r in range(rounds):
        for who in ("raw", "gitconf") if r % 2 == 0 else ("gitconf", "raw"):
            with EmbeddedEtcd(extra_args=("--log-level", "warn")) as etcd:
                if who == "raw":
                    raws.append(run([sys.executable, str(HERE / "raw_apply.py"), str(repo),
                                     etcd.endpoint, "/config"]))
                else:
                    firsts.append(run([str(BIN / "gitconf"), "apply", "--repo", str(repo)],
                                      {"GITCONF_ETCD_ENDPOINTS": etcd.endpoint,
                                       "GITCONF_PREFIX": "/config"}))
                    slow.append(slow_applies(etcd))
    return firsts, raws, slow


def fresh_repo(root: Path, services: int, flags: int = 0) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    generate(root, services, git=True, flags=flags)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--foreign", type=int, default=0, help="Shared-etcd mode: this many writes "
                    "by another application (e.g. 200000) before timing no-op applies.")
    a = ap.parse_args()
    if a.foreign:
        for services in (max(1, a.services // 100), a.services):
            repo = fresh_repo(a.out / f"apply-shared-{services}", services)
            with EmbeddedEtcd(extra_args=("--log-level", "warn")) as etcd:
                quiet, firsts = shared_etcd_cost(repo, etcd.endpoint, "/shared", a.foreign)
            print_shared(services, quiet, firsts, a.foreign)
        return
    big = fresh_repo(a.out / "apply-ref", a.services)
    small = fresh_repo(a.out / "apply-small", max(1, a.services // 100))
    firsts, raws, slow = first_apply_rounds(big, a.rounds)
    with EmbeddedEtcd(extra_args=("--log-level", "warn")) as etcd:  # every key to add
        first_diff = {name: time_and_rss(args, big, etcd.endpoint, "/config")
                      for name, args in (("text", ["diff"]), ("JSON", ["diff", "-f", "json"]))}
    ratios = [f / r for f, r in zip(firsts, raws, strict=True)]
    with EmbeddedEtcd() as etcd:
        ep = etcd.endpoint
        one_big, noop_big = one_key_cost(big, ep, "/config")
        one_small, noop_small = one_key_cost(small, ep, "/small")
        whole = whole_repo_costs(big, ep, "/config")
    print(f"reference repository: {a.services} services x 3 environments (~{a.services * 99:,} "
          "keys), fresh etcd, whole processes")
    print(f"  first apply, {a.rounds} alternating rounds: gitconf "
          f"{', '.join(f'{t:.2f}' for t in firsts)} s; raw batched txns "
          f"{', '.join(f'{t:.2f}' for t in raws)} s")
    print(f"  ratio gitconf / raw: median {sorted(ratios)[len(ratios) // 2]:.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; target <= 1.25, issue 13 <= 1.1)")
    print(f"  etcd's slow-apply warnings (> 100 ms) during gitconf's first applies: "
          f"{', '.join(map(str, slow))} (issue 13: none)")
    print(f"  one-key commit, median of 5: {one_big:.3f} s on {a.services} services, "
          f"{one_small:.3f} s on {max(1, a.services // 100)} (target < 0.5 s, size-independent)")
    print(f"  no-op apply: {noop_big:.3f} s on {a.services} services, {noop_small:.3f} s on "
          f"{max(1, a.services // 100)}")
    print(f"  the floor of a run's start-up: importing the libraries it needs takes "
          f"{import_floor():.3f} s; an empty Python {import_floor('pass'):.3f} s")
    print("  first diff (every key to add): " + ", ".join(
        f"{name} {wall:.2f} s ({rss:.0f} MB)" for name, (wall, rss) in first_diff.items()))
    keys = a.services * 99
    for name, (wall, rss) in whole.items():
        print(f"  {name:<19} {wall:6.2f} s, peak RSS {rss:5.0f} MB ({rss * 1024 / keys:.2f} KB "
              "a key; issue 13: linear, < 400 MB at 1M keys)")


if __name__ == "__main__":
    main()
