"""Borderless tables drawn line by line, the way rich draws `Table(box=None, pad_edge=False,
show_edge=False)`: columns two spaces apart, each cell padded to its column's width, the header
in the table header style.

Rich lays a table out cell by cell, ~1.2 ms a row: 0.3 s for the 200-row deploys table of a
first apply (4% of it), seconds for `status` of 30,000 units. Here a row is one padded string
(plus a style where a cell has one), so a table costs what printing its text costs. A table
rich would have to fold (wider than the terminal, or a cell holding a line break, a tab or a
control character) is left to rich's `Table`, which folds it; tests/unit/test_grid.py holds
every other table to rich's output, character for character.

`styled_lines` does the same for lines of styled text (a diff's changes): rich parses each
`con.print` of markup and lays it out, ~0.3 ms a line, 35 s for the first diff of 100,000 keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style
from rich.text import Text

Cell = str | tuple[tuple[str, str], ...]  # plain text, or (text, rich style) parts
Justify = Literal["left", "right"]
_UNRULY = re.compile(r"[\x00-\x1f\x7f]")  # line breaks, tabs, controls: rich's to fold
_ASCII = re.compile(r"[\x20-\x7e]+")


def _width(text: str) -> int:
    """Cells `text` takes on a terminal: ASCII counted by `len`, the rest by rich (which
    looks every character up: 1 ms for a line of a thousand)."""
    if text.isascii():
        return len(text)
    rest = _ASCII.sub("", text)
    return len(text) - len(rest) + cell_len(rest)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else "".join(text for text, _ in cell)


def grid(con: Console, columns: Sequence[tuple[str, Justify]], rows: Iterable[Sequence[Cell]],
         ) -> None:
    """Print `rows` under `columns` ((header, justify) pairs) on `con`."""
    rows = list(rows)
    texts = [[_text(c) for c in row] for row in rows]
    heads = [h for h, _ in columns]
    if any(_UNRULY.search(t) for row in texts for t in row) or \
            any(_UNRULY.search(h) for h in heads):
        _rich_table(con, columns, rows)
        return
    widths = [_width(h) for h in heads]
    for row in texts:
        for i, t in enumerate(row):
            n = _width(t)
            if n > widths[i]:
                widths[i] = n
    if not any(widths) and len(widths) == 1:
        widths[0] = 1  # rich draws an empty one-column table one space wide
    if sum(widths) + 2 * (len(widths) - 1) > con.width:
        _rich_table(con, columns, rows)
        return
    con.print(Segments(_segments(con, columns, widths, rows, texts)), soft_wrap=True)


def _pad(text: str, width: int, justify: Justify) -> str:
    """A cell's text padded to its column's width; right-justified, without its trailing
    whitespace (as rich justifies)."""
    if justify == "right":
        text = text.rstrip()
    gap = width - _width(text)
    return text + " " * gap if justify == "left" else " " * gap + text


def _stripped(parts: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """Styled parts without the cell's trailing whitespace."""
    keep = len("".join(text for text, _ in parts).rstrip())
    out = []
    for text, style in parts:
        out.append((text[:keep], style))
        keep = max(0, keep - len(text))
    return out


def _segments(con: Console, columns: Sequence[tuple[str, Justify]], widths: list[int],
              rows: list[Sequence[Cell]], texts: list[list[str]]) -> list[Segment]:
    """The whole table as segments, an unstyled run of a line in one segment: printed as they
    are, with no layout left to do."""
    style_of = _Styles(con)
    out = [Segment("  ".join(_pad(h, w, j) for (h, j), w in zip(columns, widths, strict=True)),
                   style_of("table.header"))]
    add = out.append
    for row, row_texts in zip(rows, texts, strict=True):
        plain = ["\n"]
        for i, (cell, text) in enumerate(zip(row, row_texts, strict=True)):
            padded = ("  " if i else "") + _pad(text, widths[i], columns[i][1])
            if isinstance(cell, str):
                plain.append(padded)
                continue
            parts: Sequence[tuple[str, str]] = cell
            lead, gap = ("  " if i else ""), padded[len(text) + (2 if i else 0):]
            if columns[i][1] == "right":
                parts = _stripped(cell)
                lead, gap = padded[:len(padded) - len(text.rstrip())], ""
            add(Segment("".join(plain) + lead))
            for part, style in parts:
                add(Segment(part, style_of(style)))
            plain = [gap]
        add(Segment("".join(plain)))
    add(Segment("\n"))
    return out


Part = tuple[str, str]  # text, rich style ("": none)
FLUSH = 2_000  # lines held before they are printed


def styled_lines(con: Console, lines: Iterable[Sequence[Part]]) -> None:
    """Each line's parts, styled, as `con.print` prints the same markup on a soft-wrapping
    console (gitconf's: lines are never folded) with no emoji codes replaced: as segments, a
    few thousand lines at a time. A line with a line break, tab or control character goes
    through rich's `Text`, which handles them."""
    styles = _Styles(con)
    out: list[Segment] = []
    for n, parts in enumerate(lines, 1):
        if any(_UNRULY.search(text) for text, _ in parts):
            _flush(con, out)
            con.print(Text.assemble(*parts), soft_wrap=True)
            continue
        out.extend(Segment(text, styles(style)) for text, style in parts if text)
        out.append(Segment("\n"))
        if n % FLUSH == 0:
            _flush(con, out)
    _flush(con, out)


def _flush(con: Console, out: list[Segment]) -> None:
    if out:
        con.print(Segments(out), soft_wrap=True, end="")
        out.clear()


class _Styles(dict[str, Style | None]):
    """Rich styles by name, each parsed once."""

    def __init__(self, con: Console):
        super().__init__({"": None})
        self.con = con

    def __call__(self, name: str) -> Style | None:
        if name not in self:
            self[name] = self.con.get_style(name, default="")
        return self[name]


def _rich_table(con: Console, columns: Sequence[tuple[str, Justify]],
                rows: list[Sequence[Cell]]) -> None:
    from rich.table import Table  # only for a table that folds: 4 ms a run otherwise

    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, justify in columns:
        table.add_column(Text(header), justify=justify)
    for row in rows:
        table.add_row(*(Text(c) if isinstance(c, str) else Text.assemble(*c) for c in row))
    con.print(table)
