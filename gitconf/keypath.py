"""Dotted keys: `database.pool_size` is the key `pool_size` inside the group `database`.

One walk up a key's parents serves every rule that looks at groups (merging `_base.yaml`,
collisions between a value and a group, secrets that cover a whole group, error positions).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator


def parents(key: str) -> Iterator[str]:
    """The groups a key lies in, nearest first: `a.b.c` -> `a.b`, `a`."""
    i = key.rfind(".")
    while i > 0:
        yield key[:i]
        i = key.rfind(".", 0, i)


def all_parents(keys: Iterable[str]) -> set[str]:
    """Every group any of `keys` lies in."""
    out: set[str] = set()
    for key in keys:
        out.update(parents(key))
    return out


def covered(key: str, groups: frozenset[str] | set[str]) -> bool:
    """`key` is one of `groups` or lies inside one of them."""
    return key in groups or nearest_parent_in(key, groups) is not None


def nearest_parent_in(key: str, groups: Collection[str]) -> str | None:
    """The nearest group of `key` that is in `groups` (None: none is): `parents` without a
    generator, for the loader's per-key check on large files."""
    i = key.rfind(".")
    while i > 0:
        parent = key[:i]
        if parent in groups:
            return parent
        i = key.rfind(".", 0, i)
    return None
