"""`repo_format.load_values`: nested mappings flatten to dotted keys (SPEC §2 "Values"), with
every refusal positioned; and `schema.unflatten` is its inverse."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from gitconf.model import Position
from gitconf.repo_format import MAX_KEY_BYTES, MAX_VALUE_BYTES, load_values
from gitconf.schema import unflatten

F = "svc/prod.yaml"


def values_of(text: str) -> dict[str, Any]:
    loaded = load_values(F, text.encode())
    assert loaded.problems == [], loaded.problems
    return loaded.values


def problems_of(text: str) -> list[tuple[str, int, int, str | None]]:
    return [(p.code, p.line, p.column, p.key) for p in load_values(F, text.encode()).problems]


# ---------------------------------------------------------------------------------------------
# flattening rules


@pytest.mark.parametrize(
    ("text", "flat"),
    [
        ("a: 1", {"a": 1}),
        ("database: {pool_size: 50, host: db}",
         {"database.pool_size": 50, "database.host": "db"}),
        ("a:\n  b:\n    c: x\n", {"a.b.c": "x"}),
        # an empty mapping is the leaf {}
        ("a: {}", {"a": {}}),
        ("a: {b: {}}", {"a.b": {}}),
        # sequences are leaves, whatever they hold
        ("a: [1, {b: 2}, [3]]", {"a": [1, {"b": 2}, [3]]}),
        ("a: []", {"a": []}),
        ("a: {b: [{c: 1}]}", {"a.b": [{"c": 1}]}),
        ("a: null\nb: ~\n", {"a": None, "b": None}),
        # a literal dotted key is the same flattened key
        ('"database.pool_size": 50', {"database.pool_size": 50}),
        ('"a.b": 1\na: {c: 2}', {"a.b": 1, "a.c": 2}),
        ('a: {"b.c": 1}', {"a.b.c": 1}),
        # `_` is reserved only at the start of the first segment
        ("a: {_x: 1}", {"a._x": 1}),
        ('"a._b": 1', {"a._b": 1}),
        ("a_: 1", {"a_": 1}),
        # keys are text: YAML quoting keeps them so
        ("'1': a\n'true': b\n", {"1": "a", "true": "b"}),
        ("é: {ß: 1}", {"é.ß": 1}),
        ("'a b': {'c-d': 1}", {"a b.c-d": 1}),
    ],
)
def test_flatten(text: str, flat: dict[str, Any]) -> None:
    assert values_of(text) == flat


def test_positions_point_at_the_leaf_key() -> None:
    loaded = load_values(F, b"a:\n  b: 1\n  c:\n    d: [1, 2]\n'x.y': 3\n")
    assert loaded.positions == {
        "a.b": Position(F, 2, 3),
        "a.c.d": Position(F, 4, 5),
        "x.y": Position(F, 5, 1),
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # two spellings of one key: the later one is refused
        ('a: {b: 1}\n"a.b": 2', ("key-collision", 2, 1, "a.b")),
        ('"a.b": 2\na:\n  b: 1', ("key-collision", 3, 3, "a.b")),
        ('a: {"b.c": 1, b: {c: 2}}', ("key-collision", 1, 19, "a.b.c")),
        # a key that is both a value and a group: the later one is refused
        ('a: 1\n"a.b": 2', ("key-collision", 2, 1, "a.b")),
        ('"a.b": 2\na: 1', ("key-collision", 2, 1, "a")),
        ('a: {b: 1}\n"a.b.c": 2', ("key-collision", 2, 1, "a.b.c")),
        ('a: {}\n"a.b": 1', ("key-collision", 2, 1, "a.b")),
        ('"a.b.c": 1\n"a": [1]', ("key-collision", 2, 1, "a")),
        # reserved first segment
        ("_system: 1", ("reserved-key", 1, 1, "_system")),
        ("_meta: {a: 1}", ("reserved-key", 1, 1, "_meta")),
        ('"_a.b": 1', ("reserved-key", 1, 1, "_a.b")),
        # `/` in a segment
        ("a/b: 1", ("bad-key", 1, 1, "a/b")),
        ('a: {"b/c": 1}', ("bad-key", 1, 5, "a.b/c")),
        # empty segments
        ('"": 1', ("bad-key", 1, 1, "")),
        ('a: {"": 1}', ("bad-key", 1, 5, "a.")),
        ('"a..b": 1', ("bad-key", 1, 1, "a..b")),
        ('".a": 1', ("bad-key", 1, 1, ".a")),
        ('"a.": 1', ("bad-key", 1, 1, "a.")),
        # control characters
        ('"a\\tb": 1', ("bad-key", 1, 1, "a\tb")),
        ('a: {"\\x7f": 1}', ("bad-key", 1, 5, "a.\x7f")),
        # not a mapping at the top
        ("- 1", ("not-a-mapping", 1, 1, None)),
        ("5", ("not-a-mapping", 1, 1, None)),
        ("just text", ("not-a-mapping", 1, 1, None)),
    ],
)
def test_refusals(text: str, problem: tuple[str, int, int, str | None]) -> None:
    assert problems_of(text) == [problem]


def test_collision_keeps_the_first_value() -> None:
    loaded = load_values(F, b'a: {b: 1}\n"a.b": 2\n')
    assert loaded.values == {"a.b": 1}
    assert "line 1" in loaded.problems[0].message
    loaded = load_values(F, b'a: 1\n"a.b": 2\n')
    assert loaded.values == {"a": 1}


def test_refused_keys_do_not_hide_the_rest() -> None:
    loaded = load_values(F, b"_x: 1\nok: 2\na/b: 3\nc: {d: 4}\n")
    assert loaded.values == {"ok": 2, "c.d": 4}
    assert [p.code for p in loaded.problems] == ["reserved-key", "bad-key"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("", True), ("# nothing\n", True), ("---\n", True), ("a: [", False), ("- 1", False)],
)
def test_parsed_flag(text: str, parsed: bool) -> None:
    loaded = load_values(F, text.encode())
    assert loaded.parsed is parsed
    assert loaded.values == {}


def test_yaml_problems_pass_through_with_positions() -> None:
    loaded = load_values(F, b"a: 1\na: 2\nb: !!binary eA==\nc: .inf\n")
    assert [(p.code, p.line) for p in loaded.problems] == \
        [("duplicate-key", 2), ("unsafe-tag", 3), ("not-json", 4)]


def test_encoding_problem() -> None:
    loaded = load_values(F, b"a: 1\nb: \xff\n")
    assert [(p.code, p.line, p.column) for p in loaded.problems] == [("encoding", 2, 4)]
    assert not loaded.parsed


# ---------------------------------------------------------------------------------------------
# limits


def _quoted_key(n_bytes_key: str) -> str:
    return json.dumps(n_bytes_key, ensure_ascii=False)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("a" * MAX_KEY_BYTES, True),
        ("a" * (MAX_KEY_BYTES + 1), False),
        ("é" * (MAX_KEY_BYTES // 2), True),  # 2 bytes each in UTF-8
        ("é" * (MAX_KEY_BYTES // 2) + "a", False),
        ("😀" * (MAX_KEY_BYTES // 4 + 1), False),
    ],
)
def test_key_length_limit_is_in_utf8_bytes(key: str, ok: bool) -> None:
    loaded = load_values(F, f"? {_quoted_key(key)}\n: 1\n".encode())
    if ok:
        assert loaded.values == {key: 1} and loaded.problems == []
    else:
        assert [(p.code, p.line, p.column) for p in loaded.problems] == [("key-too-long", 1, 3)]
        assert loaded.values == {}
        assert len(loaded.problems[0].key or "") < 100  # the key is shortened in the report


def test_key_length_counts_the_whole_dotted_key() -> None:
    seg = "b" * (MAX_KEY_BYTES - 2)  # "a." + seg is exactly the limit
    assert values_of(f"a: {{{seg}: 1}}") == {f"a.{seg}": 1}
    assert problems_of(f"a: {{{seg}x: 1}}")[0][0] == "key-too-long"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("y" * (MAX_VALUE_BYTES - 2), True),  # the JSON text has two quotes
        ("y" * (MAX_VALUE_BYTES - 1), False),
        ("é" * (MAX_VALUE_BYTES // 2 - 1), True),  # counted in UTF-8 bytes
        ("é" * (MAX_VALUE_BYTES // 2), False),
        ("\n" * (MAX_VALUE_BYTES // 2), False),  # each escapes to two characters
        (["y" * 1000] * 1100, False),
        (["y" * 1000] * 1000, True),
        ({"k": "y" * MAX_VALUE_BYTES}, False),  # a value inside a sequence leaf counts whole
    ],
)
def test_value_size_limit_is_its_json(value: Any, ok: bool) -> None:
    doc = {"x": [value] if isinstance(value, dict) else value}
    loaded = load_values(F, json.dumps(doc).encode())
    if ok:
        assert loaded.problems == [] and loaded.values == doc
    else:
        assert [(p.code, p.key) for p in loaded.problems] == [("value-too-large", "x")]
        assert loaded.values == {}


# ---------------------------------------------------------------------------------------------
# properties: flatten and unflatten are inverse

SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_ é", min_size=1,
                  max_size=8)
TOP_SEGMENT = SEGMENT.filter(lambda s: not s.startswith("_"))
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
LEAF: st.SearchStrategy[Any] = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.just({}))


def _tree(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    child: st.SearchStrategy[Any] = LEAF if depth == 0 else st.one_of(LEAF, _tree(depth - 1))
    return st.dictionaries(SEGMENT, child, min_size=1, max_size=4)


NESTED = st.dictionaries(TOP_SEGMENT, st.one_of(LEAF, _tree(2)), max_size=5)


def _flatten_ref(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flatten_ref(v, key))
        else:
            out[key] = v
    return out


@given(NESTED)
def test_roundtrip_nested_yaml_flatten_unflatten(doc: dict[str, Any]) -> None:
    loaded = load_values(F, yaml.safe_dump(doc).encode())
    assert loaded.problems == []
    assert loaded.values == _flatten_ref(doc)
    assert set(loaded.positions) == set(loaded.values)
    assert unflatten(loaded.values) == doc


@given(NESTED)
def test_flatten_of_unflatten_is_identity(doc: dict[str, Any]) -> None:
    flat = _flatten_ref(doc)
    # the flat dict written with literal dotted keys loads to itself ...
    loaded = load_values(F, yaml.safe_dump(flat).encode())
    assert loaded.problems == []
    assert loaded.values == flat
    # ... and so does its unflattened form
    again = load_values(F, yaml.safe_dump(unflatten(flat)).encode())
    assert again.problems == []
    assert again.values == flat


# JSON is YAML only in part: JSON leaves \x7f-\x9f raw (YAML refuses them, or reads \x85 as a
# line break), its surrogate-pair escapes are not YAML, and YAML 1.1 reads `1e-05` as text
# (a float needs a dot). Those documents are left out of the JSON spelling.
_YAML_PRINTABLE = re.compile("[\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def _scalars(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _scalars(v)]
    if isinstance(node, list):
        return [s for v in node for s in _scalars(v)]
    return [node]


@given(NESTED)
def test_json_spelling_flattens_like_yaml(doc: dict[str, Any]) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    assume(_YAML_PRINTABLE.fullmatch(text) and "\x85" not in text)
    assume(not any(isinstance(v, float) and "e" in repr(v) for v in _scalars(doc)))
    as_json = load_values(F, text.encode())
    assert as_json.problems == []
    assert as_json.values == _flatten_ref(doc)
