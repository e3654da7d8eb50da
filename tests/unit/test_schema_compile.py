"""Service schemas (SPEC §2 "Schemas"): the compact form compiled to JSON Schema 2020-12,
secrets, `unflatten`, and validation problems positioned on the key that caused them, with
secret values never quoted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from gitconf.model import Position, Problem
from gitconf.repo_format import load_values, merge_base
from gitconf.schema import (
    SchemaSet,
    ServiceSchema,
    compact_meta_validator,
    compile_compact,
    is_compact,
    unflatten,
    validate_values,
)
from gitconf.validation import validate_tree

SCHEMA = "svc/schema.yaml"
ENV = "svc/prod.yaml"
COMPACT_META = compact_meta_validator()  # `format: regex` asserted, by RE2
DRAFT = "https://json-schema.org/draft/2020-12/schema"


class Tree:
    """The smallest `trees.Tree`: a dict of path -> bytes."""

    def __init__(self, files: Mapping[str, bytes | str]):
        self.files = {p: c.encode() if isinstance(c, str) else c for p, c in files.items()}

    def paths(self) -> list[str]:
        return sorted(self.files)

    def refused(self) -> list[Any]:
        return []

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p, self.files[p]


def compile_schema(doc: dict[str, Any], shared: dict[str, Any] | None = None) -> ServiceSchema:
    schemas = SchemaSet()
    for path, sdoc in (shared or {}).items():
        schemas.add_shared(path, sdoc)
    schema, problems = schemas.compile("svc", SCHEMA, doc, {}, COMPACT_META)
    assert problems == [] and schema is not None
    return schema


def validate(schema: ServiceSchema, text: str) -> list[Problem]:
    loaded = load_values(ENV, text.encode())
    assert loaded.problems == []
    return validate_values(schema, loaded.values, loaded.positions, ENV)


def problems_of(files: Mapping[str, bytes | str]) -> list[tuple[str, str, int, int, str | None]]:
    report = validate_tree(Tree(files))
    return [(p.code, p.file, p.line, p.column, p.key) for p in report.problems]


# ---------------------------------------------------------------------------------------------
# compact form -> JSON Schema


@pytest.mark.parametrize(
    ("leaf", "compiled"),
    [
        ({"type": "integer", "min": 1, "max": 1000}, {"type": "integer", "minimum": 1,
                                                      "maximum": 1000}),
        ({"type": "number", "min": 0.5}, {"type": "number", "minimum": 0.5}),
        ({"type": "string", "min": 2, "max": 8}, {"type": "string", "minLength": 2,
                                                  "maxLength": 8}),
        ({"type": "array", "min": 1, "max": 3}, {"type": "array", "minItems": 1, "maxItems": 3}),
        ({"type": "object", "min": 1, "max": 2}, {"type": "object", "minProperties": 1,
                                                  "maxProperties": 2}),
        ({"type": "boolean", "default": False}, {"type": "boolean", "default": False}),
        ({"type": "string", "pattern": "^[a-z]+$"}, {"type": "string", "pattern": "^[a-z]+$"}),
        ({"type": "string", "enum": ["a", "b"]}, {"type": "string", "enum": ["a", "b"]}),
        ({"type": "string", "description": "d"}, {"type": "string", "description": "d"}),
        ({"type": "string", "format": "uri"}, {"type": "string", "format": "uri"}),
        ({"type": "array", "items": {"type": "string"}},
         {"type": "array", "items": {"type": "string"}}),
        ({"type": "null"}, {"type": "null"}),
        ({"$ref": "../schemas/common.yaml#/$defs/port"},
         {"$ref": "../schemas/common.yaml#/$defs/port"}),
        # `required` and `secret` are not JSON Schema keywords on the leaf itself
        ({"type": "string", "required": True}, {"type": "string"}),
        ({"type": "string", "required": False}, {"type": "string"}),
    ],
)
def test_compile_leaf(leaf: dict[str, Any], compiled: dict[str, Any]) -> None:
    out = compile_compact({"k": leaf})
    assert out["properties"]["k"] == compiled
    assert out["$schema"] == DRAFT
    assert out["type"] == "object"


def test_secret_leaf_is_write_only() -> None:
    out = compile_compact({"k": {"type": "string", "secret": True, "min": 8}})
    assert out["properties"]["k"]["writeOnly"] is True
    assert out["properties"]["k"]["minLength"] == 8
    plain = compile_compact({"k": {"type": "string", "secret": False}})
    assert not plain["properties"]["k"].get("writeOnly")


def test_groups_and_required() -> None:
    out = compile_compact({
        "database": {
            "host": {"type": "string", "required": True},
            "pool": {"size": {"type": "integer", "required": True}, "idle": {"type": "integer"}},
            "tls": {"ca": {"type": "string"}},
        },
        "flags": {"x": {"type": "boolean"}},
        "token": {"type": "string", "required": True},
    })
    assert sorted(out["required"]) == ["database", "token"]  # a group with a required leaf
    db = out["properties"]["database"]
    assert db["type"] == "object"
    assert sorted(db["required"]) == ["host", "pool"]
    assert db["properties"]["pool"]["required"] == ["size"]
    assert "required" not in db["properties"]["tls"]
    assert "required" not in out["properties"]["flags"]


def test_a_key_named_type_inside_a_group() -> None:
    out = compile_compact({"a": {"type": {"type": "string"}}})
    assert out["properties"]["a"]["properties"]["type"] == {"type": "string"}


@pytest.mark.parametrize(
    ("doc", "compact"),
    [
        ({"database": {"host": {"type": "string"}}}, True),
        ({"a": {"type": "string"}}, True),
        ({"type": "object", "properties": {}}, False),
        ({"$schema": DRAFT, "properties": {}}, False),
        ({"type": {"type": "string"}}, True),  # a key named `type`
    ],
)
def test_is_compact(doc: dict[str, Any], compact: bool) -> None:
    assert is_compact(doc) is compact


@pytest.mark.parametrize("service", ["payments", "user-service"])
def test_example_compact_schemas_compile_to_valid_json_schema(service: str) -> None:
    import yaml

    from tests.conftest import EXAMPLE

    doc = yaml.safe_load((EXAMPLE / service / "schema.yaml").read_text())
    Draft202012Validator.check_schema(compile_compact(doc))


# meta-valid compact leaves whose compiled form is not a valid JSON Schema
INVALID_COMPILED = [
    pytest.param({"type": "string", "min": -1}, id="negative-minLength"),
    pytest.param({"type": "string", "min": 1.5}, id="fractional-minLength"),
    pytest.param({"type": "array", "max": -2}, id="negative-maxItems"),
    pytest.param({"type": "string", "pattern": "("}, id="invalid-regex"),
]


@pytest.mark.parametrize("leaf", INVALID_COMPILED)
def test_meta_valid_compact_schema_compiles_to_valid_json_schema(leaf: dict[str, Any]) -> None:
    doc = {"k": leaf}
    if list(COMPACT_META.iter_errors(doc)):
        return  # refused as a compact schema: fine
    Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=FormatChecker()) \
        .validate(compile_compact(doc))


@pytest.mark.parametrize("leaf", INVALID_COMPILED)
def test_invalid_compiled_leaf_is_a_positioned_schema_problem(leaf: dict[str, Any]) -> None:
    import json

    found = problems_of({SCHEMA: "other: {type: string}\nk: " + json.dumps(leaf) + "\n",
                         ENV: "k: abc\n"})
    assert [(c, f, line) for c, f, line, _, _ in found] == [("schema", SCHEMA, 2)]


@pytest.mark.parametrize(
    ("leaf", "field", "words"),
    [
        ("{type: string, min: -1}", "min", "k.min: -1 is less than the minimum of 0"),
        ("{type: array, max: 1.5}", "max", "k.max: 1.5 is not of type 'integer'"),
        ("{type: string, pattern: '('}", "pattern", "invalid regular expression '('"),
        ("{type: string, pattern: '(a)\\1'}", "pattern", "construct gitconf does not evaluate"),
        ("{type: array, items: {minLength: -1}}", "minLength",
         "k.items.minLength: -1 is less than"),
    ],
)
def test_compact_meta_problem_is_at_the_field_and_says_why(leaf: str, field: str,
                                                           words: str) -> None:
    line = "k: " + leaf
    report = validate_tree(Tree({SCHEMA: "other: {type: string}\n" + line + "\n",
                                 ENV: "k: abc\n"}))
    (problem,) = report.problems
    assert (problem.code, problem.file, problem.line, problem.column) == \
        ("schema", SCHEMA, 2, line.index(field) + 1)
    assert words in problem.message


BOUND = st.one_of(st.integers(-3, 5), st.floats(-3, 5, allow_nan=False), st.booleans(),
                  st.just("5"))
GENERATED_LEAF = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean", "array", "object",
                              "null"])},
    optional={"min": BOUND, "max": BOUND,
              "pattern": st.sampled_from(["^a+$", "", "(", "[z-a]", "a{2000}", "(a)\\1",
                                          "(?=a)"]),
              "items": st.sampled_from([{"type": "string"}, {"type": 5}, {"minLength": -1},
                                        {"pattern": "("}, {"items": {"maxItems": 1.5}}, {}]),
              "enum": st.lists(st.integers(), max_size=2),
              "format": st.sampled_from(["uri", 5])},
)
DRAFT_META = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=FormatChecker())


@given(GENERATED_LEAF)
def test_every_meta_valid_compact_leaf_compiles_to_a_valid_json_schema(
        leaf: dict[str, Any]) -> None:
    doc = {"k": leaf, "g": {"additional": leaf}}
    if not list(COMPACT_META.iter_errors(doc)):
        DRAFT_META.validate(compile_compact(doc))


# ---------------------------------------------------------------------------------------------
# SPEC §2: a compact schema is closed


def test_unknown_key_in_a_compact_schema_names_the_closest() -> None:
    report = validate_tree(Tree({SCHEMA: "timeout: {type: string}\n", ENV: "tiemout: 5s\n"}))
    assert [(p.code, p.file, p.line, p.column) for p in report.problems] == \
        [("unknown-key", ENV, 1, 1)]
    assert "timeout" in report.problems[0].message


# ---------------------------------------------------------------------------------------------
# secrets


def test_secret_keys_cover_their_prefixes() -> None:
    schema = compile_schema({
        "api_token": {"type": "string", "secret": True},
        "database": {"password": {"type": "string", "secret": True},
                     "host": {"type": "string"}},
        "creds": {"type": "object", "secret": True},
    })
    assert schema.secret_keys == {"api_token", "database.password", "creds"}
    for key, secret in [
        ("api_token", True), ("api", False), ("api_token_2", False),
        ("database.password", True), ("database", False), ("database.host", False),
        ("database.passwordx", False), ("creds", True), ("creds.user", True),
        ("creds.a.b", True), ("credsx", False), ("credsx.user", False),
    ]:
        assert schema.is_secret(key) is secret, key


def test_secrets_found_through_ref_and_combinators() -> None:
    shared = {"schemas/common.yaml": {"$defs": {"secret": {"type": "string",
                                                           "writeOnly": True}}}}
    doc = {
        "$schema": DRAFT, "type": "object",
        "properties": {
            "a": {"$ref": "../schemas/common.yaml#/$defs/secret"},
            "b": {"allOf": [{"writeOnly": True}]},
            "c": {"type": "object", "properties": {"d": {"anyOf": [{"writeOnly": True}]}}},
            "e": {"type": "string"},
        },
    }
    schemas = SchemaSet()
    for path, sdoc in shared.items():
        schemas.add_shared(path, sdoc)
    schema, problems = schemas.compile("svc", "svc/schema.json", doc, {}, COMPACT_META)
    assert problems == [] and schema is not None
    assert schema.secret_keys == {"a", "b", "c.d"}


SECRET_SCHEMA = {
    "database": {"password": {"type": "string", "secret": True, "min": 12},
                 "host": {"type": "string", "required": True}},
    "api_token": {"type": "string", "secret": True, "pattern": "^tok_"},
    "creds": {"type": "object", "secret": True},
    "log_level": {"type": "string", "enum": ["info", "debug"]},
}


def test_secret_values_are_never_quoted() -> None:
    schema = compile_schema(SECRET_SCHEMA)
    found = validate(schema, "database:\n  host: h\n  password: hunter2\n"
                             "api_token: my-token-value\ncreds: not-an-object\nlog_level: loud\n")
    by_key = {p.key: p.message for p in found}
    assert set(by_key) == {"database.password", "api_token", "creds", "log_level"}
    for key, secret in [("database.password", "hunter2"), ("api_token", "my-token-value"),
                        ("creds", "not-an-object")]:
        assert secret not in by_key[key]
        assert "secret, not shown" in by_key[key]
    assert "loud" in by_key["log_level"]  # other values are quoted as usual


def test_an_error_on_a_group_holding_a_secret_is_masked() -> None:
    doc = {"$schema": DRAFT, "type": "object",
           "properties": {"db": {"type": "object", "maxProperties": 1,
                                 "properties": {"password": {"type": "string",
                                                             "writeOnly": True}}}}}
    schema, _ = SchemaSet().compile("svc", "svc/schema.json", doc, {}, COMPACT_META)
    assert schema is not None
    (problem,) = validate(schema, "db:\n  password: hunter2\n  host: h\n")
    assert problem.key == "db"
    assert "hunter2" not in problem.message and "secret, not shown" in problem.message


def test_an_error_inside_a_secret_value_is_masked() -> None:
    schema = compile_schema({"db": {"password": {"type": "string", "secret": True}}})
    (problem,) = validate(schema, "db:\n  password: [hunter2]\n")
    assert "hunter2" not in problem.message


SECRET_MARK = "S3CRET"
SECRET_VALUES = st.recursive(
    st.one_of(st.text(max_size=5).map(lambda s: SECRET_MARK + s), st.integers(), st.booleans(),
              st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=2),
                            st.dictionaries(st.sampled_from(["k", "l"]), inner, max_size=2)),
    max_leaves=4,
)


@given(password=SECRET_VALUES, token=SECRET_VALUES, creds=SECRET_VALUES)
def test_no_message_quotes_a_secret(password: Any, token: Any, creds: Any) -> None:
    schema = compile_schema(SECRET_SCHEMA)
    values = {"database.password": password, "database.host": "h", "api_token": token,
              "creds": creds}
    positions = {k: Position(ENV, i + 1, 1) for i, k in enumerate(values)}
    for problem in validate_values(schema, values, positions, ENV):
        assert SECRET_MARK not in problem.message, problem


@pytest.mark.parametrize(
    ("schema_json", "values"),
    [
        ('{"type":"object","properties":{"tokens":{"type":"array","items":'
         '{"type":"string","writeOnly":true,"minLength":20}}}}', "tokens: [S3CRET-1]\n"),
        ('{"type":"object","properties":{"creds":{"type":"object","additionalProperties":'
         '{"type":"string","writeOnly":true,"minLength":20}}}}', "creds: {user: S3CRET-1}\n"),
    ],
)
def test_write_only_items_are_secret(schema_json: str, values: str) -> None:
    report = validate_tree(Tree({"svc/schema.json": schema_json, ENV: values}))
    assert report.problems
    assert all("S3CRET" not in p.message for p in report.problems)


# ---------------------------------------------------------------------------------------------
# unflatten


@pytest.mark.parametrize(
    ("flat", "nested"),
    [
        ({}, {}),
        ({"a": 1}, {"a": 1}),
        ({"a.b": 1, "a.c": 2, "d": 3}, {"a": {"b": 1, "c": 2}, "d": 3}),
        ({"a.b.c": [1, {"x.y": 2}]}, {"a": {"b": {"c": [1, {"x.y": 2}]}}}),  # lists untouched
        ({"a": {}}, {"a": {}}),
        ({"a.b": {}, "a.c": None}, {"a": {"b": {}, "c": None}}),
    ],
)
def test_unflatten(flat: dict[str, Any], nested: dict[str, Any]) -> None:
    assert unflatten(flat) == nested


def test_unflatten_is_independent_of_key_order() -> None:
    flat = {"a.b": 1, "c": 2, "a.d.e": 3}
    assert unflatten(dict(reversed(list(flat.items())))) == unflatten(flat)


def test_unflatten_does_not_share_leaves_with_its_input() -> None:
    flat: dict[str, Any] = {"a.b": {"x": 1}}
    unflatten(flat)["a"]["c"] = 2
    assert flat == {"a.b": {"x": 1}}


# ---------------------------------------------------------------------------------------------
# validation problems land on the key


def test_type_and_bound_errors_at_the_key() -> None:
    schema = compile_schema({"database": {"pool_size": {"type": "integer", "min": 1},
                                          "host": {"type": "string"}},
                             "log_level": {"type": "string", "enum": ["info"]}})
    found = validate(schema, "database:\n  host: 5\n  pool_size: 0\nlog_level: x\n")
    assert [(p.code, p.file, p.line, p.column, p.key) for p in found] == [
        ("schema", ENV, 2, 3, "database.host"),
        ("schema", ENV, 3, 3, "database.pool_size"),
        ("schema", ENV, 4, 1, "log_level"),
    ]
    assert "is not of type 'string'" in found[0].message
    assert found[0].message.startswith("database.host: ")


def test_missing_required_key_points_into_its_group() -> None:
    schema = compile_schema({"x": {"type": "integer"},
                             "db": {"host": {"type": "string", "required": True},
                                    "port": {"type": "integer"}}})
    (problem,) = validate(schema, "x: 1\ndb:\n  port: 1\n")
    assert problem.key == "db.host"
    assert (problem.file, problem.column) == (ENV, 3) and problem.line in (2, 3)
    assert "required" in problem.message


def test_missing_required_group_points_at_the_file() -> None:
    schema = compile_schema({"x": {"type": "integer"},
                             "db": {"host": {"type": "string", "required": True}}})
    (problem,) = validate(schema, "x: 1\n")
    assert (problem.file, problem.line, problem.column, problem.key) == (ENV, 1, 1, "db")


def test_error_from_a_base_value_points_at_the_base_file() -> None:
    schema = compile_schema({"a": {"type": "integer"}, "b": {"type": "integer"},
                             "x": {"type": "integer"}})
    base = load_values("svc/_base.yaml", b"x: 0\na: nope\n")
    env = load_values(ENV, b"b: 1\n")
    merged, positions = merge_base(base, env)
    (problem,) = validate_values(schema, merged, positions, ENV)
    assert (problem.file, problem.line, problem.column, problem.key) == \
        ("svc/_base.yaml", 2, 1, "a")


def test_valid_values_give_no_problems() -> None:
    schema = compile_schema(SECRET_SCHEMA)
    assert validate(schema, "database:\n  host: h\n  password: a-long-password\n"
                            "api_token: tok_1\ncreds: {u: 1}\nlog_level: info\n") == []


def test_ref_into_shared_schemas() -> None:
    files = {
        "schemas/common.yaml": "$defs:\n  port: {type: integer, maximum: 65535}\n",
        SCHEMA: 'server:\n  port: {$ref: "../schemas/common.yaml#/$defs/port"}\n',
        ENV: "server:\n  port: 70000\n",
    }
    assert problems_of(files) == [("schema", ENV, 2, 3, "server.port")]
    files[ENV] = "server:\n  port: 8080\n"
    assert problems_of(files) == []


def test_unresolved_ref_is_positioned_at_the_ref() -> None:
    files = {
        "schemas/common.yaml": "$defs:\n  port: {type: integer}\n",
        SCHEMA: 'server:\n  port: {$ref: "../schemas/common.yaml#/$defs/prot"}\n',
        ENV: "server:\n  port: 1\n",
    }
    assert problems_of(files) == [("schema-ref", SCHEMA, 2, 10, None)]


@pytest.mark.parametrize(
    ("schema_text", "line"),
    [
        ("a:\n  b: {type: strnig}\n", 2),
        ("a:\n  b: {type: string, minimum: 3}\n", 2),
        ("a: {type: string}\nb: {type: integer, min: x}\n", 2),
        ("a: {type: string, required: yes-please}\n", 1),
    ],
)
def test_invalid_compact_schema_is_positioned(schema_text: str, line: int) -> None:
    found = problems_of({SCHEMA: schema_text, ENV: "a: 1\n"})
    assert [(c, f, ln) for c, f, ln, _, _ in found] == [("schema", SCHEMA, line)]


@pytest.mark.parametrize("pattern", ["(", "a{99999999999}", "[z-a]"])
def test_invalid_regex_in_compact_schema_is_positioned(pattern: str) -> None:
    schema = f"x: {{type: string}}\na: {{type: string, pattern: '{pattern}'}}\n"
    found = problems_of({SCHEMA: schema, ENV: "a: x\n"})
    assert [(c, f, ln) for c, f, ln, _, _ in found] == [("schema", SCHEMA, 2)]


def test_invalid_regex_in_json_schema_is_positioned() -> None:
    found = problems_of({"svc/schema.json": '{"type": "object",\n "properties": {"a": '
                                            '{"type": "string", "pattern": "("}}}',
                         ENV: "a: x\n"})
    assert [(c, f, ln) for c, f, ln, _, _ in found] == [("schema", "svc/schema.json", 2)]


KEYWORDS = ["type", "properties", "items", "minimum", "maximum", "minLength", "enum", "const",
            "required", "additionalProperties", "$defs", "allOf", "anyOf", "not", "format",
            "exclusiveMinimum", "multipleOf", "uniqueItems", "$schema", "prefixItems",
            "dependentRequired", "unevaluatedProperties", "contains", "minContains", "title"]
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2),
                      st.sampled_from(["string", "object", "integer", "x", "",
                                       "http://json-schema.org/draft-04/schema#", DRAFT]))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYWORDS + ["a", "b"]),
                                                 inner, max_size=3)), max_leaves=8)
SCHEMAS = st.dictionaries(st.sampled_from(KEYWORDS), JSON_VALUE, max_size=4)


@given(SCHEMAS)
def test_jsonschema_rs_never_passes_a_schema_python_jsonschema_refuses(doc: dict) -> None:
    """The meta-check takes jsonschema-rs's "valid" as final: it must never call valid what
    python-jsonschema, whose words explain a refusal, would refuse."""
    from jsonschema.validators import validator_for

    from gitconf.schema import _rs_meta_valid

    if _rs_meta_valid(doc):
        validator_for(doc, default=Draft202012Validator).check_schema(doc, format_checker=None)


def _documents(words: list[str], scalars: list[Any]) -> Any:
    """Nested mappings and lists over a meta-schema's own words and some telling scalars."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 101), st.sampled_from(scalars))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(words), inner, max_size=4)), max_leaves=12)


