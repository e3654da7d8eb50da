"""The layout of a commit remembered on disk (`gitconf.layoutcache`): exact round trips, nothing
trusted that does not read back exactly, and a reconciler in a new process that reuses the
layout of the commit applied last instead of listing the whole tree again. Real git
repositories; the in-memory store stands in for etcd (the plan is what is checked)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitconf import layoutcache
from gitconf.errors import CacheCorrupt
from gitconf.gitsource import GitSource
from gitconf.memstore import MemStore
from gitconf.model import Problem
from gitconf.reconcile import Reconciler, Request
from gitconf.records import Keys
from gitconf.repo_format import Layout, ServiceFiles, read_layout
from tests.helpers import make_repo

SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GITCONF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "layouts"


def sample() -> Layout:
    return Layout({"environments": ["dev", "prod"], "drift": {"policy": "report"}},
                  {"svc": ServiceFiles("svc", "svc/schema.yaml", "svc/_base.yaml",
                                       {"prod": "svc/prod.yaml", "dev": "svc/dev.yml"}),
                   "bare": ServiceFiles("bare", None, None, {"prod": "bare/prod.yaml"})},
                  ["schemas/common.json"],
                  [Problem("x/a/b.yaml", 1, 1, "layout", "nested", severity="warning"),
                   Problem("Bad/prod.yaml", 1, 1, "bad-name", "'Bad' is not valid", key="k",
                           secret=True)],
                  ".gitconf.yaml")


def test_a_saved_layout_reads_back_exactly() -> None:
    layoutcache.save(SHA_A, sample())
    assert layoutcache.load(SHA_A) == (SHA_A, sample())
    assert layoutcache.load(SHA_B) is None


def test_an_alias_reads_the_layout_it_names_and_keeps_it_fresh(cache_home: Path) -> None:
    layoutcache.save(SHA_A, sample())
    os.utime(cache_home / f"{SHA_A}.json", (1, 1))
    layoutcache.alias(SHA_B, SHA_A)
    assert layoutcache.load(SHA_B) == (SHA_A, sample())
    assert (cache_home / f"{SHA_A}.json").stat().st_mtime > 1  # touched: not pruned first
    assert (cache_home / f"{SHA_B}.json").stat().st_size < 200
    layoutcache.alias(SHA_A, "c" * 40)  # names nothing: not written
    assert layoutcache.load(SHA_A) == (SHA_A, sample())


@pytest.mark.parametrize("text", [
    "", "{", "[]", "null", '{"format": 1}', '{"format": 99, "gitconf": "x"}',
    '"' + "x" * 1000 + '"',
])
def test_an_unreadable_entry_is_ignored(cache_home: Path, text: str) -> None:
    cache_home.mkdir(parents=True)
    (cache_home / f"{SHA_A}.json").write_text(text)
    assert layoutcache.load(SHA_A) is None


def _saved(cache_home: Path) -> tuple[dict, list[list]]:  # type: ignore[type-arg]
    """The header and service lines of `sample()` saved under SHA_A."""
    layoutcache.save(SHA_A, sample())
    head, *lines = (cache_home / f"{SHA_A}.json").read_text().splitlines()
    return json.loads(head), [json.loads(line) for line in lines]


def _write_entry(cache_home: Path, head: dict, lines: list[list],  # type: ignore[type-arg]
                 digest: bool) -> None:
    """An entry as `layoutcache` writes one; with `digest`, the header's SHA-256 matches the
    (damaged) lines, as if whoever changed them knew the format."""
    rest = "".join(json.dumps(line) + "\n" for line in lines).encode()
    if digest:
        head = {**head, "digest": hashlib.sha256(rest).hexdigest(), "services": len(lines)}
    (cache_home / f"{SHA_A}.json").write_bytes(json.dumps(head).encode() + b"\n" + rest)


@pytest.mark.parametrize("damage", [
    lambda h, s: h.update(commit=SHA_B),  # an entry copied under another name
    lambda h, s: h.update(gitconf="0.0.1"),  # written by another release: rules may differ
    lambda h, s: h.update(settings=[1]),
    lambda h, s: h["problems"].append(["f", "1", 1, "c", "m", None, "error", False]),
    lambda h, s: h["problems"].append(["f", 1, 1, "c", "m", None, "fatal", False]),
    lambda h, s: h.update(shared_schemas=[{"a": 1}]),
    lambda h, s: h.pop("problems"),
    lambda h, s: h.update(units="3"),
    lambda h, s: h.update(services=5),  # not the number of lines
    lambda h, s: s.append(["x", None, None, {}]),  # a line the digest does not cover
    lambda h, s: s.pop(),
    lambda h, s: s[0].__setitem__(1, "other/schema.yaml"),
])
def test_an_entry_that_does_not_read_back_exactly_is_ignored(cache_home: Path, damage) -> None:  # type: ignore[no-untyped-def]
    head, lines = _saved(cache_home)
    damage(head, lines)
    _write_entry(cache_home, head, lines, digest=False)
    assert layoutcache.load(SHA_A) is None


@pytest.mark.parametrize("line", [["x", 5, None, {}], ["x", None, None, {"prod": ["p"]}],
                                  ["x", None], "not a list", ["x", None, None, {}, "extra"]])
def test_a_forged_service_line_is_refused_when_read(cache_home: Path, line: Any) -> None:
    """Service lines are read when asked for, so a line forged with a matching digest is
    found then: a clear error naming the cache (exit 2, deletable), never a wrong layout."""
    head, lines = _saved(cache_home)
    _write_entry(cache_home, head, [*lines, line], digest=True)
    loaded = layoutcache.load(SHA_A)
    assert loaded is not None
    layout = loaded[1]
    assert layout.services["svc"] == sample().services["svc"]  # other lines read fine
    with pytest.raises(CacheCorrupt, match=r"layout cache entry .* delete it"):
        list(layout.services)
    if isinstance(line, list) and line[:1] == ["x"]:
        with pytest.raises(CacheCorrupt):
            layout.services["x"]


def test_a_lookup_reads_only_the_line_it_needs(cache_home: Path) -> None:
    """A one-key pass of a 10,000-service repository asks for one service: that line is
    parsed, the others are left as text, and the unit count comes from the header."""
    big = sample()
    big.services = {f"s{i:05}": ServiceFiles(f"s{i:05}", None, None, {"prod": f"s{i:05}/p.yaml"})
                    for i in range(2000)}
    layoutcache.save(SHA_A, big)
    loaded = layoutcache.load(SHA_A)
    assert loaded is not None
    services = loaded[1].services
    assert isinstance(services, layoutcache.StoredServices)
    assert services["s01234"] == big.services["s01234"] and "s99999" not in services
    assert services._parsed.keys() == {"s01234"}
    assert loaded[1].unit_count() == 2000 and loaded[1].unit_count(["s00007", "nope"]) == 1
    assert loaded[1].unit_count(None, ["dev"]) == 0
    assert len(services) == 2000 and list(services) == list(big.services)


@pytest.mark.parametrize("count", [1, 3, 4, 57, 2000])
def test_a_stored_layout_spreads_names_as_a_fresh_one_does(count: int) -> None:
    """Where a walk of the prefix is cut: names spaced through the services, read from the
    stored text without parsing it (lines vary in length, so the picks may differ a little
    from the fresh layout's, never by more than a few services)."""
    big = sample()
    big.services = {f"s{i:05}": ServiceFiles(f"s{i:05}", None, None,
                                             {"prod": f"s{i:05}/p.yaml", **(
                                                 {"dev": f"s{i:05}/d.yaml"} if i % 3 else {})})
                    for i in range(count)}
    layoutcache.save(SHA_A, big)
    loaded = layoutcache.load(SHA_A)
    assert loaded is not None and isinstance(loaded[1].services, layoutcache.StoredServices)
    fresh, stored = big.spread(4), loaded[1].spread(4)
    assert loaded[1].services._parsed == {}  # nothing parsed
    if count < 4:
        assert fresh == stored == []
        return
    names = list(big.services)
    assert fresh == sorted(fresh) and len(fresh) == 3 and set(fresh) <= set(names)
    assert stored == sorted(stored) and set(stored) <= set(names)
    assert len(stored) == 3 if count >= 50 else 1 <= len(stored) <= 3  # a line found twice
    for b in stored:
        assert min(abs(names.index(a) - names.index(b)) for a in fresh) <= max(2, count // 50)


def test_a_spread_skips_what_it_cannot_read() -> None:
    services = layoutcache.StoredServices('["a",null,null,{}]\nnot json\n["c",null,null,{}]\n'
                                          '[7,null,null,{}]\n', 4)
    assert set(services.spread(4)) <= {"a", "c"}


def test_names_that_are_not_commit_ids_are_neither_read_nor_written(cache_home: Path) -> None:
    for name in ("../../etc/passwd", "HEAD", "A" * 40, "a" * 39, ""):
        layoutcache.save(name, sample())
        assert layoutcache.load(name) is None
    assert not cache_home.exists()


def test_settings_json_cannot_say_are_not_remembered() -> None:
    odd = sample()
    odd.settings = {"environments": ["prod"], 1: "a number key"}
    layoutcache.save(SHA_A, odd)
    assert layoutcache.load(SHA_A) is None


def test_only_the_newest_entries_are_kept(cache_home: Path) -> None:
    for i in range(layoutcache.KEEP + 5):
        sha = f"{i:040x}"
        layoutcache.save(sha, sample())
        os.utime(cache_home / f"{sha}.json", (1000 + i, 1000 + i))
    layoutcache.save(SHA_A, sample())
    kept = sorted(p.name for p in cache_home.iterdir())
    assert len(kept) == layoutcache.KEEP and f"{SHA_A}.json" in kept
    assert f"{0:040x}.json" not in kept


def test_a_cache_that_cannot_be_written_costs_nothing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("GITCONF_CACHE_DIR", str(blocked))
    layoutcache.save(SHA_A, sample())
    assert layoutcache.load(SHA_A) is None


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12)
TEXT = st.text(max_size=30)


@settings(max_examples=60, deadline=None)
@given(settings_=st.dictionaries(TEXT, st.recursive(
           st.none() | st.booleans() | st.integers() | TEXT,
           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
           max_leaves=8), max_size=4),
       services=st.dictionaries(NAMES, st.tuples(st.none() | TEXT, st.none() | TEXT,
                                                 st.dictionaries(NAMES, TEXT, max_size=3)),
                                max_size=4),
       problems=st.lists(st.builds(Problem, TEXT, st.integers(1, 10**6), st.integers(1, 999),
                                   TEXT, TEXT, st.none() | TEXT,
                                   st.sampled_from(["error", "warning"]), st.booleans()),
                         max_size=4),
       shared=st.lists(TEXT, max_size=3), settings_file=st.none() | TEXT)
def test_round_trip_law(settings_: dict, services: dict, problems: list[Problem],  # type: ignore[type-arg]
                        shared: list[str], settings_file: str | None) -> None:
    """Whatever layout is saved is the layout loaded (or, if JSON would change its settings,
    nothing is)."""
    layout = Layout(settings_, {n: ServiceFiles(n, s, b, e) for n, (s, b, e) in services.items()},
                    shared, problems, settings_file)
    layoutcache.save(SHA_A, layout)
    assert layoutcache.load(SHA_A) == (SHA_A, layout)


# -- a reconciler in a new process ---------------------------------------------------------------


def _reconciler(path: Path, store: MemStore) -> Reconciler:
    return Reconciler(GitSource.open(str(path)), store, Keys("/t"))


def _deployed(path: Path, store: MemStore, **kw: bool) -> list[tuple[str, str]]:
    """Apply HEAD with a reconciler of its own (a new process): the units it deployed."""
    result = _reconciler(path, store).run(Request(**kw))
    assert not result.failed
    return sorted((d.unit.service, d.unit.environment) for d in result.deploys)


def test_a_new_process_reuses_the_layout_of_the_commit_applied_last(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 1\n",
                                      "other/prod.yaml": "b: 1\n"})
    store = MemStore()
    first = repo.head()
    assert len(_deployed(repo.path, store)) == 3
    second = repo.commit({"svc/prod.yaml": "a: 2\n"})
    rec = _reconciler(repo.path, store)  # a new process: nothing in memory
    tree = rec.source.tree(second)
    layout = rec.layouts.at(second, tree, since=first)
    assert layout == read_layout(rec.source.tree(second))
    assert tree._blobs is None  # the whole tree was never listed
    assert _deployed(repo.path, store) == [("svc", "prod")]


