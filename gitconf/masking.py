"""The one rule for showing secrets: which keys are secret, and how a value is shown.

A key is secret when the unit's compiled schema marks it (`secret: true` / `writeOnly`) or when
it was deployed as secret at any time before (the unit record remembers: a value that was once
secret stays masked in every record and output, even after the schema stops saying so). A
secret group masks everything inside it. Every output path asks a `Masker`: validate, diff,
apply, history, status, get, deploy records, overrides and pull request bodies.

Some secrets have no fixed name: a `writeOnly` schema under `patternProperties` or
`additionalProperties` makes every matching child of a group secret. Those are `SecretPattern`
rules, evaluated with RE2 (linear time: a key is never a way to hang gitconf). Because this is
the lowest module that evaluates schema patterns, the ECMA-262 -> RE2 translation lives here too
and `schema` uses it for validation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import field
from functools import lru_cache
from typing import Any

from .fastclass import dataclass
from .keypath import covered
from .model import JSON, Change

MASK = "***"

# ---------------------------------------------------------------------------------------------
# schema patterns (ECMA-262 as JSON Schema writes them) evaluated by RE2


@lru_cache(maxsize=1)
def _re2() -> tuple[Any, Any]:
    """RE2 and its options, imported with the first pattern (a unit whose schema has none,
    the usual one-key apply, does not pay the 2 ms)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    return re2, options

_ECMA_ESCAPE = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}|\\u([0-9A-Fa-f]{4})|\\c([A-Za-z])|\\.",
                          re.DOTALL)
_BACKREFERENCE = re.compile(r"\\[1-9]|\\k<")
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")
# RE2 refuses counts over 1000 but reads one too large for an int as literal text: refuse both
_REPEAT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")
MAX_REPEAT = 1000


class PatternError(ValueError):
    """A schema pattern RE2 cannot evaluate; `construct` is True for the ECMA-262 features
    RE2 refuses by design (backreferences, lookaround), False for a malformed pattern."""

    def __init__(self, pattern: str, reason: str, construct: bool):
        super().__init__(reason)
        self.pattern, self.reason, self.construct = pattern, reason, construct


def _ecma_to_re2(pattern: str) -> str:
    """ECMA-262 escapes RE2 spells differently: `\\uXXXX` / `\\u{X}` -> `\\x{X}`, `\\cA` ->
    `\\x{01}`. Every other escape is kept as written (the scan keeps `\\\\u` literal)."""
    if "\\u" not in pattern and "\\c" not in pattern:
        return pattern

    def one(m: re.Match[str]) -> str:
        if m[1] or m[2]:
            return "\\x{" + (m[1] or m[2]) + "}"
        if m[3]:
            return "\\x{%02x}" % (ord(m[3]) % 32)
        return m[0]

    return _ECMA_ESCAPE.sub(one, pattern)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Any:
    """A schema `pattern` (or `patternProperties` key) compiled for RE2, or PatternError."""
    for m in _REPEAT.finditer(pattern):
        if any(n and (len(n) > 4 or int(n) > MAX_REPEAT) for n in m.groups()):
            raise PatternError(pattern, f"invalid repetition size: {m[0]} (at most "
                                        f"{MAX_REPEAT})", False)
    re2, options = _re2()
    try:
        return re2.compile(_ecma_to_re2(pattern), options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else str(exc)
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        construct = bool(_BACKREFERENCE.search(pattern)) or any(s in pattern
                                                               for s in _LOOKAROUND)
        raise PatternError(pattern, reason, construct) from None


def pattern_search(pattern: str, text: str) -> bool:
    """JSON Schema's `pattern` semantics (unanchored search), in linear time."""
    return compile_pattern(pattern).search(text) is not None


# ---------------------------------------------------------------------------------------------
# secrets


@dataclass(frozen=True)
class SecretPattern:
    """Children of `group` ("" for the top level) whose name matches `regex` are secret; with
    `regex` None, the children `additionalProperties` covers are (any name not in `declared`
    and matching none of `excluded`, the group's `patternProperties`). `rest` narrows the
    secret to a dotted path below the child ("": the whole child)."""

    group: str
    regex: str | None
    declared: frozenset[str] = frozenset()
    excluded: tuple[str, ...] = ()
    rest: str = ""

    def _child(self, name: str) -> bool:
        try:
            if self.regex is not None:
                return pattern_search(self.regex, name)
            return name not in self.declared and not any(pattern_search(p, name)
                                                         for p in self.excluded)
        except PatternError:
            return True  # a pattern nobody can evaluate: mask rather than guess

    def secret_prefix(self, key: str) -> str | None:
        """The secret key (or group) `key` lies in under this rule, else None."""
        head = self.group + "." if self.group else ""
        if not key.startswith(head):
            return None
        child, _, below = key[len(head):].partition(".")
        if not child or not self._child(child):
            return None
        if not self.rest:
            return head + child
        if below == self.rest or below.startswith(self.rest + "."):
            return f"{head}{child}.{self.rest}"
        return None


class SecretKeys(frozenset[str]):
    """Secret keys by name, plus the pattern rules that name none in advance. A frozenset, so
    every caller that stores or compares key names keeps working; `Masker.of` picks the rules
    up. (Set operators return plain frozensets: the rules travel with this object only.)"""

    patterns: tuple[SecretPattern, ...]

    def __new__(cls, keys: Iterable[str] = (),
                patterns: Iterable[SecretPattern] = ()) -> SecretKeys:
        self = super().__new__(cls, keys)
        self.patterns = tuple(patterns)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # units cross process boundaries (parallel load)
        return (SecretKeys, (frozenset(self), self.patterns))

    def __repr__(self) -> str:
        return f"SecretKeys({set(self)!r}, patterns={self.patterns!r})"

    def matched(self, keys: Iterable[str]) -> SecretKeys:
        """These names plus the concrete keys (of `keys`) the rules make secret: what a deploy
        records, so the unit stays masked even once the rule is gone."""
        if not self.patterns:
            return self
        found = set(self)
        for key in keys:
            for rule in self.patterns:
                prefix = rule.secret_prefix(key)
                if prefix is not None:
                    found.add(prefix)
        return SecretKeys(found, self.patterns)


@dataclass(frozen=True)
class Masker:
    """Answers "is this key secret" for one unit, and shows values accordingly."""

    secrets: frozenset[str] = frozenset()  # keys or groups secret now or at any earlier deploy
    show: bool = False  # `--show-secrets`: the user asked to see them
    patterns: tuple[SecretPattern, ...] = field(default=())  # secret by shape, not by name

    @classmethod
    def of(cls, *secret_sets: Iterable[str], show: bool = False) -> Masker:
        """Merge key sets (plain names, or `SecretKeys` carrying pattern rules)."""
        merged: set[str] = set()
        patterns: dict[SecretPattern, None] = {}
        for s in secret_sets:
            merged.update(s)
            patterns.update(dict.fromkeys(getattr(s, "patterns", ())))
        return cls(frozenset(merged), show, tuple(patterns))

    def is_secret(self, key: str) -> bool:
        if self.secrets and covered(key, self.secrets):
            return True
        return bool(self.patterns) and any(rule.secret_prefix(key) is not None
                                           for rule in self.patterns)

    def group_has_secret(self, group: str, keys: Iterable[str]) -> bool:
        """An error on a group quotes the whole group: mask it when any secret lies inside."""
        if not self.secrets and not self.patterns:
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

