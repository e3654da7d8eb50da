"""The README's first command: `gitconf demo` starts its own etcd and walks the whole tour."""

from __future__ import annotations

from tests.helpers import cli


def test_demo_runs_the_tour_and_cleans_up() -> None:
    res = cli("demo")
    assert res.exit_code == 0, res.stdout[-2000:] + res.stderr
    out = res.stdout
    for expected in ("valid: ", "applied v1.0.0: 15 deploys, 122 keys written",
                     '"approved_by": "riley@example.com"', "nothing to do: etcd matches v1.0.0",
                     "~ database.pool_size: 50 → 80", "2 deploys, 2 keys written",
                     "15 in-sync", "demo complete"):
        assert expected in out, expected
