"""The GitHub Action's script, run as Actions would run it (bash, inputs in the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_step(tmp: Path, command: str, path: str) -> subprocess.CompletedProcess[str]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    script = action["runs"]["steps"][-1]["run"]
    env = {**os.environ, "INPUT_COMMAND": command, "INPUT_PATH": path, "INPUT_ARGS": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script], cwd=tmp, env=env, capture_output=True,
                          text=True)


def test_validate_step_annotates_and_fails(tmp_path: Path) -> None:
    (tmp_path / "config" / "svc").mkdir(parents=True)
    (tmp_path / "config" / "svc" / "prod.yaml").write_text("a: 1\na: 2\n")
    res = run_step(tmp_path, "validate", "config")
    assert res.returncode == 1
    assert ("::error file=config/svc/prod.yaml,line=2,col=1,title=gitconf duplicate-key::"
            in res.stdout)


def test_validate_step_passes_on_the_example() -> None:
    res = run_step(ROOT, "validate", "examples/config-repo")
    assert res.returncode == 0, res.stdout + res.stderr


def test_unknown_command_is_an_error(tmp_path: Path) -> None:
    res = run_step(tmp_path, "deploy", ".")
    assert res.returncode == 2 and "unknown command 'deploy'" in res.stdout
