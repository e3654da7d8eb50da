"""`yamledit`: in-place edits of a values file for an override's follow-up pull request (SPEC §5).

The diff of a follow-up pull request must show only the overridden lines, so most tests assert
the exact output text; the property tests check that any edit means exactly what was asked.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gitconf import yamledit
from gitconf.yamledit import UNSET, EditError, apply_edits, set_key, unset_key

F = "payments/prod.yaml"


def load(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """The test's own flatten (SPEC §2): nested mappings to dotted keys, `{}` and lists leaves."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        flat_key = f"{prefix}.{key}" if prefix else key
        nested = flatten(value, flat_key) if isinstance(value, dict) and value else {
            flat_key: value}
        assert not out.keys() & nested.keys(), "two spellings of one key"
        out.update(nested)
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.ndiff(old.splitlines(), new.splitlines())
            if line[:1] in "+-"]


PROD = """\
# payments / prod
database:
  # connection pool
  pool_size: 50   # tuned in INC-2211
  host: db.prod.internal

  timeout: 30
cache:
  ttl: 60
"""


# --------------------------------------------------------------------------- setting values


def test_set_changes_only_the_value_and_keeps_the_line_comment() -> None:
    out = set_key(PROD, "database.pool_size", 80, file=F)
    assert out == PROD.replace("pool_size: 50   #", "pool_size: 80   #")
    assert changed_lines(PROD, out) == ["- " + "  pool_size: 50   # tuned in INC-2211",
                                        "+ " + "  pool_size: 80   # tuned in INC-2211"]


def test_set_keeps_blank_lines_and_comments_between_keys() -> None:
    out = set_key(PROD, "database.timeout", 5, file=F)
    assert out == PROD.replace("timeout: 30", "timeout: 5")


def test_crlf_file_stays_crlf_everywhere() -> None:
    text = PROD.replace("\n", "\r\n")
    out = set_key(text, "cache.ttl", 120, file=F)
    assert out == text.replace("ttl: 60", "ttl: 120")
    out = set_key(text, "database.replica.host", "db2", file=F)
    assert out == text.replace(
        "  timeout: 30\r\n",
        "  timeout: 30\r\n  replica:\r\n    host: db2\r\n")
    out = unset_key(text, "database.host", file=F)
    assert out == text.replace("  host: db.prod.internal\r\n", "")
    assert "\n" not in out.replace("\r\n", "")


def test_no_final_newline_is_kept() -> None:
    text = "a: 1\nb:\n  c: 2"
    assert set_key(text, "b.c", 3) == "a: 1\nb:\n  c: 3"
    assert set_key(text, "b.d", 4) == "a: 1\nb:\n  c: 2\n  d: 4"
    assert set_key(text, "e", 5) == "a: 1\nb:\n  c: 2\ne: 5"
    assert unset_key(text, "b.c") == "a: 1"
    assert unset_key("a: 1\r\nb: 2", "b") == "a: 1"


def test_final_newline_is_kept() -> None:
    assert unset_key("a: 1\nb: 2\n", "b") == "a: 1\n"
    assert set_key("a: 1\n", "b", 2) == "a: 1\nb: 2\n"


def test_flow_mapping_is_patched_inside() -> None:
    text = "db: {pool: 5, host: x}  # inline\nother: 1\n"
    assert set_key(text, "db.pool", 80) == "db: {pool: 80, host: x}  # inline\nother: 1\n"
    assert set_key(text, "db.port", 5432) == (
        "db: {pool: 5, host: x, port: 5432}  # inline\nother: 1\n")
    assert set_key(text, "db.tls.ca", "a, b") == (
        'db: {pool: 5, host: x, tls: {ca: "a, b"}}  # inline\nother: 1\n')
    assert set_key("db: {}\n", "db.pool", 1) == "db: {pool: 1}\n"
    assert unset_key(text, "db.pool") == "db: {host: x}  # inline\nother: 1\n"
    assert unset_key(text, "db.host") == "db: {pool: 5}  # inline\nother: 1\n"
    multi = "db: {\n  pool: 5,\n  host: x\n}\n"
    assert unset_key(multi, "db.host") == "db: {\n  pool: 5\n}\n"


