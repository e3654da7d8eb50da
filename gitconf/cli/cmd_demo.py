"""`gitconf demo`: the whole tour on a throwaway etcd and a copy of the example repository.

It runs the real commands (in-process), so what it shows is what a user gets.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from .app import app, console, edge, helptext

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


class Tour:
    """Runs the real commands in-process, each under a heading with its command line."""

    def __init__(self, con: Any):
        self.con = con
        self.failures = 0

    def step(self, title: str, *args: str) -> None:
        self.con.print()
        shown = " ".join(a if a and " " not in a else repr(a) for a in args)
        self.heading(title, f"gitconf {shown}")
        try:
            code = app(list(args), standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
        except typer.Exit as exc:
            code = exc.exit_code
        if code == 130:
            raise KeyboardInterrupt  # Ctrl-C ends the tour (and its etcd), not just a step
        if code:
            self.failures += 1

    def heading(self, title: str, command: str) -> None:
        from rich.markup import escape

        self.con.rule(f"[bold cyan]{escape(title)}[/]", align="left")
        self.con.print(f"[dim]$ {escape(command)}[/]")

    def say(self, text: str) -> None:
        self.con.print(text, style="dim", markup=False)


def _basics(tour: Tour, repo: Path) -> None:
    r = str(repo)
    tour.step("1. validate the repository (what CI runs on every pull request)", "validate", r)
    tour.step("2. what would change in etcd", "diff", "--repo", r, "--service", "payments")
    tour.step("3. apply v1.0.0: one versioned deploy per unit", "apply", "--repo", r,
              "--actor", "demo")
    tour.step("4. every key is an envelope with value, version and provenance",
              "get", "payments", "prod", "database.pool_size")
    tour.step("5. applying again writes nothing", "apply", "--repo", r)
    prod = repo / "payments" / "prod.yaml"
    prod.write_text(prod.read_text().replace("pool_size: 50", "pool_size: 80"))
    checkout = repo / "checkout" / "prod.yaml"
    checkout.write_text(checkout.read_text().replace("workers: 32", "workers: 48"))
    _git(repo, "commit", "-q", "-am", "Scale payments pool and checkout workers")
    tour.step("6. a second commit: diff shows exactly what changed", "diff", "--repo", r)
    tour.step("7. apply it: two units, one deploy each", "apply", "--repo", r, "--actor", "demo")
    tour.step("8. status of every unit", "status", "--repo", r)
    tour.step("9. history of payments/prod", "history", "payments", "prod")


def _rollback(tour: Tour, repo: Path) -> None:
    r = str(repo)
    tour.step("10. on call: roll payments/prod back to v1.0.0 (restored exactly, then pinned)",
              "rollback", "v1.0.0", "--repo", r, "-s", "payments", "-e", "prod", "--yes",
              "--actor", "on-call", "--reason", "INC-7: pool of 80 exhausts the database")
    tour.step("11. apply leaves the pinned unit alone, and says so", "apply", "--repo", r)
    tour.step("12. status shows the pin: who, when, why", "status", "--repo", r, "-s",
              "payments", "-e", "prod")
    tour.step("13. unpin hands it back to Git", "unpin", "payments", "prod")
    tour.step("14. and the next apply converges it", "apply", "--repo", r, "--actor", "demo")


def _drift(tour: Tour, repo: Path, endpoint: str) -> None:
    from ..etcdstore import connect
    from ..model import UnitId
    from ..records import Keys

    r = str(repo)
    key = Keys("/config").data_key(UnitId("search", "prod"), "index.products.shards")
    tour.con.print()
    tour.heading("15. someone writes to etcd by hand", f"etcdctl put {key.decode()} 12")
    store = connect(endpoint)
    try:
        store.put(key, b"12")
    finally:
        store.close()
    tour.step("16. diff shows the drift: etcd changed, Git did not", "diff", "--repo", r,
              "-s", "search")
    tour.say("this repository's .gitconf.yaml says `drift: pr`: the value someone wrote is kept, "
             "held as an override, and proposed to Git as a pull request")
    tour.step("17. apply keeps the drift as an override (policy pr)", "apply", "--repo", r)


def _override(tour: Tour, repo: Path) -> None:
    r = str(repo)
    tour.step("18. an emergency change, live at once, with a pull request that makes Git agree",
              "override", "payments", "prod", "database.pool_size", "120", "--repo", r,
              "--actor", "on-call", "--reason", "INC-8: more connections for the sale")
    tour.say("no GITHUB_TOKEN here: the branch is pushed to the repository and gitconf says "
             "which pull request to open")
    tour.step("19. open overrides and their pull requests", "overrides")
    tour.step("20. apply holds the overridden keys until the pull request merges",
              "apply", "--repo", r)


@app.command()
@edge
def demo(
    example: Annotated[Path | None, typer.Option(
        "--example", help=helptext("Config repository to demo [default: "
                                   "examples/config-repo].")),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the temporary repo and etcd data "
                                                      "behind and print where.")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="After the tour, run the daemon on the repo's working tree: edit a "
                        "YAML file and see it applied (Ctrl-C to stop).")] = False,
) -> None:
    """The whole tour on a throwaway etcd and a copy of the example repository.

    Walks through validate, diff, apply, a second commit, status and history;
    then what on-call meets: a rollback and its pin, a hand write to etcd
    (drift) handled as the repository's policy says, and an override with its
    pull request. Nothing outside a temporary directory is touched; no network
    is used.

    Examples:
      gitconf demo
      gitconf demo --keep                look around afterwards
      gitconf demo --watch               then edit files and see them applied
    """
    from ..embedded_etcd import EmbeddedEtcd

    source = example or find_example()
    if source is None or not source.is_dir():
        raise UsageError("example repository not found; pass --example PATH")
    con = console()
    if not sys.stdout.isatty():
        con.width = 100  # headings as rules, not 16,000 columns of them
    workdir = Path(tempfile.mkdtemp(prefix="gitconf-demo-"))
    repo = _prepare(source, workdir)
    etcd = EmbeddedEtcd(data_dir=str(workdir / "etcd"))
    con.rule("[bold]gitconf demo")
    con.print(f"starting a throwaway etcd ({etcd.endpoint}) and a config repo in {repo}")
    etcd.start()
    saved = {k: os.environ.get(k) for k in ("GITCONF_ETCD_ENDPOINTS", "GITCONF_PREFIX",
                                            "GITHUB_TOKEN")}
    os.environ.update(GITCONF_ETCD_ENDPOINTS=etcd.endpoint, GITCONF_PREFIX="/config")
    os.environ.pop("GITHUB_TOKEN", None)  # the demo never talks to GitHub
    tour = Tour(con)
    try:
        _basics(tour, repo)
        _rollback(tour, repo)
        _drift(tour, repo, etcd.endpoint)
        _override(tour, repo)
        if watch:
            tour.step("21. watching the working tree: edit a file under the repo to apply it",
                      "daemon", "--repo", str(repo), "--worktree", "--interval", "5",
                      "--listen", "127.0.0.1:0")
        con.print()
        if tour.failures:
            con.print(f"[red]demo finished with {tour.failures} failing step(s)[/]")
        else:
            con.print("[green]demo complete[/]: validate, diff, apply, history, status, "
                      "rollback, drift and override against a real etcd")
    finally:
        _restore(saved)
        etcd.stop()
        if keep:
            con.print(f"kept: repo {repo}, etcd data {etcd.data_dir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if tour.failures:
        raise typer.Exit(1)


def _prepare(source: Path, workdir: Path) -> Path:
    repo = workdir / "config-repo"
    shutil.copytree(source, repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Initial configuration\n\nApproved-by: Riley Reviewer "
                                     "<riley@example.com>")
    _git(repo, "tag", "v1.0.0")
    return repo


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
