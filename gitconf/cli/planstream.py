"""A dry pass's plans shown as they come, for `diff` and `apply --dry-run`.

Those commands kept every unit's plan until the pass ended, then rendered it: the first diff
of 100,000 keys peaked at 78 MB as text and 188 MB as JSON, and memory grew with the keys
(a first diff of 1,000,000 keys would have needed gigabytes). Here each unit is rendered when
the pass has planned it, then let go: text lines are printed at once, JSON units are written
to a spooled temporary file (8 MB in memory, then on disk) and the document is put together
around them at the end, markdown keeps the first `MD_ROWS` units it shows. What stays per
unit is what a summary needs: counts, the set of units that differ, a --stat row.

The output is the same, byte for byte, as rendering the whole plan at the end:
tests/unit/test_planstream.py holds each format to `render`'s whole-plan functions.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from typing import IO, Any, TextIO

from rich.console import Console

from ..model import UnitId, UnitPlan
from .app import json_text
from .grid import Cell, styled_lines
from .render import (
    MD_ROWS,
    Counts,
    MdUnit,
    PlanTotals,
    render_stat,
    stat_row,
    unit_json,
    unit_lines,
)

_SPOOL = 8 << 20  # characters of JSON held in memory before the spool moves to disk
STREAMED = "\0gitconf-units\0"  # a document's "units" while they wait in the spool
_MARKER = '\n  "units": ' + json.dumps(STREAMED)  # a top-level key: unique in the text


class PlanStream:
    """Sees each unit a dry pass plans (`Watch` hands it those with something to write) and
    renders it as `format` says: "text", "json" or "markdown"."""

    def __init__(self, format: str, show_secrets: bool, stat: bool = False,
                 con: Console | None = None):
        self.format, self.show_secrets, self.stat, self.con = format, show_secrets, stat, con
        self.totals = PlanTotals()
        self.changing: set[UnitId] = set()
        self.stat_rows: list[list[Cell]] = []  # --stat text: column widths need every row
        self.md_units: list[MdUnit] = []
        self._spool: IO[str] | None = None

    def __call__(self, up: UnitPlan) -> None:
        n = Counts.of(up.changes)
        if up.changes:
            self.totals.add(n, up.drift)
            self.changing.add(up.unit)
        if self.format == "json":
            if up.changes:
                self._spool_unit(json_text(unit_json(up, n, self.show_secrets, self.stat)))
        elif self.format == "markdown":
            if up.changes and len(self.md_units) < MD_ROWS:
                self.md_units.append(MdUnit.of(up, n, self.show_secrets))
        elif self.stat:
            if up.changes:
                self.stat_rows.append(stat_row(up, n))
        else:
            assert self.con is not None
            styled_lines(self.con, unit_lines(up, n, self.show_secrets))

    def finish_text(self) -> None:
        """What text prints once every unit is in: the --stat table."""
        if self.stat:
            assert self.con is not None
            render_stat(self.con, self.stat_rows)

    def _spool_unit(self, text: str) -> None:
        if self._spool is None:
            self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by write_json)
                max_size=_SPOOL, mode="w+", encoding="utf-8")
        else:
            self._spool.write(",\n")
        self._spool.write("    " + text.replace("\n", "\n    "))  # two levels in

    def write_json(self, doc: Mapping[str, Any], out: TextIO | None = None) -> None:
        """`doc` as `app.out_json` prints it, with the units seen where it says `STREAMED`
        (JSON strings hold no line break, so the marker cannot appear inside a value)."""
        out = out or sys.stdout
        head, found, tail = json_text(doc).partition(_MARKER)
        if not found:
            raise ValueError("the document has no streamed units")
        spool, self._spool = self._spool, None
        try:
            out.write(head + '\n  "units": ')
            if spool is None:
                out.write("[]")
            else:
                out.write("[\n")
                spool.seek(0)
                while chunk := spool.read(1 << 16):
                    out.write(chunk)
                out.write("\n  ]")
            out.write(tail + "\n")
        finally:
            if spool is not None:
                spool.close()