def test_quote_style_of_the_old_value_is_kept() -> None:
    text = "a: 'old'\nb: \"old\"\nc: old\n"
    assert set_key(text, "a", "new") == "a: 'new'\nb: \"old\"\nc: old\n"
    assert set_key(text, "a", "it's") == "a: 'it''s'\nb: \"old\"\nc: old\n"
    assert set_key(text, "b", "new") == "a: 'old'\nb: \"new\"\nc: old\n"
    assert set_key(text, "b", 'say "hi"\n') == 'a: \'old\'\nb: "say \\"hi\\"\\n"\nc: old\n'
    assert set_key(text, "c", "new") == "a: 'old'\nb: \"old\"\nc: new\n"
    # single quotes cannot hold a line break: double quotes then
    assert set_key(text, "a", "two\nlines") == 'a: "two\\nlines"\nb: "old"\nc: old\n'
    # a quoted old value and a new number: the number is not quoted
    assert set_key(text, "a", 5) == "a: 5\nb: \"old\"\nc: old\n"


AMBIGUOUS = [
    "yes", "no", "on", "off", "y", "n", "Yes", "NO", "true", "False", "TRUE", "null", "Null",
    "~", "", " ", " lead", "trail ", "1e3", "1.5", "012", "0x1F", "0o17", "0b101", "1_000",
    "+1", "-1", ".5", "1.", "2025-01-01", "2025-01-01 10:00:00", "12:30", "190:20:30", ".inf",
    "-.inf", ".nan", ".NaN", "=", "<<", "a: b", "a #b", "a#b", "#x", "*ref", "&anc", "!tag",
    "|lit", ">fold", "'q", '"q', "%p", "@at", "`tick", "- item", "-", "?", "? q", ":", ":x",
    "x:", "[a]", "{a: 1}", "a, b", "a,b", "tab\tin", "new\nline", "cr\rx", "nel\x85x",
    "ls\u2028x", "bom\ufeffx", "nul\x00x", "del\x7fx", "back\\slash", "Zürich", "😀",
    "http://example.com/a?b=c#frag", "key: value # not a comment", "0", "-0", "0.0", "1e-5",
]


@pytest.mark.parametrize("value", AMBIGUOUS)
def test_ambiguous_strings_read_back_as_strings(value: str) -> None:
    for text, key in [("a: x\n", "a"), ("a: 'x'\n", "a"), ('a: "x"\n', "a"),
                      ("a: {b: x, c: 1}\n", "a.b"), ("a: 1\n", "n.e.w"), ("a: {}\n", "a.b"),
                      ("a: x\n", "a.list")]:
        wanted: Any = [value] if key == "a.list" else value
        out = set_key(text, key, wanted)
        assert same(flatten(load(out))[key], wanted), (text, out)


def test_plain_where_safe_quoted_where_not() -> None:
    assert set_key("a: x\n", "a", "db.prod.internal") == "a: db.prod.internal\n"
    assert set_key("a: x\n", "a", "Köln 🚀") == "a: Köln 🚀\n"
    assert set_key("a: x\n", "a", "yes") == 'a: "yes"\n'
    assert set_key("a: x\n", "a", "2025-01-01") == 'a: "2025-01-01"\n'
    assert set_key("a: x\n", "a", "") == 'a: ""\n'
    assert set_key("a: x\n", "a", "- item") == 'a: "- item"\n'