COMPACT_DOCS = _documents(
    ["type", "min", "max", "pattern", "enum", "default", "secret", "required", "items",
     "additional", "$ref", "format", "description", "a", "b/c", ""],
    ["string", "integer", "array", "object", "x", "^a$", "a\n", "../schemas/x.yaml#/$defs/p",
     "regex"])
SETTINGS_DOCS = _documents(
    ["version", "environments", "ignore", "drift", "unknown_keys", "github", "pull_requests",
     "base", "labels", "mass_delete", "max_percent", "min_keys", "x"],
    ["pr", "revert", "warn", "prod", "prod\n", "o/r", "o/r\n", "", "Prod"])


@pytest.mark.parametrize(("name", "docs"), [("compact-schema.json", COMPACT_DOCS),
                                            ("gitconf-config.json", SETTINGS_DOCS)])
def test_meta_check_agrees_with_python_jsonschema(name: str, docs: Any) -> None:
    """gitconf's own meta-schemas are checked by jsonschema-rs first and its "valid" is final
    (python-jsonschema is then never imported): it must never pass a document python-jsonschema
    refuses, and a refused document gets python-jsonschema's errors, word for word."""
    from gitconf.schema import MetaCheck, packaged_schema

    check = MetaCheck(name)
    python = Draft202012Validator(packaged_schema(name))

    @given(docs)
    def agree(doc: Any) -> None:
        errors = [e.message for e in python.iter_errors(doc)]
        if check.is_valid(doc):
            assert errors == []
        assert [e.message for e in check.iter_errors(doc)] == errors

    agree()