def test_a_commit_that_adds_or_removes_files_gets_its_own_layout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    store = MemStore()
    assert _deployed(repo.path, store) == [("svc", "prod")]
    repo.commit({"svc/dev.yaml": "a: 3\n", "new/prod.yaml": "n: 1\n"})
    assert _deployed(repo.path, store) == [("new", "prod"), ("svc", "dev")]
    repo.commit({"new/prod.yaml": None})
    assert _deployed(repo.path, store) == [("new", "prod")]  # its keys are removed
    assert store.count(b"/t/new/")[0] == 0


def test_a_settings_change_is_never_served_from_the_old_layout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 1\n"})
    store = MemStore()
    _deployed(repo.path, store)
    sha = repo.commit({".gitconf.yaml": "environments: [prod]\n"})
    rec = _reconciler(repo.path, store)
    layout = rec.layouts.at(sha, rec.source.tree(sha), since=None)
    assert layout.settings == {"environments": ["prod"]}
    assert any(p.code == "unknown-environment" for p in layout.problems)


def test_layouts_in_one_process_reuse_a_layout_until_a_file_is_added(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    layouts = layoutcache.Layouts(GitSource.open(str(repo.path)))
    base = repo.head()
    first = layouts.at(base, layouts.source.tree(base))
    modified = repo.commit({"svc/prod.yaml": "a: 2\n"})
    tree = layouts.source.tree(modified)
    assert layouts.at(modified, tree) is first  # only a modified file: the same layout
    assert tree._blobs is None  # and the tree was not listed
    assert layoutcache.load(modified) == (base, first)  # on disk: an alias of the first entry
    added = repo.commit({"svc/dev.yaml": "a: 1\n"})
    grown = layouts.at(added, layouts.source.tree(added))
    assert grown == read_layout(layouts.source.tree(added)) != first
    assert layoutcache.load(added) == (added, grown)
