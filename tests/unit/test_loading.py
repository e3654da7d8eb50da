"""The parallel loader (`gitconf.loading`): chunks cover the services once and in order, and
hold fewer services when services hold more keys; what worker processes give back is what
loading in process gives, however the repository is chunked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitconf.loading import CHUNK_KEYS, ChunkSizer, iter_units_parallel
from gitconf.repo_format import LoadOptions, iter_units, read_layout
from gitconf.trees import FileTree


@given(services=st.integers(0, 400), most=st.integers(1, 60),
       keys_per_service=st.lists(st.integers(0, 20_000), min_size=1, max_size=8))
def test_chunks_cover_the_services_in_order_and_follow_their_keys(
        services: int, most: int, keys_per_service: list[int]) -> None:
    selected: list[Any] = list(range(services))
    sizer = ChunkSizer(most=most)
    seen: list[Any] = []
    reported_services = reported_keys = 0
    for n, chunk in enumerate(sizer.chunks(selected)):
        if reported_services == 0:
            expected = min(ChunkSizer.FIRST, most)
        else:
            per = max(1.0, reported_keys / reported_services)
            expected = max(1, min(most, int(CHUNK_KEYS / per)))
        assert len(chunk) == min(expected, services - len(seen))
        seen.extend(chunk)
        keys = len(chunk) * keys_per_service[n % len(keys_per_service)]
        sizer.done(keys)  # results come back in order
        reported_services += len(chunk)
        reported_keys += keys
    assert seen == selected


def _repo(root: Path) -> Path:
    """Services of very different sizes (1 to 1,500 keys a file), one invalid file."""
    root.mkdir()
    (root / ".gitconf.yaml").write_text("environments: [dev, prod]\n")
    for i in range(14):
        svc = root / f"svc{i:02d}"
        svc.mkdir()
        keys = [1, 1500, 40, 900][i % 4]
        for env in ("dev", "prod"):
            (svc / f"{env}.yaml").write_text(
                "".join(f"k{k:04d}: {env}-{i}-{k}\n" for k in range(keys)))
    (root / "svc03" / "prod.yaml").write_text("a: [unclosed\n")
    return root


def test_workers_give_what_loading_in_process_gives(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    tree = FileTree(_repo(tmp_path / "r"))
    layout = read_layout(tree)
    alone = [(u.unit if u else None, u.values if u else None, problems)
             for u, problems in iter_units(tree, layout, LoadOptions())]
    compiled: dict[str, Any] = {}
    spread = [(u.unit if u else None, u.values if u else None, problems)
              for u, problems in iter_units_parallel(tree, layout, LoadOptions(), compiled,
                                                     workers=1)]
    assert spread == alone
    assert any(problems for _, _, problems in spread)  # the broken file's problem came back
    assert "parallel loading unavailable" not in caplog.text  # workers did the loading


FALLBACK = '''
import json, sys
if __name__ != "__main__":
    raise SystemExit(3)  # a spawned worker cannot import this script: the pool breaks
from gitconf.loading import iter_units_parallel
from gitconf.repo_format import LoadOptions, iter_units, read_layout
from gitconf.trees import FileTree
tree = FileTree(sys.argv[1])
layout = read_layout(tree)
def shown(pairs):
    return [[str(u.unit) if u else None, u.values if u else None, [str(p) for p in problems]]
            for u, problems in pairs]
print(json.dumps([shown(iter_units_parallel(tree, layout, LoadOptions(), {}, workers=1)),
                  shown(iter_units(tree, layout, LoadOptions()))]))
'''


def test_where_workers_cannot_start_the_rest_is_loaded_in_process(tmp_path: Path) -> None:
    """Chunks already sent to the broken pool are loaded again in process, none twice or
    lost."""
    script = tmp_path / "load.py"
    script.write_text(FALLBACK)
    res = subprocess.run([sys.executable, str(script), str(_repo(tmp_path / "r"))],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    spread, alone = json.loads(res.stdout)
    assert spread == alone and len(alone) == 28
    assert "parallel loading unavailable" in res.stderr