def test_a_valid_one_key_load_never_imports_python_jsonschema(tmp_path: Any) -> None:
    """python-jsonschema and `referencing` cost ~0.1 s to import: a commit whose schema and
    values are valid (the common case) is loaded without them, and an invalid value still
    gets python-jsonschema's words."""
    import subprocess
    import sys

    code = """
import sys
from gitconf.repo_format import load_desired, read_layout
class Tree:
    files = {"svc/schema.json": b'{"$schema": "%s", "type": "object",'
                                b' "properties": {"port": {"type": "integer", "maximum": 9}}}',
             "svc/prod.yaml": b"port: 8\\n", "svc/dev.yaml": b"port: %s\\n",
             "c/schema.yaml": b"port: {type: integer, secret: true}\\n",
             "c/dev.yaml": b"port: 1\\n"}
    def paths(self): return sorted(self.files)
    def read(self, paths): return ((p, self.files[p]) for p in paths)
    def refused(self): return []
tree = Tree()
state = load_desired(tree, layout=read_layout(tree))
print(sorted(p.code for p in state.problems), "jsonschema" in sys.modules,
      "referencing" in sys.modules)
"""
    for dev, expect in (("7", "[] False False"), ("10", "['schema'] True True")):
        out = subprocess.run([sys.executable, "-c", code % (DRAFT, dev)], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expect
