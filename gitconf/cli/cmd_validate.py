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


@app.command()
@edge
def validate(
    path: Annotated[Path, typer.Argument(help="Root of the config repository.")] = Path("."),
    format: Annotated[ValidateFormat, typer.Option(
        "--format", "-f",
        help="text; json (stdout); github (workflow annotations on the offending lines)."),
    ] = ValidateFormat.text,
) -> None:
    """Check layout, names, YAML, keys, limits and schemas; exit 1 if anything is wrong."""
    from ..trees import FileTree
    from ..validation import validate_tree

    if not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    tree = FileTree(path)
    report = validate_tree(tree)
    if format is ValidateFormat.json:
        out_json(report.as_json())
    elif format is ValidateFormat.github:
        render_github(report, path)
    else:
        render_text(report, tree)
    if not report.valid:
        raise typer.Exit(1)


def render_text(report: ValidationReport, tree: Tree) -> None:
    """Problems grouped by file, each with its source line and a caret under the column."""
    from rich.markup import escape

    con = console()
    by_file: dict[str, list[Problem]] = {}
    for p in report.problems:
        by_file.setdefault(p.file, []).append(p)
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
        con.print(f"[red]✗[/] {errors} problem{'s' * (errors != 1)} in {n_files} "
                  f"file{'s' * (n_files != 1)} ({summary})")


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
        props = ",".join([
            f"file={_escape_property(prefix + p.file)}",
            f"line={p.line}",
            f"col={p.column}",
            f"title={_escape_property('gitconf ' + p.code)}",
        ])
        print(f"::{level} {props}::{_escape_data(p.message)}")
    state = "valid" if report.valid else f"{len(report.errors)} problem(s)"
    print(f"gitconf validate: {state} ({report.files} files, {report.keys} keys)")
