"""`safeyaml.load` / `safeyaml.decode`: JSON values with positions, every refusal a positioned
problem (SPEC §2 "Values", docs/decisions.md "Repository format")."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gitconf import safeyaml
from gitconf.model import Position

F = "svc/prod.yaml"


def load(text: str, **kw: Any) -> safeyaml.LoadedYaml:
    return safeyaml.load(text, F, **kw)


def codes(loaded: safeyaml.LoadedYaml) -> list[tuple[str, int, int]]:
    return [(p.code, p.line, p.column) for p in loaded.problems]


# ---------------------------------------------------------------------------------------------
# values that load


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("a: 1\nb: x\n", {"a": 1, "b": "x"}),
        ("a: {b: {c: true}}", {"a": {"b": {"c": True}}}),
        ("a: [1, 2.5, null, ~, 'x']", {"a": [1, 2.5, None, None, "x"]}),
        ("a: {}", {"a": {}}),
        ("a:", {"a": None}),
        ("a: -0x1f", {"a": -31}),
        ("a: 0o17", {"a": "0o17"}),  # YAML 1.1 octal is 017; 0o17 is text
        ("a: 017", {"a": 15}),
        ("a: 1_000", {"a": 1000}),
        ("a: 1:30", {"a": 90}),  # YAML 1.1 sexagesimal, as PyYAML reads it
        ("a: 1e3", {"a": "1e3"}),  # YAML 1.1 floats need a dot
        ("a: 1.5e+3", {"a": 1500.0}),
        ("a: yes\nb: off", {"a": True, "b": False}),  # decisions.md: YAML 1.1 booleans kept
        # timestamps stay as the text written (SPEC §2)
        ("a: 2025-03-01", {"a": "2025-03-01"}),
        ("a: 2025-03-01T10:00:00Z", {"a": "2025-03-01T10:00:00Z"}),
        ("a: 2001-12-14 21:59:43.10 -5", {"a": "2001-12-14 21:59:43.10 -5"}),
        # explicit core tags are plain JSON
        ("a: !!str 5", {"a": "5"}),
        ("a: !!int '7'", {"a": 7}),
        ("a: !!float '2'", {"a": 2.0}),
        ("a: !!bool 'yes'", {"a": True}),
        ("a: !!timestamp 2025-01-01", {"a": "2025-01-01"}),
        ("a: !!map {b: 1}", {"a": {"b": 1}}),
        ("a: !!seq [1]", {"a": [1]}),
        ("a: !<tag:yaml.org,2002:int> 3", {"a": 3}),
        # a plain `=` is YAML 1.1's !!value; every other reader takes it as the string "="
        ("a: =", {"a": "="}),
        ("'=': 1", {"=": 1}),
        ("%YAML 1.1\n---\na: 1\n", {"a": 1}),
        ("a: |\n  x\n  y\n", {"a": "x\ny\n"}),
        ("a: 'é😀'", {"a": "é😀"}),
    ],
)
def test_values(text: str, data: Any) -> None:
    loaded = load(text)
    assert loaded.problems == []
    assert loaded.data == data
    assert type(loaded.data) is type(data)


def test_bool_and_int_types_are_exact() -> None:
    data = load("a: true\nb: 1\nc: 1.0").data
    assert data["a"] is True
    assert type(data["b"]) is int
    assert type(data["c"]) is float


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_document(text: str) -> None:
    loaded = load(text)
    assert loaded.data is None and not loaded.problems


def test_positions_of_keys_and_items() -> None:
    text = "a:\n  b: 1\n  c: [x, {d: 2}]\n"
    loaded = load(text)
    assert loaded.positions[("a",)] == Position(F, 1, 1)
    assert loaded.positions[("a", "b")] == Position(F, 2, 3)
    assert loaded.positions[("a", "c", 1, "d")] == Position(F, 3, 11)
    assert ("a", "c", 0) not in loaded.positions  # items only on request
    with_items = load(text, item_positions=True)
    assert with_items.positions[("a", "c", 0)] == Position(F, 3, 7)
    assert with_items.positions[("a", "c", 1)] == Position(F, 3, 10)


def test_positions_count_characters_not_bytes() -> None:
    loaded = load("é😀: {ß: 1}")
    assert loaded.positions[("é😀", "ß")] == Position(F, 1, 6)


# ---------------------------------------------------------------------------------------------
# refusals: code, line, column


@pytest.mark.parametrize(
    ("text", "code", "line", "column", "key"),
    [
        # duplicate keys, reported at the repetition
        ("a: 1\nb: 2\na: 3\n", "duplicate-key", 3, 1, "a"),
        ("x:\n  a: 1\n  a: 2\n", "duplicate-key", 3, 3, "x.a"),
        ("{a: 1, b: 2, a: 3}", "duplicate-key", 1, 14, "a"),
        # tags refused
        ("x: !!python/object:os.system {}", "unsafe-tag", 1, 4, "x"),
        ("x: !!python/object/apply:os.system [ls]", "unsafe-tag", 1, 4, "x"),
        ("x: !!python/name:os.system", "unsafe-tag", 1, 4, "x"),
        ("x: !!binary aGVsbG8=", "unsafe-tag", 1, 4, "x"),
        ("x: !!set {a, b}", "unsafe-tag", 1, 4, "x"),
        ("x: !!omap [a: 1]", "unsafe-tag", 1, 4, "x"),
        ("x:\n  y: !foo bar", "unsafe-tag", 2, 6, "x.y"),
        ("x: !foo {a: 1}", "unsafe-tag", 1, 4, "x"),
        ("x: !foo [1]", "unsafe-tag", 1, 4, "x"),
        ("x: [1, !foo 2]", "unsafe-tag", 1, 8, "x.1"),
        ("x: !!map [1]", "unsafe-tag", 1, 4, "x"),
        # explicit core tags on text they do not fit
        ("x: !!int abc", "bad-value", 1, 4, "x"),
        ("x: !!int ''", "bad-value", 1, 4, "x"),
        ("x: !!int 0x", "bad-value", 1, 4, "x"),
        ("x: !!float abc", "bad-value", 1, 4, "x"),
        ("x: !!bool maybe", "bad-value", 1, 4, "x"),
        ("x:\n  - !!bool", "bad-value", 2, 5, "x.0"),
        # non-string keys (decisions.md: `on: push` is refused, not turned into True)
        ("1: a", "non-string-key", 1, 1, None),
        ("b: 1\non: push", "non-string-key", 2, 1, None),
        ("true: a", "non-string-key", 1, 1, None),
        ("~: a", "non-string-key", 1, 1, None),
        ("null: a", "non-string-key", 1, 1, None),
        ("1.5: a", "non-string-key", 1, 1, None),
        ("2025-01-01: a", "non-string-key", 1, 1, None),
        ("x:\n  ? [a]\n  : b", "non-string-key", 2, 5, "x"),
        ("{a: 1}: b", "non-string-key", 1, 1, None),
        ("!!int 5: b", "non-string-key", 1, 1, None),
        # no JSON form
        ("x: .inf", "not-json", 1, 4, "x"),
        ("x: -.inf", "not-json", 1, 4, "x"),
        ("x: .nan", "not-json", 1, 4, "x"),
        ("x: !!float 1e400", "not-json", 1, 4, "x"),
        ("x: [1, .NaN]", "not-json", 1, 8, "x.1"),
        # merge keys take mappings
        ("x:\n  <<: 1", "yaml-syntax", 2, 7, "x"),
        ("x:\n  <<: [1]", "yaml-syntax", 2, 8, "x"),
        # syntax, with libyaml's position
        ("a: [1, 2\nb: 3", "yaml-syntax", 2, 2, None),
        ("a:\n\tb: 1", "yaml-syntax", 2, 1, None),
        ("a: b\n--- \nc: d\n", "yaml-syntax", 2, 1, None),
        ("a: 'x", "yaml-syntax", 1, 4, None),  # where the quote opened
        # characters YAML does not allow, where they stand (columns in characters)
        ("a: b\nc: \x07", "yaml-syntax", 2, 4, None),
        ("é: b\nc: \x00", "yaml-syntax", 2, 4, None),
        ("a: \ufffe", "yaml-syntax", 1, 4, None),
    ],
)
def test_refusals(text: str, code: str, line: int, column: int, key: str | None) -> None:
    loaded = load(text)
    assert (loaded.problems[0].code, loaded.problems[0].line, loaded.problems[0].column) \
        == (code, line, column), loaded.problems
    assert loaded.problems[0].key == key
    assert loaded.problems[0].file == F
    assert loaded.problems


def test_duplicate_key_names_first_definition() -> None:
    (problem,) = load("a: 1\nb: 2\na: 3\n").problems
    assert "line 1" in problem.message
    assert load("a: 1\nb: 2\na: 3\n").data == {"a": 1, "b": 2}  # the first one stays


def test_duplicate_key_through_an_alias() -> None:
    # an alias is the anchored node itself, so the anchor's position is all libyaml keeps
    loaded = load("&k a: 1\n*k : 2\n")
    assert [p.code for p in loaded.problems] == ["duplicate-key"]
    assert loaded.data == {"a": 1}


def test_refused_value_is_named_in_message() -> None:
    (problem,) = load("x: !!python/object/apply:os.system [rm]").problems
    assert "python/object/apply:os.system" in problem.message
    (problem,) = load("2025-01-01: a").problems
    assert "timestamp" in problem.message and "quote" in problem.message


def test_every_problem_of_a_file_is_collected() -> None:
    loaded = load("a: !!binary eA==\nb: .inf\nc: 1\nc: 2\n5: x\n")
    assert [p.code for p in loaded.problems] == \
        ["unsafe-tag", "not-json", "duplicate-key", "non-string-key"]


# ---------------------------------------------------------------------------------------------
# long integers: Python prints at most 4300 digits; past that, a positioned problem


@pytest.mark.parametrize(
    "literal",
    [
        "9" * 5000,
        "-" + "9" * 4301,
        "1_" + "0" * 5000,
        "0x" + "f" * 4000,  # 16000 bits: ~4817 decimal digits
        "0b" + "1" * 20000,
        "0" + "7" * 6000,  # octal
        "1" + ":00" * 3000,  # sexagesimal
        "1" + ":00" * 50_000,  # refused before the (quadratic) conversion
        "!!int " + "1" * 100_000,
    ],
)
def test_too_long_integer_is_a_problem(literal: str) -> None:
    start = time.perf_counter()
    loaded = load(f"a: 1\nb: {literal}\n")
    assert time.perf_counter() - start < 1.0
    assert codes(loaded) == [("not-json", 2, 4)]
    assert loaded.problems[0].key == "b"
    assert len(loaded.problems[0].message) < 300  # the literal is not quoted in full
    assert loaded.data == {"a": 1, "b": None}


def test_too_long_integer_in_a_list_and_as_a_key() -> None:
    assert codes(load("a: [1, " + "9" * 5000 + "]")) == [("not-json", 1, 8)]
    (problem,) = load("? " + "9" * 5000 + "\n: 1").problems
    assert problem.code == "non-string-key" and len(problem.message) < 300


@pytest.mark.parametrize("literal", ["9" * 4300, "-" + "9" * 4300, "0x" + "f" * 3500])
def test_longest_printable_integers_load(literal: str) -> None:
    loaded = load(f"a: {literal}")
    assert not loaded.problems
    assert len(str(loaded.data["a"]).lstrip("-")) <= safeyaml.MAX_INT_DIGITS


# ---------------------------------------------------------------------------------------------
# anchors, aliases, merge keys


def test_anchor_and_alias() -> None:
    assert load("a: &x [1, {b: 2}]\nc: *x").data == {"a": [1, {"b": 2}], "c": [1, {"b": 2}]}


def test_merge_key_explicit_keys_win() -> None:
    text = "base: &b {x: 1, y: 2}\nd:\n  y: 3\n  <<: *b\n"
    assert load(text).data == {"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 3}}


def test_merge_key_list_earlier_wins() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n"
    assert load(text).data["c"] == {"x": 1, "y": 2}


def test_merge_key_does_not_excuse_duplicates() -> None:
    text = "a: &a {x: 1}\nc:\n  <<: *a\n  y: 1\n  y: 2\n"
    assert codes(load(text)) == [("duplicate-key", 5, 3)]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]",
        "a: &x {b: *x}",
        "a: &x {<<: *x}",  # a mapping that merges itself
        "&x {<<: *x}",
        "a: &x {<<: [*x, *x]}",
        "a: &x\n  <<: *x\n  b: 1\n",
    ],
)
def test_self_referencing_alias_is_bounded(text: str) -> None:
    loaded = load(text)
    assert [p.code for p in loaded.problems] == ["nesting-too-deep"]
    assert loaded.data is None


def test_billion_laughs_is_stopped_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    start = time.perf_counter()
    loaded = load("\n".join(lines))
    assert time.perf_counter() - start < 2.0
    assert [p.code for p in loaded.problems] == ["alias-bomb"]
    assert loaded.data is None


def _mapping_bomb(value: str) -> str:
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}"]
    for i in range(1, 9):
        prev = value.format(f"*m{i - 1}")
        lines.append(f"m{i}: &m{i} {{{', '.join(f'g{j}: {prev}' for j in range(10))}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("value", ["{}", "{{<<: {}}}", "{{<<: [{}], x: 1}}"])
def test_mapping_bombs_are_stopped(value: str) -> None:
    start = time.perf_counter()
    loaded = load(_mapping_bomb(value))
    assert time.perf_counter() - start < 2.0
    assert [p.code for p in loaded.problems] == ["alias-bomb"]


def test_padding_a_bomb_buys_it_no_budget() -> None:
    """The budget follows the nodes written, not the bytes: a comment adds none."""
    start = time.perf_counter()
    loaded = load(_mapping_bomb("{}") + "#" + "x" * 200_000 + "\n")
    assert time.perf_counter() - start < 2.0
    assert [p.code for p in loaded.problems] == ["alias-bomb"]


def test_budget_grows_with_the_nodes_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safeyaml, "BUDGET_FLOOR", 50)
    plain = "".join(f"k{i}: [1, 2]\n" for i in range(100))  # 400 nodes, no aliases
    assert not load(plain).problems
    expanded = "d: &d [1, 2, 3, 4]\n" + "".join(f"k{i}: *d\n" for i in range(30))
    assert not load(expanded).problems  # 156 nodes built from 37 written: within 20 x
    bomb = "d: &d [" + ", ".join(["1"] * 40) + "]\n" + "".join(f"k{i}: *d\n" for i in range(40))
    assert [p.code for p in load(bomb).problems] == ["alias-bomb"]  # 1682 built, 83 written


def test_an_aliased_refusal_is_reported_once() -> None:
    text = "a: &a [.inf, !!binary eA==, !foo {x: 1}]\n" + \
        "".join(f"b{i}: *a\n" for i in range(1000))
    loaded = load(text)
    assert codes(loaded) == [("not-json", 1, 8), ("unsafe-tag", 1, 14), ("unsafe-tag", 1, 29)]
    dup = load("m: &m {a: 1, a: 2}\nn: *m\no: *m\n")
    assert codes(dup) == [("duplicate-key", 1, 14)]


def test_many_small_aliases_within_budget_load() -> None:
    text = "a: &a {k: 1}\n" + "".join(f"b{i}: *a\n" for i in range(2000))
    loaded = load(text)
    assert not loaded.problems and len(loaded.data) == 2001


# ---------------------------------------------------------------------------------------------
# nesting


def _flow_seq(n: int, inner: str = "x") -> str:
    return "[" * n + inner + "]" * n


def _block_map(n: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(n)) + "  " * n + "v\n"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (_flow_seq(safeyaml.MAX_DEPTH), True),
        (_flow_seq(safeyaml.MAX_DEPTH + 1), False),
        ("[" * (safeyaml.MAX_DEPTH + 1) + "]" * (safeyaml.MAX_DEPTH + 1), True),  # empty leaf
        (_block_map(safeyaml.MAX_DEPTH - 1), True),
        (_block_map(safeyaml.MAX_DEPTH + 1), False),
        ("- " * (safeyaml.MAX_DEPTH + 5) + "x", False),
        ("a: " + "{b: " * 200 + "1" + "}" * 200, False),
    ],
)
def test_nesting_limit(text: str, ok: bool) -> None:
    loaded = load(text)
    if ok:
        assert not loaded.problems, loaded.problems
    else:
        assert [p.code for p in loaded.problems] == ["nesting-too-deep"]
        assert loaded.data is None


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000,  # flow: libyaml's own limit (PyYAML 6.0.4), or the pre-scan
        "[" * 20_000 + "]" * 20_000,
        "{a: " * 20_000,
        "a: " + "{b: " * 20_000 + "1" + "}" * 20_000,
        "- " * 20_000 + "x",  # block
        "".join(" " * i + "- \n" for i in range(3000)),
        _block_map(3000),
    ],
)
@pytest.mark.parametrize("prescan", [False, True], ids=["libyaml-limit", "prescan"])
def test_runaway_nesting_is_refused_not_crashed(text: str, prescan: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # `prescan`: as with a libyaml older than 0.2.5, which has no nesting limit of its own
    monkeypatch.setattr(safeyaml, "_libyaml_limits_nesting", lambda: not prescan)
    start = time.perf_counter()
    loaded = load(text)
    assert time.perf_counter() - start < 5.0
    assert [p.code for p in loaded.problems] == ["nesting-too-deep"]
    assert loaded.problems[0].line >= 1 and loaded.problems[0].column >= 1


def test_control_character_after_deep_prescan_is_a_problem(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # over the pre-scan bound, with a character the reader refuses at the end
    monkeypatch.setattr(safeyaml, "_libyaml_limits_nesting", lambda: False)
    loaded = load("-" * 6000 + "\x07")
    assert codes(loaded) == [("yaml-syntax", 1, 6001)]


# ---------------------------------------------------------------------------------------------
# decode: UTF-8 only, BOM allowed, bad bytes positioned


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a: 1\n", "a: 1\n"),
        (b"\xef\xbb\xbfa: 1\n", "a: 1\n"),
        ("a: é\n".encode(), "a: é\n"),
        (b"", ""),
    ],
)
def test_decode(raw: bytes, text: str) -> None:
    assert safeyaml.decode(raw, F) == (text, None)


def test_bom_then_load_keeps_positions() -> None:
    text, _ = safeyaml.decode(b"\xef\xbb\xbfa: 1\nb: [\n", F)
    assert text is not None
    assert load(text).problems[0].line == 3


@pytest.mark.parametrize(
    ("raw", "line", "column", "byte"),
    [
        (b"a: 1\nb: \xff\n", 2, 4, "0xff"),
        (b"\xff", 1, 1, "0xff"),
        (b"a: caf\xe9\n", 1, 7, "0xe9"),  # Latin-1
        (b"a: \xed\xa0\x80\n", 1, 4, "0xed"),  # an encoded surrogate
        (b"a: \xc0\xaf\n", 1, 4, "0xc0"),  # overlong
        (b"\xff\xfea\x00:\x00", 1, 1, "0xff"),  # UTF-16 with its BOM
        ("é\n".encode() + b"\x80", 2, 1, "0x80"),
    ],
)
def test_decode_error_position(raw: bytes, line: int, column: int, byte: str) -> None:
    text, problem = safeyaml.decode(raw, F)
    assert text is None and problem is not None
    assert (problem.code, problem.file, problem.line, problem.column) == \
        ("encoding", F, line, column)
    assert byte in problem.message


def test_file_too_large() -> None:
    text, problem = safeyaml.decode(b"#" * (safeyaml.MAX_FILE_BYTES + 1), F)
    assert text is None and problem is not None
    assert (problem.code, problem.line, problem.column) == ("file-too-large", 1, 1)
