"""`gitconf validate` as a library call: load the tree, collect every problem, count what was read.

Units are consumed as they stream out of the loader and then dropped, so memory follows the
largest service rather than the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import Problem
from .repo_format import iter_units, read_layout
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


def validate_tree(tree: Tree) -> ValidationReport:
    layout = read_layout(tree)
    problems: dict[Problem, None] = dict.fromkeys(layout.problems)
    keys = units = 0
    for unit, unit_problems in iter_units(tree, layout):
        problems.update(dict.fromkeys(unit_problems))
        if unit is not None:
            units += 1
            keys += len(unit.values)
    ordered = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.code))
    return ValidationReport(layout.files, keys, units, ordered)
