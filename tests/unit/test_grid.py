"""`cli.grid`: borderless tables drawn line by line must be what rich's `Table(box=None,
pad_edge=False, show_edge=False)` draws, character for character, whatever the cells (wide
characters, brackets rich would take for markup, empty cells); tables rich would fold are
rich's."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gitconf.cli.grid import Cell, grid, styled_lines

TEXT = st.text(st.sampled_from("ab xyz-#:/.[]\\✓界é0123456789"), max_size=12)
CELL = st.one_of(TEXT, st.lists(st.tuples(TEXT, st.sampled_from(["", "green", "bold red"])),
                                min_size=1, max_size=3).map(tuple))


def _console(width: int, color: bool) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False, soft_wrap=True,
                   color_system="truecolor" if color else None, force_terminal=color)


def _rich(columns: list[tuple[str, Any]], rows: list[list[Cell]], width: int) -> str:
    con = _console(width, False)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, justify in columns:
        table.add_column(Text(header), justify=justify)  # the grid's headers are text too
    for row in rows:
        table.add_row(*(Text(c) if isinstance(c, str) else Text.assemble(*c) for c in row))
    con.print(table)
    return con.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def _grid(columns: list[tuple[str, Any]], rows: list[list[Cell]], width: int,
          color: bool = False) -> str:
    con = _console(width, color)
    grid(con, columns, rows)
    return con.file.getvalue()  # type: ignore[attr-defined, no-any-return]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_grid_is_what_rich_draws(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 5))
    columns = [(data.draw(TEXT), data.draw(st.sampled_from(["left", "right"])))
               for _ in range(n)]
    rows = data.draw(st.lists(st.lists(CELL, min_size=n, max_size=n), max_size=6))
    width = data.draw(st.sampled_from([16384, 40, 12]))
    assert _grid(columns, rows, width) == _rich(columns, rows, width)


def test_line_breaks_and_controls_are_left_to_rich() -> None:
    columns: list[tuple[str, Any]] = [("unit", "left"), ("note", "left")]
    for odd in ("two\nlines", "a\ttab", "bell\x07"):
        rows: list[list[Cell]] = [["svc/prod", odd], ["other/dev", "fine"]]
        assert _grid(columns, rows, 16384) == _rich(columns, rows, 16384)


def test_styles_reach_the_terminal_and_only_their_cell() -> None:
    out = _grid([("unit", "left"), ("state", "left")],
                [[(("✓", "green"), (" svc/prod", "")), (("drifted", "red"),)]], 100, color=True)
    assert "\x1b[32m✓\x1b[0m svc/prod" in out and "\x1b[31mdrifted\x1b[0m" in out
    assert "\x1b[1munit" in out  # the header in the table header style


PART = st.tuples(st.text(st.sampled_from("ab xyz-#:/.[]\\✓界é0123456789=→~+"), max_size=14),
                 st.sampled_from(["", "green", "bold", "dim", "bold red"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(PART, max_size=5), max_size=6), st.booleans())
def test_styled_lines_are_what_rich_prints_for_the_same_styled_text(
        lines: list[list[tuple[str, str]]], color: bool) -> None:
    """On gitconf's console (soft wrap, no highlighting), with and without colour. (The
    markup they replace printed emoji codes in values as emoji; rich's `escape` also doubles
    a backslash at the very end of a markup string, so markup is not the reference here.)"""
    ours, theirs = _console(40, color), _console(40, color)
    styled_lines(ours, lines)
    for parts in lines:
        theirs.print(Text.assemble(*parts), soft_wrap=True)
    assert ours.file.getvalue() == theirs.file.getvalue()  # type: ignore[attr-defined]


def test_a_change_line_is_what_its_markup_printed() -> None:
    con, old = _console(200, True), _console(200, True)
    styled_lines(con, [[("  ", ""), ("~ db.port", "yellow"), (": 5432 ", ""), ("→", "dim"),
                        (" 6543", "")], [("  ", ""), ("+ x", "green"), (' = "a:fire:b"', "")]])
    old.print("  [yellow]~ db.port[/]: 5432 [dim]→[/] 6543")
    old.print('  [green]+ x[/] = "a:fire:b"', emoji=False)  # the emoji code stays text now
    assert con.file.getvalue() == old.file.getvalue()  # type: ignore[attr-defined]


def test_styled_lines_leave_controls_to_rich_and_stream() -> None:
    con = _console(40, False)
    styled_lines(con, ([(f"line {i}", "green")] for i in range(5_000)))
    text = con.file.getvalue()  # type: ignore[attr-defined]
    assert text.splitlines() == [f"line {i}" for i in range(5_000)]
    con = _console(40, False)
    styled_lines(con, [[("a\\tb", "")], [("two\nlines", "bold")], [("bell\x07", "")]])
    plain = _console(40, False)
    for line in ("a\\tb", "two\nlines", "bell\x07"):
        plain.print(Text(line), soft_wrap=True)
    assert con.file.getvalue() == plain.file.getvalue()  # type: ignore[attr-defined]
