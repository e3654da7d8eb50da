"""`gitconf validate` vs `check-jsonschema` on the reference repository (SPEC §8), one run.

Both validate the same 3,000 values files against the same schema, each as a whole process
(start-up and imports included), best of N runs. check-jsonschema gets its fastest use: one
process, one `--schemafile`, every file. Peak memory of gitconf is shown for the full
repository and for a tenth of it: it follows the largest service, not the repository.

    python benchmarks/bench_validate.py [--services 1000] [--runs 3] [--out benchmarks/out]
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

BIN = Path(sys.executable).parent
RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
       " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(cmd: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        if res.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {res.stderr.decode()[-500:]}")
        best = min(best, elapsed)
    return best


def peak_rss_mb(cmd: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", RSS, *cmd], capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def ensure_repo(root: Path, services: int) -> list[Path]:
    marker = root / f".generated-{services}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        generate(root, services)
        marker.write_text("")
    return sorted(root.glob("svc-*/*.yaml"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    a = ap.parse_args()
    root = a.out / f"ref-{a.services}"
    files = ensure_repo(root, a.services)
    small = ensure_repo(a.out / f"ref-{max(1, a.services // 10)}", max(1, a.services // 10))
    gitconf = [str(BIN / "gitconf"), "validate", str(root), "--format", "json"]
    cjs = str(BIN / "check-jsonschema")
    if not os.path.exists(cjs):
        raise SystemExit("check-jsonschema is not installed: pip install -e '.[bench]'")
    checker = [cjs, "--schemafile", str(root / "svc-0000" / "schema.json"), *map(str, files)]
    t_gc = timed(gitconf, a.runs)
    t_cjs = timed(checker, a.runs)
    rss_full = peak_rss_mb(gitconf)
    rss_small = peak_rss_mb([str(BIN / "gitconf"), "validate", str(small[0].parents[1]),
                             "--format", "json"])
    keys = 33 * len(files)
    print(f"reference repository: {a.services} services, {len(files)} values files, "
          f"~{keys:,} keys (best of {a.runs})")
    print(f"  gitconf validate   {t_gc:6.2f} s   peak RSS {rss_full:5.0f} MB "
          f"(a tenth of the repo: {rss_small:.0f} MB)")
    print(f"  check-jsonschema   {t_cjs:6.2f} s")
    print(f"  ratio gitconf / check-jsonschema = {t_gc / t_cjs:.2f}  (target <= 0.33)")


if __name__ == "__main__":
    main()
