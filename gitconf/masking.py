"""The one rule for showing secrets: which keys are secret, and how a value is shown.

A key is secret when the unit's compiled schema marks it (`secret: true` / `writeOnly`) or when
it was deployed as secret at any time before (the unit record remembers: a value that was once
secret stays masked in every record and output, even after the schema stops saying so). A
secret group masks everything inside it. Every output path asks a `Masker`: validate, diff,
apply, history, status, get, deploy records, overrides and pull request bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .keypath import covered
from .model import JSON, Change

MASK = "***"


@dataclass(frozen=True)
class Masker:
    """Answers "is this key secret" for one unit, and shows values accordingly."""

    secrets: frozenset[str] = frozenset()  # keys or groups secret now or at any earlier deploy
    show: bool = False  # `--show-secrets`: the user asked to see them

    @classmethod
    def of(cls, *secret_sets: Iterable[str], show: bool = False) -> Masker:
        merged: set[str] = set()
        for s in secret_sets:
            merged.update(s)
        return cls(frozenset(merged), show)

    def is_secret(self, key: str) -> bool:
        return bool(self.secrets) and covered(key, self.secrets)

    def group_has_secret(self, group: str, keys: Iterable[str]) -> bool:
        """An error on a group quotes the whole group: mask it when any secret lies inside."""
        if not self.secrets:
            return False
        prefix = group + "." if group else ""
        return any(k.startswith(prefix) and self.is_secret(k) for k in keys)

    def value(self, key: str, value: JSON) -> JSON:
        """The value as it may be shown or recorded."""
        if self.show or not self.is_secret(key):
            return value
        return MASK

    def change(self, change: Change) -> Change:
        """The change as every renderer may show it: secret values replaced by `***`."""
        if self.show or not (change.secret or self.is_secret(change.key)):
            return change
        old = MASK if change.op != "add" else None
        new = MASK if change.op != "delete" else None
        return change._replace(old=old, new=new, secret=True)


def shown_change(change: Change, show_secrets: bool = False) -> Change:
    """A planned change whose `secret` flag was set by plan(): masked unless asked not to."""
    return Masker(show=show_secrets).change(change)


NO_SECRETS = Masker()
