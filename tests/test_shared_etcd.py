"""gitconf in an etcd that other applications write to: the cost of a pass with nothing to do
does not follow their traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys, LastApplied
from gitconf.selection import ADVANCE_AFTER
from tests.helpers import cli, make_repo


def test_foreign_traffic_moves_the_low_water_mark_instead_of_growing_the_replay(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, prefix: str) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    for i in range(ADVANCE_AFTER + 10):  # another application, under another prefix
        store.put(f"{prefix}-other/k{i % 50}".encode(), b"x")
    seen_before = LastApplied.from_json(store.get(keys.last_applied).value).seen
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    seen_after = LastApplied.from_json(store.get(keys.last_applied).value).seen
    assert seen_after - seen_before >= ADVANCE_AFTER  # moved forward, without a deploy
    before = store.revision()
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.revision() == before  # and a no-op apply with little traffic writes nothing


def test_batched_foreign_traffic_moves_the_low_water_mark_too(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, prefix: str) -> None:
    """Another application's transactions put many keys each: few revisions, many events for
    a replay to look at. The mark moves when the replay was large, whatever the revisions.
    (The prefix holds more keys than there are revisions, so the pass samples the traffic:
    with fewer, it walks the prefix without knowing the replay's size, and walks again next
    time as cheaply.)"""
    from gitconf.store import wire_put

    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "".join(f"k{i}: {i}\n"
                                                               for i in range(80))})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    batches = ADVANCE_AFTER // 100 + 1
    for i in range(batches):  # 100 puts a transaction: far fewer revisions than ADVANCE_AFTER
        store.txn_wire([], [wire_put(f"{prefix}-other/b{j}".encode(), f"{i}".encode())
                            for j in range(100)])
    seen_before = LastApplied.from_json(store.get(keys.last_applied).value).seen
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    seen_after = LastApplied.from_json(store.get(keys.last_applied).value).seen
    assert seen_after - seen_before >= batches  # moved past the traffic
    before = store.revision()
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.revision() == before


def _bulk_traffic(store: EtcdStore, prefix: str, batches: int, tag: str) -> None:
    """Another application writing 100 keys a transaction under its own prefix."""
    from gitconf.store import wire_put

    for i in range(batches):
        store.txn_wire([], [wire_put(f"{prefix}-other/{tag}{j}".encode(), f"{i}".encode())
                            for j in range(100)])


@pytest.mark.parametrize("edit", ["changed", "deleted", "added"])
def test_drift_amid_bulk_foreign_traffic_is_found_and_reverted(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, prefix: str,
        edit: str) -> None:
    """After enough foreign traffic, a no-op pass reads what changed from the prefix instead
    of replaying the traffic (`EtcdStore._walk`); deletes it cannot see send it back to the
    replay. Either way the out-of-band edit inside the traffic is found and reverted."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\nb: 2\n", "web/prod.yaml": "c: 3\n",
                                      ".gitconf.yaml": "drift: revert\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    web = UnitId("web", "prod")
    _bulk_traffic(store, prefix, 40, "x")
    if edit == "changed":
        store.put(keys.data_key(web, "c"), b'{"value": 9, "version": "manual", "metadata": {}}')
    elif edit == "deleted":
        store.delete(keys.data_key(web, "c"))
    else:
        store.put(keys.data_key(web, "stray"), b"42")
    _bulk_traffic(store, prefix, 40, "y")
    traffic_end = store.revision()
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    assert [(d["service"], d["environment"]) for d in res.json()["deploys"]] == [("web", "prod")]
    live = {kv.key: json.loads(kv.value)["value"]
            for kv in store.scan(keys.data_key(web, ""))[0]}
    assert live == {keys.data_key(web, "c"): 3}
    seen = LastApplied.from_json(store.get(keys.last_applied).value).seen
    assert seen >= traffic_end  # the pass moved its mark past the traffic
    before = store.revision()
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    assert store.revision() == before


def test_a_walk_cut_into_parts_finds_drift_in_every_part(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a repository of many services the walk of the prefix is read in parts cut at
    services (`selection.WALK_PARTS`), which etcd serves in parallel: an edit in the first
    part, one in the last and one beside a cut are all found and reverted."""
    from gitconf.selection import WALK_PARTS, WALK_PARTS_FROM

    names = [f"s{i:03}" for i in range(WALK_PARTS_FROM + 6)]
    repo = make_repo(tmp_path / "r", {**{f"{n}/prod.yaml": f"v: {i}\n"
                                         for i, n in enumerate(names)},
                                      ".gitconf.yaml": "drift: revert\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    cut_at: list[list[bytes]] = []
    walk_reads = EtcdStore._walk_reads

    def recording(self: EtcdStore, pfx: bytes, start: int, until: int, cuts: list[bytes],
                  ) -> tuple[int, list, bool]:
        cut_at.append(list(cuts))
        return walk_reads(self, pfx, start, until, cuts)

    monkeypatch.setattr(EtcdStore, "_walk_reads", recording)
    _bulk_traffic(store, prefix, 30, "x")
    middle = names[len(names) // 2]
    edited = [names[0], middle, names[-1]]
    for name in edited:
        store.put(keys.data_key(UnitId(name, "prod"), "v"),
                  b'{"value": -1, "version": "manual", "metadata": {}}')
    _bulk_traffic(store, prefix, 30, "y")
    res = cli("apply", "--repo", str(repo.path), "-f", "json", env=env)
    assert res.exit_code == 0, res.stderr
    assert cut_at and len(cut_at[0]) == WALK_PARTS - 1  # the walk answered, in parts
    assert all(c.startswith(keys.root_b) and c.endswith(b"/") for c in cut_at[0])
    assert keys.root_b + middle.encode() + b"/" in cut_at[0]
    assert sorted(d["service"] for d in res.json()["deploys"]) == edited
    for name in edited:
        kv = store.get(keys.data_key(UnitId(name, "prod"), "v"))
        assert kv is not None and json.loads(kv.value)["value"] == names.index(name)
