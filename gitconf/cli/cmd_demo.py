"""`gitconf demo`: the whole tour on a throwaway etcd and a copy of the example repository.

It runs the real commands (in-process), so what it shows is what a user gets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .app import app, console, edge

DEMO_IDENTITY = {
    "GIT_AUTHOR_NAME": "Dana Developer", "GIT_AUTHOR_EMAIL": "dana@example.com",
    "GIT_COMMITTER_NAME": "Dana Developer", "GIT_COMMITTER_EMAIL": "dana@example.com",
}


def find_example() -> Path | None:
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        candidate = base / "examples" / "config-repo"
        if (candidate / "payments").is_dir():
            return candidate
    return None


def _git(repo: Path, *args: str) -> None:
    from ..gitsource import run_git

    run_git(list(args), cwd=repo, env=DEMO_IDENTITY,
            config=(("init.defaultBranch", "main"), ("commit.gpgSign", "false")))


@app.command()
@edge
def demo(
    example: Annotated[Path | None, typer.Option(
        "--example", help="Config repository to demo [default: examples/config-repo].")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the temporary repo and etcd data "
                                                      "behind and print where.")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="After the tour, run the daemon on the repo's working tree: edit a "
                        "YAML file and see it applied (Ctrl-C to stop).")] = False,
) -> None:
    """The whole tour on a throwaway etcd and a copy of the example repository.

    Walks through validate, diff, apply, a second commit, status and history; nothing outside
    a temporary directory is touched."""
    from ..embedded_etcd import EmbeddedEtcd

    source = example or find_example()
    if source is None or not source.is_dir():
        raise UsageError("example repository not found; pass --example PATH")
    con = console()
    workdir = Path(tempfile.mkdtemp(prefix="gitconf-demo-"))
    repo = workdir / "config-repo"
    shutil.copytree(source, repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Initial configuration\n\nApproved-by: Riley Reviewer "
                                     "<riley@example.com>")
    _git(repo, "tag", "v1.0.0")
    etcd = EmbeddedEtcd(data_dir=str(workdir / "etcd"))
    con.rule("[bold]gitconf demo")
    con.print(f"starting a throwaway etcd ({etcd.endpoint}) and a config repo in {repo}")
    etcd.start()
    saved = {k: os.environ.get(k) for k in ("GITCONF_ETCD_ENDPOINTS", "GITCONF_PREFIX")}
    os.environ["GITCONF_ETCD_ENDPOINTS"] = etcd.endpoint
    os.environ["GITCONF_PREFIX"] = "/config"
    failures = 0
    try:
        r = str(repo)

        def step(title: str, *args: str) -> None:
            nonlocal failures
            con.print()
            con.rule(f"[bold cyan]{title}[/]  [dim]$ gitconf {' '.join(args)}", align="left")
            try:
                app(list(args), standalone_mode=False)
            except SystemExit as exc:
                failures += int(bool(exc.code))
            except typer.Exit as exc:
                failures += int(bool(exc.exit_code))

        step("1. validate the repository (what CI runs on every pull request)", "validate", r)
        step("2. what would change in etcd", "diff", "--repo", r, "--service", "payments")
        step("3. apply v1.0.0: one versioned deploy per unit", "apply", "--repo", r,
             "--actor", "demo")
        step("4. every key is an envelope with value, version and provenance",
             "get", "payments", "prod", "database.pool_size")
        step("5. applying again writes nothing", "apply", "--repo", r)
        prod = repo / "payments" / "prod.yaml"
        prod.write_text(prod.read_text().replace("pool_size: 50", "pool_size: 80"))
        checkout = repo / "checkout" / "prod.yaml"
        checkout.write_text(checkout.read_text().replace("workers: 32", "workers: 48"))
        _git(repo, "commit", "-q", "-am", "Scale payments pool and checkout workers")
        step("6. a second commit: diff shows exactly what changed", "diff", "--repo", r)
        step("7. apply it: two units, one deploy each", "apply", "--repo", r, "--actor", "demo")
        step("8. status of every unit", "status", "--repo", r)
        step("9. history of payments/prod", "history", "payments", "prod")
        if watch:
            step("10. watching the working tree: edit a file under the repo to apply it",
                 "daemon", "--repo", r, "--worktree", "--interval", "5",
                 "--listen", "127.0.0.1:0")
        con.print()
        if failures:
            con.print(f"[red]demo finished with {failures} failing step(s)[/]")
        else:
            con.print("[green]demo complete[/]: validate, diff, apply, history and status "
                      "against a real etcd")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if keep:
            etcd.stop()
            con.print(f"kept: repo {repo}, etcd data {etcd.data_dir}")
        else:
            etcd.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        raise typer.Exit(1)
