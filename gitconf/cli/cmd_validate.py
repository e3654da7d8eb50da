"""`gitconf validate [PATH]`: the check that runs in pull requests and pre-commit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from .app import ValidateFormat, app, console, edge, out_json

if TYPE_CHECKING:
    from ..model import Problem
    from ..trees import Tree
    from ..validation import ValidationReport


NO_SERVICES = ("no services found: a config repository has files like "
               "<service>/<environment>.yaml (e.g. payments/prod.yaml); is PATH its root?")


@app.command()
@edge
def validate(
    path: Annotated[Path, typer.Argument(help="Root of the config repository (a working "
                                              "tree: files as they are, committed or not).")
                    ] = Path("."),
    format: Annotated[ValidateFormat, typer.Option(
        "--format", "-o", "-f",
        help="text; json (stdout); github (workflow annotations on the offending lines); "
             "markdown (a GitHub job summary)."),
    ] = ValidateFormat.text,
) -> None:
    """Check layout, names, YAML, keys, limits and schemas; exit 1 if anything is wrong.

    Every problem is reported at once, with its file, line and column; secret
    values are never shown. A directory without any service is an error too.
    Needs no etcd.

    Examples:
      gitconf validate                   the repository in this directory
      gitconf validate config/ -o github   annotations in a GitHub Actions log
      gitconf validate -o markdown >> "$GITHUB_STEP_SUMMARY"
      gitconf validate -o json | jq '.problems[]'
    """
    from ..loading import check_in_workers
    from ..model import Problem
    from ..trees import FileTree
    from ..validation import validate_tree

    if not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    tree = FileTree(path)
    report = validate_tree(tree, check_in_workers)
    if report.units == 0 and not report.errors:
        report.problems.append(Problem("", 0, 0, "no-services", NO_SERVICES))
    if format is ValidateFormat.json:
        out_json(report.as_json())
    elif format is ValidateFormat.github:
        render_github(report, path)
    elif format is ValidateFormat.markdown:
        print(render_markdown(report), end="")
    else:
        render_text(report, tree)
    if not report.valid:
        raise typer.Exit(1)


def render_markdown(report: ValidationReport) -> str:
    from .render import md_problems, plural

    summary = f"{report.files} files, {report.units} units, {report.keys} keys"
    if report.valid and not report.problems:
        return f"### gitconf validate\n\n✅ valid: {summary}\n"
    errors = len(report.errors)
    verdict = "❌ invalid" if not report.valid else "⚠️ valid, with warnings"
    lines = ["### gitconf validate", "",
             f"{verdict}: {plural(errors, 'error')}, "
             f"{plural(len(report.problems) - errors, 'warning')} ({summary})", "",
             *md_problems([p.as_json() for p in report.problems])]
    return "\n".join(lines) + "\n"


def render_text(report: ValidationReport, tree: Tree) -> None:
    """Problems grouped by file, each with its source line and a caret under the column."""
    from rich.markup import escape

    con = console()
    by_file: dict[str, list[Problem]] = {}
    for p in report.problems:
        by_file.setdefault(p.file, []).append(p)
    for problem in by_file.pop("", []):
        con.print(f"[red]✗[/] {escape(problem.message)}")
    for file, problems in by_file.items():
        try:
            lines = next(iter(tree.read([file])))[1].decode("utf-8", "replace").splitlines()
        except (OSError, KeyError, StopIteration):
            lines = []
        con.print(f"[bold]{escape(file)}[/]")
        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            con.print(f"  {p.line}:{p.column}  [{colour}]{p.code}[/]  {escape(p.message)}")
            if 0 < p.line <= len(lines):
                src = lines[p.line - 1].expandtabs(1)
                if p.secret:
                    src = _mask_line(src)
                if len(src) > 160:
                    src = src[:159] + "…"
                con.print(f"    [dim]{p.line:>4} |[/] {escape(src)}")
                con.print(f"    [dim]     |[/] {' ' * (p.column - 1)}[{colour}]^[/]")
    n_files = len(by_file)
    summary = f"{report.files} files, {report.units} units, {report.keys} keys"
    if report.valid:
        con.print(f"[green]✓[/] valid: {summary}")
    else:
        errors = len(report.errors)
        where = f" in {n_files} file{'s' * (n_files != 1)}" if n_files else ""
        con.print(f"[red]✗[/] {errors} problem{'s' * (errors != 1)}{where} ({summary})")


def _mask_line(src: str) -> str:
    """Keep the key, hide the value: `  token: hunter2` -> `  token: ***`."""
    head, sep, _ = src.partition(":")
    return f"{head}: ***" if sep else "***"


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(report: ValidationReport, root: Path) -> None:
    """GitHub workflow commands; paths are made relative to the working directory (the
    workspace in Actions) so annotations land on the right file even in a subdirectory."""
    prefix = os.path.relpath(root.resolve(), Path.cwd().resolve()).replace(os.sep, "/")
    prefix = "" if prefix == "." else prefix + "/"
    for p in report.problems:
        level = "error" if p.severity == "error" else "warning"
        where = [f"file={_escape_property(prefix + p.file)}", f"line={p.line}",
                 f"col={p.column}"] if p.file else []
        props = ",".join([*where, f"title={_escape_property('gitconf ' + p.code)}"])
        print(f"::{level} {props}::{_escape_data(p.message)}")
    state = "valid" if report.valid else f"{len(report.errors)} problem(s)"
    print(f"gitconf validate: {state} ({report.files} files, {report.keys} keys)")
