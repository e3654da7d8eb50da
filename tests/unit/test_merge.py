"""`repo_format.merge_base`: `_base.yaml` deep-merged under an environment (SPEC §2: mappings
merge recursively, the environment's value wins, sequences are replaced whole), computed on
flattened keys. The reference model below merges nested dicts directly; the flattened merge must
agree with it on every input."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitconf.model import Position
from gitconf.repo_format import Values, load_values, merge_base

BASE = "svc/_base.yaml"
ENV = "svc/prod.yaml"


# ---------------------------------------------------------------------------------------------
# the reference model


def deep_merge(base: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in env.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def values(flat: dict[str, Any], file: str) -> Values:
    """A loaded file: each key at its own line, so provenance is visible in positions."""
    return Values(dict(flat), {k: Position(file, i + 1, 1) for i, k in enumerate(flat)}, [])


def merge(base: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    merged, _ = merge_base(values(base, BASE), values(env, ENV))
    return merged


def parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


# ---------------------------------------------------------------------------------------------
# examples


@pytest.mark.parametrize(
    ("base", "env", "merged"),
    [
        # env wins on a common key; other base keys survive
        ({"a.b": 1, "a.c": 2}, {"a.b": 5}, {"a.b": 5, "a.c": 2}),
        # sequences are replaced whole
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        # an env value replaces a base group ...
        ({"a.b": 1, "a.c": 2, "x": 0}, {"a": 7}, {"a": 7, "x": 0}),
        ({"a.b.c": 1}, {"a": [1]}, {"a": [1]}),
        # ... and an env group replaces a base value
        ({"a": 7}, {"a.b": 1}, {"a.b": 1}),
        ({"a": [1]}, {"a.b.c": 1}, {"a.b.c": 1}),
        # an env `{}` over a base group keeps the base's keys (decisions.md)
        ({"a.b": 1, "a.c.d": 2}, {"a": {}}, {"a.b": 1, "a.c.d": 2}),
        ({"a.b.c": 1}, {"a": {}, "a2": 1}, {"a.b.c": 1, "a2": 1}),
        # ... but replaces a base value, and is kept where the base has nothing
        ({"a": 1}, {"a": {}}, {"a": {}}),
        ({}, {"a": {}}, {"a": {}}),
        ({"b": 1}, {"a": {}}, {"a": {}, "b": 1}),
        ({"a": {}}, {"a": {}}, {"a": {}}),
        # a base `{}` is a leaf like any other
        ({"a": {}}, {"a.b": 1}, {"a.b": 1}),
        ({"a": {}}, {"a": 2}, {"a": 2}),
        ({"a": {}}, {"b": 2}, {"a": {}, "b": 2}),
        # a `{}` deep in the env under a base value
        ({"a": 1}, {"a.b": {}}, {"a.b": {}}),
        # siblings with a common prefix are not parents
        ({"ab.c": 1, "a.c": 2}, {"a": 3}, {"ab.c": 1, "a": 3}),
        ({"a": 1}, {"ab.c": 2}, {"a": 1, "ab.c": 2}),
        # the example repository's payments service
        ({"database.port": 5432, "database.pool_size": 10, "currencies": ["EUR", "USD"]},
         {"database.pool_size": 50, "currencies": ["EUR"]},
         {"database.port": 5432, "database.pool_size": 50, "currencies": ["EUR"]}),
    ],
)
def test_merge_examples(base: dict[str, Any], env: dict[str, Any],
                        merged: dict[str, Any]) -> None:
    assert merge(base, env) == merged


def test_positions_come_from_the_side_that_won() -> None:
    merged, positions = merge_base(values({"a.b": 1, "a.c": 2}, BASE),
                                   values({"a.c": 3, "d": 4}, ENV))
    assert merged == {"a.b": 1, "a.c": 3, "d": 4}
    assert positions == {"a.b": Position(BASE, 1, 1), "a.c": Position(ENV, 1, 1),
                         "d": Position(ENV, 2, 1)}


def test_empty_base_returns_env_unchanged() -> None:
    env = values({"a.b": 1, "c": {}}, ENV)
    merged, positions = merge_base(Values({}, {}, []), env)
    assert merged == env.values and positions == env.positions


def test_inputs_are_not_modified() -> None:
    base, env = values({"a.b": 1, "x": 2}, BASE), values({"a": {}, "x": 3}, ENV)
    before = (dict(base.values), dict(base.positions), dict(env.values), dict(env.positions))
    merge_base(base, env)
    assert before == (base.values, base.positions, env.values, env.positions)


# ---------------------------------------------------------------------------------------------
# properties over random value sets
#
# A small key alphabet makes common keys, parents and children frequent; leaves include `{}`
# and sequences (which merge as leaves).

SEG = st.sampled_from(["a", "b", "c", "ab"])
LEAF: st.SearchStrategy[Any] = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["x", "", None, True]),
    st.just({}),
    st.lists(st.integers(0, 3), max_size=2),
    st.lists(st.dictionaries(SEG, st.integers(0, 3), max_size=2), max_size=1),
)
NESTED = st.recursive(
    st.dictionaries(SEG, LEAF, min_size=1, max_size=3),
    lambda inner: st.dictionaries(SEG, st.one_of(LEAF, inner), min_size=1, max_size=3),
    max_leaves=8,
)
# as likely a group as a leaf (a plain one_of would weigh each of LEAF's branches like NESTED)
VALUE = st.booleans().flatmap(lambda group: NESTED if group else LEAF)
DOC = st.dictionaries(SEG, VALUE, max_size=4)

_DROP = object()


def _derived(node: Any) -> st.SearchStrategy[Any]:
    """A variation of `node`: each subtree kept, varied, replaced by a leaf or `{}`, or dropped,
    plus some new keys; so an environment overlaps its base the way real ones do."""
    if not isinstance(node, dict) or not node:
        return VALUE
    keys = list(node)

    def vary(child: Any) -> st.SearchStrategy[Any]:
        return st.sampled_from(["drop", "vary", "leaf", "{}"]).flatmap(
            lambda how: {"drop": st.just(_DROP), "vary": _derived(child), "leaf": LEAF,
                         "{}": st.just({})}[how])

    choices = [vary(node[k]) for k in keys]

    def build(parts: tuple[Any, ...]) -> dict[str, Any]:
        *kept, extra = parts
        out = {k: v for k, v in zip(keys, kept, strict=True) if v is not _DROP}
        return {**extra, **out}

    return st.tuples(*choices, st.dictionaries(SEG, LEAF, max_size=1)).map(build)


def _derived_doc(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return _derived(doc) if doc else DOC


PAIR = st.one_of(
    st.tuples(DOC, DOC),
    DOC.flatmap(lambda base: st.tuples(st.just(base), _derived_doc(base))),
    DOC.flatmap(lambda env: st.tuples(_derived_doc(env), st.just(env))),
)
FLAT_PAIR = PAIR.map(lambda p: (flatten(p[0]), flatten(p[1])))
FLAT = DOC.map(flatten)


@settings(max_examples=5 * settings().max_examples)  # the most valuable property
@given(PAIR)
@example(({"a": {"b": 1}}, {"a": {}}))
@example(({"a": {"b": {"c": 1}}}, {"a": {"b": {}, "d": {}}}))
@example(({"a": {"b": 1}, "c": {}}, {"a": 2, "c": {"d": 1}}))
@example(({"a": [{"b": 1}]}, {"a": {"b": 2}}))
def test_flattened_merge_equals_nested_deep_merge(pair: tuple[dict[str, Any], dict[str, Any]],
                                                  ) -> None:
    base, env = pair
    assert merge(flatten(base), flatten(env)) == flatten(deep_merge(base, env))


@given(PAIR)
def test_merge_of_loaded_files_equals_deep_merge_of_documents(
        pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    b = load_values(BASE, yaml.safe_dump(base).encode())
    e = load_values(ENV, yaml.safe_dump(env).encode())
    assert b.problems == [] and e.problems == []
    merged, positions = merge_base(b, e)
    assert merged == flatten(deep_merge(base, env))
    assert set(positions) == set(merged)


@given(FLAT_PAIR)
def test_env_wins_on_common_keys(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    merged = merge(base, env)
    base_groups = {p for k in base for p in parents(k)}
    for k, v in env.items():
        if v == {} and k in base_groups:
            assert k not in merged  # the base's keys beneath it stay instead
            assert all(merged[b] == base[b] for b in base if b.startswith(k + "."))
        else:
            assert merged[k] == v


@given(FLAT_PAIR)
def test_base_key_survives_unless_replaced(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    merged = merge(base, env)
    for k, v in base.items():
        replaced = (
            k in env
            or any(p in env and env[p] != {} for p in parents(k))  # an env value above it
            or any(e.startswith(k + ".") for e in env)  # an env group over it
        )
        if replaced:
            assert k not in merged or merged[k] == env[k]
        else:
            assert merged[k] == v


@given(FLAT_PAIR)
def test_every_key_comes_from_one_side_with_its_position(
        pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    merged, positions = merge_base(values(base, BASE), values(env, ENV))
    assert set(positions) == set(merged)
    for k, v in merged.items():
        side = env if k in env else base
        assert v == side[k]
        assert positions[k].file == (ENV if k in env else BASE)


@given(FLAT_PAIR)
def test_result_is_a_valid_flat_set(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    """No key is both a value and a group, so the result unflattens without loss."""
    merged = merge(base, env)
    assert not any(p in merged for k in merged for p in parents(k))


@given(FLAT)
def test_empty_base_is_identity(env: dict[str, Any]) -> None:
    assert merge({}, env) == env


@given(FLAT)
def test_empty_env_is_identity_on_base(base: dict[str, Any]) -> None:
    assert merge(base, {}) == base


@given(FLAT)
def test_merging_a_file_with_itself_is_identity(doc: dict[str, Any]) -> None:
    assert merge(doc, doc) == doc


@given(FLAT_PAIR)
def test_merge_is_idempotent(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    base, env = pair
    once = merge(base, env)
    assert merge(base, once) == once
