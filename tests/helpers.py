"""Test helpers shared by every test module: real Git repositories built from dicts of files,
and the CLI run in-process with stdout and stderr kept apart."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gitconf.cli.main import app

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice Example",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice Example",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": os.environ.get("HOME", "/tmp"),
}


def git(cwd: Path | str, *args: str, env: Mapping[str, str] | None = None) -> str:
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    res = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
                          *args], cwd=cwd, env=full_env, capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {res.stderr}")
    return res.stdout.strip()


class GitRepo:
    """A real working tree with a history, built by the test."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q")

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        """Write (or with None, delete) files relative to the root."""
        for rel, content in files.items():
            p = self.path / rel
            if content is None:
                if p.exists():
                    p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)

    def commit(self, files: Mapping[str, str | bytes | None] | None = None,
               message: str = "change config", author: str | None = None,
               date: str | None = None) -> str:
        if files:
            self.write(files)
        git(self.path, "add", "-A")
        env: dict[str, str] = {}
        if author:
            name, _, email = author.partition(" <")
            env.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email.rstrip(">"))
        if date:
            env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        git(self.path, "commit", "-q", "--allow-empty", "-m", message, env=env)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def tag(self, name: str, ref: str = "HEAD") -> None:
        git(self.path, "tag", name, ref)


def make_repo(root: Path, files: Mapping[str, str | bytes | None],
              message: str = "initial config") -> GitRepo:
    repo = GitRepo(root)
    repo.commit(files, message=message)
    return repo


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(*args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Run:
    """Run `gitconf ARGS` in-process, like a user at a terminal would (minus the terminal)."""
    runner = CliRunner()
    result = runner.invoke(app, list(args), env=dict(env or {}), input=input,
                           catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def process_running(pid: int) -> bool:
    """`pid` is alive (a zombie, exited but not reaped, is not): from /proc, Linux only."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