def test_non_scalar_and_number_values() -> None:
    text = "a: 1  # c\n"
    assert set_key(text, "a", 1.0) == "a: 1.0  # c\n"
    assert set_key(text, "a", 1e20) == "a: 1.0e+20  # c\n"
    assert set_key(text, "a", -2.5e-7) == "a: -2.5e-07  # c\n"
    assert set_key(text, "a", 10**30) == f"a: {10**30}  # c\n"
    assert set_key(text, "a", True) == "a: true  # c\n"
    assert set_key(text, "a", None) == "a: null  # c\n"
    assert set_key(text, "a", [1, "x y", None]) == "a: [1, x y, null]  # c\n"
    assert set_key(text, "a", {"k": [], "on": {}}) == 'a: {k: [], "on": {}}  # c\n'
    assert load(set_key(text, "a", 1.0))["a"].__class__ is float
    with pytest.raises(EditError, match="not JSON"):
        set_key(text, "a", math.nan)
    with pytest.raises(EditError, match="not JSON"):
        set_key(text, "a", object())


def test_non_ascii_text_elsewhere_is_kept_byte_for_byte() -> None:
    text = 'name: "Zürich"  # café ☕\ncity: München 😀\nemoji: "🚀"\nn: 1\n'
    out = set_key(text, "n", 2)
    assert out.encode() == text.encode().replace(b"n: 1", b"n: 2")
    out = set_key(text, "emoji", "🛰 ok")
    assert out == text.replace('"🚀"', '"🛰 ok"')


def test_bom_is_kept() -> None:
    assert set_key("\ufeffa: 1\n", "a", 2) == "\ufeffa: 2\n"


def test_block_value_replaced_by_a_scalar_and_back() -> None:
    text = "a:   # the a\n  x: 1\n  # inner\n  y:\n  - 1\n  - 2\n# after\nb: 1\n"
    assert set_key(text, "a", 5) == "a: 5   # the a\n# after\nb: 1\n"
    assert set_key(text, "a", [1]) == "a: [1]   # the a\n# after\nb: 1\n"
    assert set_key(text, "a.y", "s") == "a:   # the a\n  x: 1\n  # inner\n  y: s\n# after\nb: 1\n"
    lit = "a: |\n  one\n  two\n\nb: 1\n"
    assert set_key(lit, "a", "x") == "a: x\n\nb: 1\n"
    keep = "a: |+\n  one\n\nb: 1\n"
    assert set_key(keep, "a", "x") == "a: x\nb: 1\n"
    assert set_key("a: 1\nb: 2\n", "a", {"x": 1, "y": [2]}) == "a: {x: 1, y: [2]}\nb: 2\n"
    assert set_key("a:\nb: 2\n", "a", 1) == "a: 1\nb: 2\n"


# --------------------------------------------------------------------------- inserting keys


def test_nested_insert_goes_after_the_parents_last_child() -> None:
    out = set_key(PROD, "database.replica.host", "db2", file=F)
    assert out == PROD.replace("  timeout: 30\n",
                               "  timeout: 30\n  replica:\n    host: db2\n")
    out = set_key(PROD, "cache.size", 10, file=F)
    assert out == PROD + "  size: 10\n"
    out = set_key(PROD, "feature_flags.new_checkout", True, file=F)
    assert out == PROD + "feature_flags:\n  new_checkout: true\n"


def test_insert_uses_the_files_indentation_step() -> None:
    text = "a:\n    b: 1\n"
    assert set_key(text, "a.c.d", 2) == "a:\n    b: 1\n    c:\n        d: 2\n"
    assert set_key(text, "x.y", 2) == "a:\n    b: 1\nx:\n    y: 2\n"


def test_insert_into_an_empty_or_comment_only_file() -> None:
    assert set_key("", "database.pool_size", 80) == "database:\n  pool_size: 80\n"
    assert set_key("# nothing yet\n", "a", 1) == "# nothing yet\na: 1\n"
    assert set_key("# nothing yet", "a", 1) == "# nothing yet\na: 1"
    assert set_key("---\n", "a", 1) == "---\na: 1\n"
    assert set_key("{}\n", "a", 1) == "{a: 1}\n"


def test_insert_after_a_multiline_last_child() -> None:
    text = "a:\n  s: |\n    one\n    two\n  l:\n  - 1\n  - 2\n\n# end\n"
    assert set_key(text, "a.n", 1) == (
        "a:\n  s: |\n    one\n    two\n  l:\n  - 1\n  - 2\n  n: 1\n\n# end\n")


