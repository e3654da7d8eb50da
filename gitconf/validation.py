"""`gitconf validate` as a library call: load the tree, collect every problem, count what was read.

Units are consumed as they stream out of the loader and then dropped, so memory follows the
largest service rather than the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any

from .fastclass import dataclass
from .model import Problem
from .repo_format import Layout, iter_units, read_layout
from .trees import Tree


@dataclass
class ValidationReport:
    files: int
    keys: int
    units: int
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "files": self.files,
            "keys": self.keys,
            "units": self.units,
            "problems": [p.as_json() for p in self.problems],
        }


@dataclass
class Findings:
    """What validating some services found: their problems, units and keys."""

    problems: list[Problem] = field(default_factory=list)
    keys: int = 0
    units: int = 0


def check_services(tree: Tree, layout: Layout) -> Findings:
    """Validate the services of `layout`, in this process; units are counted and dropped."""
    tally = Findings()
    for unit, unit_problems in iter_units(tree, layout):
        tally.problems.extend(unit_problems)
        if unit is not None:
            tally.units += 1
            tally.keys += len(unit.values)
    return tally


Checker = Callable[[Tree, Layout], Iterable[Findings]]


def validate_tree(tree: Tree, checker: Checker | None = None) -> ValidationReport:
    """Every problem of the tree, in file order. `checker` validates the services (in parts,
    perhaps in other processes: `loading.check_in_workers`); by default, here."""
    layout = read_layout(tree)
    problems: dict[Problem, None] = dict.fromkeys(layout.problems)
    keys = units = 0
    for tally in (checker or _in_process)(tree, layout):
        problems.update(dict.fromkeys(tally.problems))
        units += tally.units
        keys += tally.keys
    ordered = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.code))
    return ValidationReport(layout.files, keys, units, ordered)


def _in_process(tree: Tree, layout: Layout) -> list[Findings]:
    return [check_services(tree, layout)]
