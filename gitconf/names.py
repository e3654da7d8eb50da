"""The names every layer shares, and nothing else: JSON values, units, and the closed sets of
words the package switches on (mypy checks every use). The records (`records.py`) and the
values passed between layers (`model.py`) both build on these."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

JSON = Any  # a JSON-compatible Python value: str, int, float, bool, None, list, dict

# The closed sets of names the rest of the package switches on; mypy checks every use.
DeploySource = Literal["git", "rollback", "override"]
ChangeOp = Literal["add", "change", "delete"]
DriftPolicy = Literal["revert", "report", "pr"]
UnitState = Literal["in-sync", "out-of-sync", "drifted", "overridden", "pinned", "failed"]
# what plan() decided for one unit: deploy its changes, nothing to do, or why it is left alone
Verdict = Literal["changes", "in-sync", "pinned", "failed", "blocked", "untracked"]


class UnitId(NamedTuple):
    """One deployable unit: a service in one environment."""

    service: str
    environment: str

    def __str__(self) -> str:
        return f"{self.service}/{self.environment}"
