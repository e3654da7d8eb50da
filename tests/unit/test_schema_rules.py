"""Schema rules (SPEC §2, docs/schemas.md): closed compact schemas and `additional`, the
`unknown_keys` setting, messages that say what is wrong without quoting a secret, patterns
evaluated in linear time (RE2) and refused when RE2 cannot evaluate them, and secrets that no
name fixes (`patternProperties`, `additionalProperties`, `items`)."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gitconf.masking import (
    Masker,
    PatternError,
    SecretKeys,
    SecretPattern,
    compile_pattern,
    pattern_search,
)
from gitconf.model import Problem
from gitconf.repo_format import load_desired, load_values
from gitconf.schema import (
    SchemaSet,
    ServiceSchema,
    compile_compact,
    packaged_schema,
    validate_values,
)
from gitconf.validation import validate_tree

SCHEMA = "payments/schema.yaml"
ENV = "payments/prod.yaml"
BASE = "payments/_base.yaml"
COMPACT_META = Draft202012Validator(packaged_schema("compact-schema.json"))
DRAFT = "https://json-schema.org/draft/2020-12/schema"
EVIL = "^(a+)+$"  # exponential for a backtracking engine on "a" * n + "!"
# ~2 s for Python's `re` (x2 for every further "a"), microseconds for RE2: a regression fails
# the time bound below instead of hanging the suite
EVIL_INPUT = "a" * 24 + "!"


class Tree:
    """The smallest `trees.Tree`: a dict of path -> text."""

    def __init__(self, files: dict[str, str]):
        self.files = {p: c.encode() for p, c in files.items()}

    def paths(self) -> list[str]:
        return sorted(self.files)

    def refused(self) -> list[Any]:
        return []

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p, self.files[p]


def compiled(doc: dict[str, Any], settings: dict[str, Any] | None = None,
             path: str = SCHEMA) -> ServiceSchema:
    schema, problems = SchemaSet(settings).compile("payments", path, doc, {}, COMPACT_META)
    assert problems == [] and schema is not None
    return schema


def check(schema: ServiceSchema, text: str, base: str | None = None) -> list[Problem]:
    """Validate `text` as the environment file (over `base`), as the loader does."""
    from gitconf.repo_format import merge_base

    env = load_values(ENV, text.encode())
    b = load_values(BASE, (base or "").encode())
    assert env.problems == [] and b.problems == []
    merged, positions = merge_base(b, env)
    return validate_values(schema, merged, positions, ENV, groups={**b.groups, **env.groups})


def brief(problems: list[Problem]) -> list[tuple[str, str, int, int, str | None]]:
    return [(p.code, p.file, p.line, p.column, p.key) for p in problems]


# ---------------------------------------------------------------------------------------------
# closed compact schemas


def test_compact_groups_compile_closed() -> None:
    out = compile_compact({"timeout": {"type": "string"}, "db": {"host": {"type": "string"}}})
    assert out["additionalProperties"] is False
    assert out["properties"]["db"]["additionalProperties"] is False


def test_additional_opens_a_group() -> None:
    out = compile_compact({
        "labels": {"additional": True},
        "partners": {"additional": {"type": "string", "secret": True, "min": 16,
                                    "required": True}},
        "strict": {"additional": False, "a": {"type": "string"}},
        "nested": {"additional": {"x": {"type": "integer"}}},  # a group named `additional`
    })
    props = out["properties"]
    assert "additionalProperties" not in props["labels"] and props["labels"]["properties"] == {}
    assert props["partners"]["additionalProperties"] == {"type": "string", "minLength": 16,
                                                         "writeOnly": True}
    assert "required" not in props["partners"]  # the directive declares no key
    assert props["strict"]["additionalProperties"] is False
    assert props["nested"]["properties"]["additional"]["properties"]["x"] == {"type": "integer"}
    assert "partners" not in out.get("required", [])


@pytest.mark.parametrize(("doc", "ok"), [
    ({"labels": {"additional": True}}, True),
    ({"additional": True, "a": {"type": "string"}}, True),
    ({"p": {"additional": {"type": "string", "secret": True}}}, True),
    ({"p": {"additional": {"x": {"type": "string"}}}}, True),
    ({"p": {"additional": "yes"}}, False),
    ({"p": {"other": True}}, False),
])
def test_compact_meta_schema_knows_additional(doc: dict[str, Any], ok: bool) -> None:
    assert (list(COMPACT_META.iter_errors(doc)) == []) is ok


def test_unknown_key_names_the_closest_sibling_at_its_own_line() -> None:
    schema = compiled({"timeout": {"type": "string"}, "retries": {"type": "integer"}})
    (p,) = check(schema, "retries: 3\ntiemout: 5s\n")
    assert brief([p]) == [("unknown-key", ENV, 2, 1, "tiemout")]
    assert p.message == "`tiemout`: not in the schema of payments; did you mean `timeout`?"
    assert p.severity == "error"


def test_unknown_nested_key_and_unknown_group() -> None:
    schema = compiled({"database": {"host": {"type": "string"}, "port": {"type": "integer"}}})
    found = check(schema, "database:\n  host: h\n  prot: 5\ndatabse:\n  host: x\n")
    assert brief(found) == [("unknown-key", ENV, 3, 3, "database.prot"),
                            ("unknown-key", ENV, 4, 1, "databse")]
    assert found[0].message.endswith("did you mean `database.port`?")
    assert found[1].message.endswith("did you mean `database`?")


def test_unknown_key_without_a_close_name_lists_the_group() -> None:
    schema = compiled({"database": {"host": {"type": "string"}}})
    (p,) = check(schema, "database:\n  zzz: 1\n")
    assert p.message == ("`database.zzz`: not in the schema of payments "
                         "(declared here: `database.host`)")


def test_unknown_key_from_the_base_file_points_there() -> None:
    schema = compiled({"a": {"type": "integer"}})
    (p,) = check(schema, "a: 1\n", base="x: 0\n")
    assert brief([p]) == [("unknown-key", BASE, 1, 1, "x")]


def test_additional_true_accepts_any_key() -> None:
    schema = compiled({"labels": {"additional": True, "team": {"type": "string"}}})
    assert check(schema, "labels:\n  team: x\n  anything: [1, 2]\n  more: {a: 1}\n") == []


def test_additional_leaf_types_undeclared_keys() -> None:
    schema = compiled({"limits": {"additional": {"type": "integer", "min": 0}}})
    assert check(schema, "limits: {a: 1, b: 2}\n") == []
    (p,) = check(schema, "limits:\n  a: 1\n  b: -1\n")
    assert brief([p]) == [("schema", ENV, 3, 3, "limits.b")]


def test_unknown_keys_warn_setting() -> None:
    schema = compiled({"timeout": {"type": "string"}}, settings={"unknown_keys": "warn"})
    (p,) = check(schema, "tiemout: 5s\n")
    assert (p.code, p.severity) == ("unknown-key", "warning")
    report = validate_tree(Tree({".gitconf.yaml": "unknown_keys: warn\n",
                                 SCHEMA: "timeout: {type: string}\n", ENV: "tiemout: 5s\n"}))
    assert report.valid and [p.severity for p in report.problems] == ["warning"]


def test_unknown_keys_setting_is_checked() -> None:
    report = validate_tree(Tree({".gitconf.yaml": "unknown_keys: ignore\n", ENV: "a: 1\n"}))
    assert [(p.code, p.line) for p in report.problems] == [("settings", 1)]


def test_json_schema_follows_its_own_additional_properties() -> None:
    open_ = {"$schema": DRAFT, "type": "object", "properties": {"a": {"type": "integer"}}}
    assert check(compiled(open_, path="payments/schema.json"), "a: 1\nb: 2\n") == []
    closed = {**open_, "additionalProperties": False}
    (p,) = check(compiled(closed, path="payments/schema.json"), "a: 1\nb: 2\n")
    assert (p.code, p.line) == ("schema", 2)  # its own code and message, at the extra key
    assert "'b' was unexpected" in p.message


# ---------------------------------------------------------------------------------------------
# missing required keys, secret messages


def test_missing_required_key_points_at_its_parent() -> None:
    schema = compiled({"database": {"host": {"type": "string", "required": True},
                                    "port": {"type": "integer"},
                                    "password": {"type": "string", "secret": True}}})
    (p,) = check(schema, "database:\n  port: 1\n  password: hunter2\n")
    assert brief([p]) == [("schema", ENV, 1, 1, "database.host")]
    assert p.message == "`database.host` is required but missing"
    assert not p.secret  # the parent's line holds no secret: shown as written


def test_missing_required_in_a_flow_group_with_a_secret_masks_the_line() -> None:
    schema = compiled({"database": {"host": {"type": "string", "required": True},
                                    "password": {"type": "string", "secret": True}}})
    (p,) = [p for p in check(schema, "x: 1\ndatabase: {password: hunter2}\n")
            if p.key == "database.host"]
    assert (p.line, p.key, p.secret) == (2, "database.host", True)


def test_missing_required_top_level_key_points_at_line_one() -> None:
    schema = compiled({"a": {"type": "string"}, "token": {"type": "string", "required": True}})
    (p,) = check(schema, "\n\na: x\n")
    assert brief([p]) == [("schema", ENV, 1, 1, "token")]
    assert p.message == "`token` is required but missing"


def test_two_missing_keys_of_one_group_are_two_problems() -> None:
    schema = compiled({"db": {"host": {"type": "string", "required": True},
                              "user": {"type": "string", "required": True},
                              "port": {"type": "integer"}}})
    found = check(schema, "db:\n  port: 1\n")
    assert sorted(p.key or "" for p in found) == ["db.host", "db.user"]
    assert {(p.line, p.column) for p in found} == {(1, 1)}


def test_missing_required_under_a_group_written_as_dotted_keys() -> None:
    schema = compiled({"db": {"host": {"type": "string", "required": True},
                              "port": {"type": "integer"}}})
    (p,) = check(schema, '"db.port": 1\n')
    assert brief([p]) == [("schema", ENV, 1, 1, "db.host")]


def test_missing_required_inside_an_array_item_points_at_the_array() -> None:
    doc = {"$schema": DRAFT, "type": "object", "properties": {"routes": {
        "type": "array", "items": {"type": "object", "required": ["path"]}}}}
    (p,) = check(compiled(doc, path="payments/schema.json"), "x: 1\nroutes: [{to: a}]\n")
    assert (p.line, p.key, p.message) == (2, "routes.0.path",
                                          "`routes.0.path` is required but missing")


def test_secret_wrong_type_says_what_was_expected() -> None:
    schema = compiled({"database": {"password": {"type": "string", "secret": True, "min": 12}}})
    (p,) = check(schema, "database:\n  password: 12345\n")
    assert p.message == "`database.password`: expected string (value is secret, not shown)"
    assert (p.line, p.column, p.secret) == (2, 3, True)
    (p,) = check(schema, "database:\n  password: hunter2\n")
    assert p.message == ("`database.password`: expected at least 12 characters "
                         "(value is secret, not shown)")
    assert "hunter2" not in p.message


def test_an_error_on_a_group_holding_a_secret_quotes_no_value() -> None:
    doc = {"$schema": DRAFT, "type": "object",
           "properties": {"db": {"type": "object", "maxProperties": 1,
                                 "properties": {"password": {"writeOnly": True}}}}}
    (p,) = check(compiled(doc, path="payments/schema.json"),
                 "db:\n  password: hunter2\n  host: h\n")
    assert p.message == "`db`: expected at most 1 keys (it holds a secret, not shown)"


# ---------------------------------------------------------------------------------------------
# patterns: linear time, refused constructs, invalid regexes


def test_pattern_search_is_linear() -> None:
    start = time.monotonic()
    assert not pattern_search(EVIL, "a" * 5000 + "!")
    assert pattern_search(EVIL, "a" * 5000)
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize(("pattern", "text", "hit"), [
    (r"^\u0041$", "A", True),
    (r"^\u{1F600}$", "\U0001F600", True),
    (r"^\\u0041$", "\\u0041", True),  # an escaped backslash, then a literal `u0041`
    (r"^\cA$", "\x01", True),
    (r"^\d+$", "١٢", False),  # ECMA-262 `\d` is ASCII
    (r"^a$", "a\n", False),  # ECMA-262 `$` is the end, not "before a final newline"
    (r"^[a-z]+\.[a-z]{2,}$", "example.com", True),
])
def test_ecma_patterns_evaluate_as_ecma_262(pattern: str, text: str, hit: bool) -> None:
    assert pattern_search(pattern, text) is hit


@pytest.mark.parametrize(("pattern", "construct"), [
    (r"(a)\1", True),
    (r"(?<x>a)\k<x>", True),
    ("(?=a)b", True),
    ("(?!a)b", True),
    ("(?<=a)b", True),
    ("(?<!a)b", True),
    ("(", False),
    ("[", False),
    ("a{1001}", False),
])
def test_patterns_re2_cannot_evaluate(pattern: str, construct: bool) -> None:
    with pytest.raises(PatternError) as exc:
        compile_pattern(pattern)
    assert exc.value.construct is construct


@pytest.mark.parametrize("doc", [
    {"name": {"type": "string", "pattern": EVIL}},
    {"$schema": DRAFT, "type": "object", "properties": {"name": {"pattern": EVIL}}},
    {"$schema": DRAFT, "type": "object", "patternProperties": {EVIL: {"type": "integer"}}},
    {"$schema": DRAFT, "type": "object", "patternProperties": {EVIL: {}},
     "additionalProperties": {"type": "integer"}},
    {"$schema": DRAFT, "type": "object", "patternProperties": {EVIL: {}},
     "unevaluatedProperties": {"type": "integer"}},
    {"$schema": DRAFT, "type": "object", "propertyNames": {"pattern": EVIL}},
])
def test_redos_patterns_do_not_hang_validation(doc: dict[str, Any]) -> None:
    schema = compiled(doc, path="payments/schema.json" if "$schema" in doc else SCHEMA)
    schema.fast = None  # python-jsonschema's own pass, the one that explains errors
    values: dict[str, Any] = {"name": EVIL_INPUT}
    if "$schema" in doc:  # keys meet `patternProperties` / `propertyNames` too
        values.update({EVIL_INPUT: "x", "a" * 40: "x"})
    start = time.monotonic()
    found = validate_values(schema, values, {}, ENV)
    assert time.monotonic() - start < 0.25
    assert found  # each of them refuses something


def test_pattern_properties_and_unevaluated_properties_still_work() -> None:
    doc = {"$schema": DRAFT, "type": "object", "patternProperties": {"^x_": {"type": "integer"}},
           "unevaluatedProperties": False}
    schema = compiled(doc, path="payments/schema.json")
    schema.fast = None
    assert validate_values(schema, {"x_a": 1}, {}, ENV) == []
    assert [p.key for p in validate_values(schema, {"x_a": "s"}, {}, ENV)] == ["x_a"]
    (p,) = validate_values(schema, {"x_a": 1, "y": 2}, {}, ENV)
    assert "'y' was unexpected" in p.message


def refused(files: dict[str, str]) -> list[tuple[str, str, int, int, str]]:
    report = validate_tree(Tree(files))
    return [(p.code, p.file, p.line, p.column, p.message) for p in report.problems]


def test_invalid_regex_in_a_compact_leaf_is_a_positioned_problem() -> None:
    ((code, file, line, column, message),) = refused({
        SCHEMA: "a: {type: string}\nb: {type: string, pattern: \"(\"}\n", ENV: "a: x\n"})
    assert (code, file, line, column) == ("schema", SCHEMA, 2, 19)
    assert message.startswith("invalid regular expression '('")


def test_invalid_pattern_properties_key_is_a_positioned_problem() -> None:
    ((code, file, line, column, message),) = refused({
        "payments/schema.json": '{"type": "object",\n "patternProperties": {\n  "(": {}\n }}\n',
        ENV: "a: x\n"})
    assert (code, file, line, column) == ("schema", "payments/schema.json", 3, 3)
    assert "invalid regular expression '('" in message


def test_backreference_and_lookaround_are_refused() -> None:
    found = refused({SCHEMA: "a: {type: string, pattern: '(x)\\1'}\n"
                             "b: {type: string, items: {pattern: '(?<!x)y'}}\n",
                     ENV: "a: x\n"})
    assert [(c, f, line, col) for c, f, line, col, _ in found] == [
        ("schema", SCHEMA, 1, 19), ("schema", SCHEMA, 2, 27)]
    for *_, message in found:
        assert message.startswith("pattern uses a construct gitconf does not evaluate "
                                  "(backreference/lookaround): ")


def test_invalid_regex_in_a_shared_schema() -> None:
    found = refused({"schemas/common.yaml": "$defs:\n  host:\n    pattern: '('\n",
                     ENV: "a: x\n"})
    assert [(c, f, line) for c, f, line, _, _ in found] == [("schema", "schemas/common.yaml", 3)]


def test_words_that_look_like_keywords_are_not_patterns() -> None:
    doc = {"$schema": DRAFT, "type": "object",
           "properties": {"pattern": {"type": "string"}, "patternProperties": {"type": "string"}},
           "examples": [{"pattern": "("}], "enum": [{"pattern": "("}]}
    compiled(doc, path="payments/schema.json")  # no problem
    compiled({"pattern": {"type": "string"}, "patternProperties": {"x": {"type": "string"}}})


# ---------------------------------------------------------------------------------------------
# secrets without a fixed name


def test_write_only_pattern_and_additional_properties_are_rules() -> None:
    doc = {"$schema": DRAFT, "type": "object", "properties": {
        "tokens": {"type": "object", "patternProperties": {"^tok_": {"writeOnly": True}}},
        "creds": {"type": "object", "properties": {"user": {"type": "string"}},
                  "patternProperties": {"^pub_": {}},
                  "additionalProperties": {"type": "string", "writeOnly": True}},
        "plain": {"type": "string"}}}
    schema = compiled(doc, path="payments/schema.json")
    assert set(schema.secret_keys) == set()
    assert set(schema.secret_keys.patterns) == {
        SecretPattern("tokens", "^tok_"),
        SecretPattern("creds", None, frozenset({"user"}), ("^pub_",)),
    }
    for key, secret in [("tokens.tok_a", True), ("tokens.other", False), ("creds.pw", True),
                        ("creds.user", False), ("creds.pub_key", False), ("plain", False),
                        ("creds.pw.deeper", True)]:
        assert schema.is_secret(key) is secret, key


def test_compact_additional_secret_is_a_rule() -> None:
    schema = compiled({"partners": {"known": {"type": "string"},
                                    "additional": {"type": "string", "secret": True}}})
    assert schema.is_secret("partners.acme") and not schema.is_secret("partners.known")
    assert schema.secret_keys_of(["partners.acme", "partners.known", "x"]) == {"partners.acme"}


def test_secret_below_a_pattern_child_and_inside_items() -> None:
    doc = {"$schema": DRAFT, "type": "object", "properties": {
        "clients": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"secret": {"writeOnly": True},
                                             "name": {"type": "string"}}}},
        "keys": {"type": "array", "items": {"type": "string", "writeOnly": True}},
        "deep": {"type": "object", "patternProperties": {"^a": {"patternProperties": {
            "^b": {"writeOnly": True}}}}}}}
    schema = compiled(doc, path="payments/schema.json")
    assert schema.is_secret("clients.web.secret") and not schema.is_secret("clients.web.name")
    assert schema.is_secret("keys")  # an array is one value: a secret item makes it secret
    assert schema.is_secret("deep.a1.anything")  # two free levels: the first masks it all
    assert schema.secret_keys_of(["clients.web.secret", "clients.web.name", "deep.ax.b"]) == {
        "keys", "clients.web.secret", "deep.ax"}


def test_secret_keys_keep_working_as_a_frozenset() -> None:
    keys = SecretKeys({"a"}, [SecretPattern("g", "^s")])
    assert keys == {"a"} and isinstance(keys, frozenset)
    again = pickle.loads(pickle.dumps(keys))  # units travel between loader processes
    assert again.patterns == keys.patterns and again == keys
    masker = Masker.of(keys, ("b",), show=False)
    assert masker.is_secret("g.s1") and masker.is_secret("b.x") and not masker.is_secret("g.x")
    assert Masker.of(["a"]).patterns == ()


def test_desired_units_remember_the_keys_a_rule_matched() -> None:
    state = load_desired(Tree({
        SCHEMA: "partners:\n  additional: {type: string, secret: true}\nx: {type: integer}\n",
        ENV: "partners: {acme: s3cret-acme-value}\nx: 1\n"}))
    (unit,) = state.units.values()
    assert set(unit.secret_keys) == {"partners.acme"}
    assert getattr(unit.secret_keys, "patterns", ())  # and the rule, for keys yet to come


def test_no_problem_quotes_a_pattern_secret() -> None:
    files = {SCHEMA: "partners:\n  additional: {type: string, secret: true, min: 30}\n",
             ENV: "partners:\n  acme: S3CRET-short\n  globex: [S3CRET-list]\n"}
    report = validate_tree(Tree(files))
    assert [p.key for p in report.problems] == ["partners.acme", "partners.globex"]
    for p in report.problems:
        assert "S3CRET" not in p.message and p.secret
