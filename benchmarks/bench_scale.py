"""Linearity at ten times the reference scale (issue 13), in one run on one etcd: the first
apply of the reference repository (1,000 services, ~99,000 keys) and of one ten times larger
(~990,000 keys), then `status`, `diff --full` and a no-op `apply --full` of each, the small one
timed before and after the large one (machines drift), with the peak RSS of each command's
largest process. `--wide` makes the large one out of the same 1,000 services with ten times
the keys in every file (33 -> ~330: the same units, 3,000): memory that follows units stays,
memory that follows keys would grow.

    python benchmarks/bench_scale.py [--services 1000] [--factor 10] [--wide] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_apply import BIN, fresh_repo, run, time_and_rss

from gitconf.embedded_etcd import EmbeddedEtcd

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--wide", action="store_true",
                    help="the large repository: the same services, ten times the keys a file")
    a = ap.parse_args()
    small = fresh_repo(a.out / "scale-small", a.services)
    if a.wide:  # the reference file has 33 keys: add flags for (factor - 1) x 33 more
        big = fresh_repo(a.out / "scale-wide", a.services, flags=33 * (a.factor - 1))
    else:
        big = fresh_repo(a.out / "scale-big", a.services * a.factor)
    with EmbeddedEtcd(extra_args=("--quota-backend-bytes", str(8 * 1024**3))) as etcd:
        ep = etcd.endpoint
        firsts = [run([str(BIN / "gitconf"), "apply", "--repo", str(repo)],
                      {"GITCONF_ETCD_ENDPOINTS": ep, "GITCONF_PREFIX": prefix})
                  for repo, prefix in ((small, "/small"), (big, "/big"))]
        time.sleep(3)
        large = (f"{a.services} services with ten times the keys a file" if a.wide
                 else f"{a.services * a.factor} services")
        print(f"{a.services} services and {large} (~{a.services * 99:,} and "
              f"~{a.services * a.factor * 99:,} keys), one etcd")
        print(f"  first apply: {firsts[0]:.1f} s, {firsts[1]:.1f} s = "
              f"{firsts[1] / firsts[0]:.1f}x")
        for args in (["status", "-f", "json"], ["diff", "--full", "-f", "json"],
                     ["apply", "--full", "-f", "json"]):
            before = time_and_rss(args, small, ep, "/small")
            large = time_and_rss(args, big, ep, "/big")
            after = time_and_rss(args, small, ep, "/small")
            lo, hi = sorted((large[0] / before[0], large[0] / after[0]))
            print(f"  {' '.join(args[:2]):<12} {before[0]:.2f} / {after[0]:.2f} s "
                  f"({before[1]:.0f} MB) -> {large[0]:.2f} s ({large[1]:.0f} MB) = "
                  f"{lo:.1f}-{hi:.1f}x (issue 13: <= {1.1 * a.factor:.0f}x, < 400 MB)")


if __name__ == "__main__":
    main()