def test_literal_dotted_keys_are_found_and_kept() -> None:
    text = '"a.b":\n  c: 1\nx.y: 2\n'
    assert set_key(text, "a.b.c", 5) == '"a.b":\n  c: 5\nx.y: 2\n'
    assert set_key(text, "x.y", 3) == '"a.b":\n  c: 1\nx.y: 3\n'
    assert set_key(text, "a.b.d", 4) == '"a.b":\n  c: 1\n  d: 4\nx.y: 2\n'
    assert unset_key(text, "a.b.c") == "x.y: 2\n"


def test_key_under_a_scalar_becomes_a_literal_dotted_key() -> None:
    # `a` stays a value of its own: in flattened form `a` and `a.b` are two keys
    assert set_key("a: 5\n", "a.b", 2) == "a: 5\na.b: 2\n"
    assert set_key("a: {}\n", "a.b", 2) == "a: {b: 2}\n"


# --------------------------------------------------------------------------- unsetting keys


def test_unset_removes_a_whole_block_value() -> None:
    text = "a: 1\nb:\n  x: 1\n  # inner\n  y: [1,\n    2]\nc: 3\n"
    assert unset_key(text, "b") == "a: 1\nc: 3\n"
    assert unset_key(text, "b.y") == "a: 1\nb:\n  x: 1\n  # inner\nc: 3\n"
    assert unset_key("a: |\n  x\n  y\nb: 1\n", "a") == "b: 1\n"


def test_unset_of_the_last_key_removes_the_emptied_parent() -> None:
    text = "a: 1\ndb:\n  tls:\n    ca: x\nz: 2\n"
    assert unset_key(text, "db.tls.ca") == "a: 1\nz: 2\n"
    assert set_key(text, "db.tls", {}) == "a: 1\ndb:\n  tls: {}\nz: 2\n"
    assert unset_key("db: {pool: 5}\nz: 1\n", "db.pool") == "z: 1\n"
    assert unset_key("a: 1\n", "a") == ""
    assert unset_key("{a: 1}\n", "a") == "{}\n"


def test_unset_keeps_comments_of_an_emptied_parent() -> None:
    text = "db:   # primary\n  # the pool\n  pool: 5  # gone with its line\nz: 1\n"
    assert unset_key(text, "db.pool") == "# primary\n  # the pool\nz: 1\n"


def test_unset_of_a_missing_key_is_an_error() -> None:
    with pytest.raises(EditError, match=r"payments/prod.yaml: key 'database.nope' is not"):
        unset_key(PROD, "database.nope", file=F)
    with pytest.raises(EditError):
        unset_key("", "a")


# --------------------------------------------------------------------------- anchors, merges


def test_alias_value_is_replaced_in_place() -> None:
    assert set_key("a: &x 1\nb: *x\n", "b", 2) == "a: &x 1\nb: 2\n"
    assert unset_key("a: &x 1\nb: *x\n", "b") == "a: &x 1\n"


def test_shared_anchor_is_refused() -> None:
    text = "base: &b\n  pool: 5\nprod: *b\nx: &v 1\ny: *v\n"
    with pytest.raises(EditError, match=r"anchored as &b.*line 3"):
        set_key(text, "base.pool", 6)
    with pytest.raises(EditError, match="anchored as &v"):
        set_key(text, "x", 2)
    with pytest.raises(EditError, match="anchored as &v"):
        unset_key(text, "x")
    with pytest.raises(EditError, match="anchored as &b"):
        set_key(text, "base.new", 1)
    with pytest.raises(EditError, match="alias"):
        set_key(text, "prod.pool", 6)
    # an anchor that nothing reuses is no obstacle, and it stays
    assert set_key("a: &x 1\nb: 2\n", "a", 3) == "a: &x 3\nb: 2\n"


def test_merged_key_gets_an_explicit_entry() -> None:
    text = "base: &b\n  pool: 5\n  host: x\nprod:\n  <<: *b\n  host: y\n"
    out = set_key(text, "prod.pool", 80)
    assert out == text + "  pool: 80\n"
    assert flatten(load(out))["base.pool"] == 5
    with pytest.raises(EditError, match="merge key"):
        unset_key(text, "prod.pool")
    # removing the explicit entry would let the merged value through: refused
    with pytest.raises(EditError, match="intended values"):
        unset_key(text, "prod.host")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("text", "line"), [
    ("a: [1\nb: 2\n", 2),
    ("a: 1\n b: 2\n", 2),
    ("a: 1\n---\nb: 2\n", 2),
    ("a:\n\tb: 1\n", 2),
    ("a: 1\ra: 2\n", 1),
])
def test_unreadable_files_are_refused_with_file_and_line(text: str, line: int) -> None:
    with pytest.raises(EditError, match=rf"^{F}:{line}: "):
        set_key(text, "a", 1, file=F)


def test_other_refusals() -> None:
    with pytest.raises(EditError, match="not a mapping"):
        set_key("- 1\n", "a", 1)
    with pytest.raises(EditError, match="not a string"):
        set_key("1: x\n", "a", 1)
    with pytest.raises(EditError, match=r"written more than once|twice"):
        set_key("a:\n  b: 1\na.b: 2\n", "a.b", 1)
    with pytest.raises(EditError, match="empty segment"):
        set_key("a: 1\n", "a..b", 1)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
        for i in range(8))
    with pytest.raises(EditError, match="YAML bomb"):
        set_key(bomb, "z", 1)


def test_the_safety_net_refuses_a_wrong_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamledit, "_render_float", lambda value: "1")
    with pytest.raises(EditError, match=r"intended values \(wrong: 'a'\)"):
        set_key("a: 0.5\n", "a", 1.5)


def test_apply_edits_several_keys_at_once() -> None:
    out = apply_edits(PROD, {"database.pool_size": 80, "cache.ttl": UNSET,
                             "database.replica.host": "db2"}, file=F)
    assert out == (
        "# payments / prod\ndatabase:\n  # connection pool\n  pool_size: 80   # tuned in "
        "INC-2211\n  host: db.prod.internal\n\n  timeout: 30\n  replica:\n    host: db2\n")


# --------------------------------------------------------------------------- properties

KEY = st.from_regex(r"[abxy_]{1,2}(\.[abxy_]{1,2})?", fullmatch=True)
VALUE_KEY = st.from_regex(r"[abxy_]{1,3}", fullmatch=True)
TEXT = st.one_of(st.sampled_from(AMBIGUOUS),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                 st.text("ab :#-'\"\\,[]{}", max_size=8))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                   st.floats(allow_nan=False, allow_infinity=False), TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(VALUE_KEY, inner, max_size=3), max_leaves=6)
DOC = st.recursive(st.dictionaries(KEY, SCALAR | st.lists(SCALAR, max_size=2), max_size=4),
                   lambda inner: st.dictionaries(KEY, inner | SCALAR, max_size=4), max_leaves=10)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A nested document dumped as YAML, in one of the shapes real files take, with comments
    and blank lines sprinkled where they do not change what it means."""
    doc = draw(DOC)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False,
                          default_flow_style=draw(st.sampled_from([False, None])),
                          indent=draw(st.sampled_from([2, 4])))
    try:
        flat = flatten(load(text))
    except AssertionError:  # two spellings of one key: not a valid gitconf file
        assume(False)
    lines = text.split("\n")
    for at in draw(st.lists(st.integers(0, len(lines) - 1), max_size=3)):
        lines[at] += "  # note ü"
    for at in draw(st.lists(st.integers(0, len(lines) - 1), max_size=3)):
        lines.insert(at, draw(st.sampled_from(["# comment", "", "    # indented"])))
    commented = "\n".join(lines)
    try:
        assume(same(flatten(load(commented)), flat))
        text = commented
    except (yaml.YAMLError, AssertionError):
        pass
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text, flat


@st.composite
def target_keys(draw: st.DrawFn, flat: dict[str, Any]) -> str:
    """An existing key, a prefix of one (a whole mapping), or a new key somewhere."""
    existing = sorted(flat)
    if existing and draw(st.booleans()):
        return draw(st.sampled_from(existing))
    base = draw(st.sampled_from(existing)).split(".") if existing else []
    base = base[: draw(st.integers(0, len(base)))]
    new = draw(st.lists(st.sampled_from(["n", "m_", "b", "x"]), min_size=0, max_size=2))
    key = ".".join(base + new)
    assume(key)
    return key


def replaced_keys(data: Any, key: str) -> set[str]:
    """The flat keys an edit of `key` replaces: the key and those nested in its own entry (keys
    under it written elsewhere as literal dotted keys are separate entries and stay), and the
    `{}` leaf of an empty mapping that a new key goes into."""
    found: list[set[str]] = []
    deepest: list[tuple[int, str, Any]] = [(len(key), "", data)]

    def walk(mapping: dict[str, Any], rest: str, prefix: str) -> None:
        for name, value in mapping.items():
            if rest == name:
                nested = flatten(value) if isinstance(value, dict) and value else {}
                found.append({f"{key}.{sub}" for sub in nested} or {key})
            elif rest.startswith(name + ".") and isinstance(value, dict):
                spelled = f"{prefix}.{name}" if prefix else name
                deepest.append((len(rest) - len(name) - 1, spelled, value))
                walk(value, rest[len(name) + 1:], spelled)

    walk(data or {}, key, "")
    if found:  # spelled as a leaf and as a mapping: the flat key is the leaf
        return {key} if {key} in found else found[0]
    _, prefix, mapping = min(deepest, key=lambda d: d[0])
    return {key, prefix} if prefix and mapping == {} else {key}


def expected_after_set(text: str, flat: dict[str, Any], key: str,
                       value: Any) -> dict[str, Any] | None:
    """The intended flat values, or None where the result cannot be written (a key under
    `key` that stays, spelled elsewhere, would be written a second time by the new value)."""
    replaced = replaced_keys(load(text), key)
    kept = {k: v for k, v in flat.items() if k not in replaced}
    new = flatten({key: value}) if value != {} else {key: {}}
    if kept.keys() & new.keys():
        return None
    return kept | new


def check_layout(old: str, new: str) -> None:
    if "\r\n" in old:
        assert "\n" not in new.replace("\r\n", "")
    if old.endswith("\n"):
        assert not new or new.endswith("\n")
    elif "\n\n" not in old.replace("\r\n", "\n"):  # (a blank line may become the last line)
        assert not new.endswith("\n")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_set_means_exactly_the_edit(data: st.DataObject) -> None:
    text, flat = data.draw(documents())
    key = data.draw(target_keys(flat))
    value = data.draw(VALUE)
    expected = expected_after_set(text, flat, key, value)
    if expected is None:
        with pytest.raises(EditError):
            set_key(text, key, value)
        return
    out = set_key(text, key, value)
    assert same(flatten(load(out)), expected), out
    check_layout(text, out)
    if not any(k == key or k.startswith(key + ".") for k in flat):
        # a new key: lines are only added (one line changes where a flow mapping grows)
        removed = [line for line in changed_lines(text, out) if line.startswith("- ")]
        assert len(removed) <= 1, changed_lines(text, out)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_unset_removes_exactly_the_key(data: st.DataObject) -> None:
    text, flat = data.draw(documents())
    assume(flat)
    key = data.draw(st.sampled_from(sorted(flat)))
    out = unset_key(text, key)
    assert same(flatten(load(out)), {k: v for k, v in flat.items() if k != key}), out
    check_layout(text, out)
    # lines are only removed, save a flow mapping losing an entry or a comment kept on its own
    added = [line[2:] for line in changed_lines(text, out) if line.startswith("+ ")]
    assert all(line.lstrip().startswith("#") or "{" in line or "}" in line
               for line in added), added
