"""Service schemas: the compact form of SPEC §2 compiled to JSON Schema (Draft 2020-12),
`$ref`s into the repository's `schemas/`, secret marking, and validation errors mapped back to
the file, line and column of the offending key.

One validator is built per schema and reused for every environment (building one costs far
more than using it). jsonschema-rs answers "valid?" (schemas, values, gitconf's own
meta-schemas); python-jsonschema and `referencing`, ~0.1 s to import, are imported only to
explain a "no", to follow `$ref`s, or where jsonschema-rs cannot take a schema: a one-key
`gitconf apply` of a valid commit never loads them.

Every repository resource lives under the base URI `file:///repo/`; no retriever is registered,
so a `$ref` can only reach files of the repository itself. Each `$ref` is followed when the
schema is compiled, the way the validator will follow it (root `$id`, nested ids, dialect): one
that does not resolve, reaches no schema or loops without descending into the value is a
positioned `schema-ref` problem, never a traceback while validating. A compact schema's `$ref`
names another file: the compact text is compiled before use, so no pointer into it means what
its author sees.

A compact schema is closed (SPEC §2): each group compiles with `additionalProperties: false`
unless it says `additional: true` (any key) or `additional: {type: ...}` (any key, of that
type), and an undeclared key is an `unknown-key` problem naming the closest declared one.

Patterns are evaluated with RE2 by both validators, never by a backtracking engine: a schema is
code from a pull request, and `^(a+)+$` must not hang validate, apply or the daemon. Patterns
RE2 cannot evaluate (backreferences, lookaround, malformed) are positioned schema problems.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urldefrag, urljoin, urlsplit

from .fastclass import dataclass
from .keypath import parents
from .masking import (
    Masker,
    PatternError,
    SecretKeys,
    SecretPattern,
    compile_pattern,
    pattern_search,
)
from .model import JSON, Position, Problem

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator
    from referencing import Registry, Specification

REPO_BASE = "file:///repo/"
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
MAX_MESSAGE = 300
ADDITIONAL = "additional"  # the compact group directive: `additional: true | {type: ...}`
UNKNOWN_KEY = "unknown-key"


def repo_uri(path: str) -> str:
    return REPO_BASE + path


def packaged_schema(name: str) -> dict[str, Any]:
    """The JSON Schemas gitconf uses on its own files (copies of the repo's `schemas/`)."""
    from importlib import resources  # 2 ms, for the runs that check gitconf's own files

    text = resources.files("gitconf").joinpath("data", name).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def is_compact(doc: Mapping[str, Any]) -> bool:
    """SPEC §2: a JSON Schema has `$schema`, or a string as its top-level `type`."""
    return not ("$schema" in doc or isinstance(doc.get("type"), str))


def _is_compact_leaf(node: Mapping[str, Any]) -> bool:
    return isinstance(node.get("type"), str) or "$ref" in node


def _is_directive(name: Any, child: Any) -> bool:
    """`additional: true|false` or `additional: {type: ...}` says what a group does with keys
    it does not declare. A *group* named `additional` (no `type`) is still an ordinary group;
    a *leaf* named `additional` cannot be declared in the compact form (docs/schemas.md)."""
    if name != ADDITIONAL:
        return False
    return isinstance(child, bool) or (isinstance(child, Mapping) and _is_compact_leaf(child))


def _compile_leaf(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A compact leaf as JSON Schema; `min`/`max` become the bound that fits the type."""
    out: dict[str, Any] = {}
    if "$ref" in spec:
        out["$ref"] = spec["$ref"]
    t = spec.get("type")
    if t is not None:
        out["type"] = t
    lo, hi = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems"),
              "object": ("minProperties", "maxProperties")}.get(t or "", ("minimum", "maximum"))
    if "min" in spec:
        out[lo] = spec["min"]
    if "max" in spec:
        out[hi] = spec["max"]
    for k in ("pattern", "enum", "default", "description", "format", "items", "examples",
              "deprecated"):
        if k in spec:
            out[k] = spec[k]
    if spec.get("secret"):
        out["writeOnly"] = True
    return out


def _compile_group(node: Mapping[str, Any]) -> dict[str, Any]:
    """A compact group: closed (`additionalProperties: false`) unless it says otherwise."""
    props: dict[str, Any] = {}
    required: list[str] = []
    extra: bool | dict[str, Any] = False
    for name, child in node.items():
        if _is_directive(name, child):
            extra = child if isinstance(child, bool) else _compile_leaf(child)
            continue
        if not isinstance(child, Mapping):
            continue  # the meta-schema has reported it already
        if _is_compact_leaf(child):
            props[name] = _compile_leaf(child)
            if child.get("required"):
                required.append(name)
        else:
            props[name] = _compile_group(child)
            if _group_required(child):
                required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if extra is not True:
        out["additionalProperties"] = extra
    return out


def compile_compact(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Compact form -> Draft 2020-12 (SPEC §2)."""
    compiled = _compile_group(doc)
    compiled["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return compiled


def _group_required(node: Mapping[str, Any]) -> bool:
    """A group is required when anything inside it is."""
    for name, child in node.items():
        if isinstance(child, Mapping) and not _is_directive(name, child):
            if _is_compact_leaf(child):
                if child.get("required"):
                    return True
            elif _group_required(child):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# patterns: where a schema writes them, and whether RE2 can evaluate them

DocPath = tuple[Any, ...]
_NAMED_SUBSCHEMAS = ("properties", "$defs", "definitions", "dependentSchemas")
_DATA_KEYWORDS = ("enum", "const", "default", "examples")


def _json_patterns(node: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, str]]:
    """Every `pattern` and `patternProperties` key of a JSON Schema, with its path. Names under
    `properties`/`$defs` and data (`enum`, `default`, ...) are not mistaken for keywords."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _json_patterns(item, path + (i,))
        return
    if not isinstance(node, Mapping):
        return
    for k, v in node.items():
        here = path + (k,)
        if k == "pattern" and isinstance(v, str):
            yield here, v
        elif k == "patternProperties" and isinstance(v, Mapping):
            for regex, sub in v.items():
                yield here + (regex,), str(regex)
                yield from _json_patterns(sub, here + (regex,))
        elif k in _NAMED_SUBSCHEMAS and isinstance(v, Mapping):
            for name, sub in v.items():
                yield from _json_patterns(sub, here + (name,))
        elif k not in _DATA_KEYWORDS:
            yield from _json_patterns(v, here)


def compact_leaves(node: Mapping[str, Any], path: DocPath = (),
                   ) -> Iterator[tuple[DocPath, Mapping[str, Any]]]:
    """Every leaf of a compact schema with its path: what the compact walks look inside."""
    for name, child in node.items():
        if not isinstance(child, Mapping):
            continue
        here = path + (name,)
        if _is_compact_leaf(child):
            yield here, child
        else:
            yield from compact_leaves(child, here)


def _compact_patterns(node: Mapping[str, Any]) -> Iterator[tuple[DocPath, str]]:
    """Every pattern of a compact schema: leaves' `pattern`, and inside their `items`."""
    for here, leaf in compact_leaves(node):
        if isinstance(leaf.get("pattern"), str):
            yield here + ("pattern",), leaf["pattern"]
        if isinstance(leaf.get("items"), Mapping):
            yield from _json_patterns(leaf["items"], here + ("items",))


def pattern_message(exc: PatternError) -> str:
    """Why a schema pattern is refused, in the words docs/schemas.md uses."""
    if exc.construct:
        return ("pattern uses a construct gitconf does not evaluate (backreference/lookaround): "
                f"{exc.pattern!r} ({exc.reason}); see docs/schemas.md")
    return f"invalid regular expression {exc.pattern!r}: {exc.reason}"


def _regex_format(instance: object) -> bool:
    """`format: regex` as gitconf evaluates patterns: RE2 must take it, in linear time (a
    PatternError says why not). Python's `re`, the default check, would let `(a)\\1` pass."""
    if isinstance(instance, str):
        compile_pattern(instance)
    return True


@cache
def compact_meta_validator() -> Validator:
    """The compact meta-schema as gitconf applies it: with `format: regex` asserted (by RE2),
    so a compact schema it accepts compiles to a valid JSON Schema whose patterns gitconf can
    evaluate. Tests and tools that ask "is this compact schema valid?" use this one."""
    from jsonschema import Draft202012Validator, FormatChecker

    formats = FormatChecker(formats=())
    formats.checks("regex", raises=PatternError)(_regex_format)
    return Draft202012Validator(packaged_schema("compact-schema.json"), format_checker=formats)


class ErrorSource(Protocol):
    """What checks a document against a meta-schema: a python-jsonschema validator, or a
    `MetaCheck`."""

    def iter_errors(self, instance: Any) -> Iterator[Any]: ...


class MetaCheck:
    """One of gitconf's packaged meta-schemas (compact schemas, `.gitconf.yaml`), formats not
    asserted. jsonschema-rs answers "valid?" in microseconds; python-jsonschema, imported only
    for a document jsonschema-rs does not call valid, gives the errors and their words, so
    every verdict that matters is its own (tests/unit/test_schema_compile.py holds them to
    the same answers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._fast: Any = None
        self._python: Any = None

    def is_valid(self, doc: Any) -> bool:
        """jsonschema-rs's "valid" (False also when it is missing or cannot take `doc`)."""
        try:
            if self._fast is None:
                import jsonschema_rs

                self._fast = jsonschema_rs.validator_for(
                    packaged_schema(self.name), validate_formats=False,
                    pattern_options=jsonschema_rs.RegexOptions())
            return bool(self._fast.is_valid(doc))
        except Exception:
            return False

    def iter_errors(self, doc: Any) -> Iterator[Any]:
        if self.is_valid(doc):
            return iter(())
        if self._python is None:
            from jsonschema import Draft202012Validator

            self._python = Draft202012Validator(packaged_schema(self.name))
        errors: Iterator[Any] = self._python.iter_errors(doc)
        return errors


@cache
def meta_check(name: str) -> MetaCheck:
    return MetaCheck(name)


def _pattern_problems(file: str, positions: Mapping[DocPath, Position],
                      found: Iterable[tuple[DocPath, str]]) -> list[Problem]:
    problems = []
    for where, pattern in found:
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            problems.append(_problem_at(file, positions, where, "schema", pattern_message(exc)))
    return problems


# ---------------------------------------------------------------------------------------------
# references: where a schema writes them, and whether the validator can follow them


@dataclass(frozen=True)
class _RefSite:
    """A `$ref` / `$dynamicRef` (or an `$id`, which moves the base of those below it) where a
    schema writes it. `scopes` are the subschemas with an id between the root and the site,
    outermost first: the validator resolves the reference against the base they set."""

    path: DocPath
    keyword: str
    value: str
    holder: Mapping[str, Any]  # the subschema that writes it
    scopes: tuple[Mapping[str, Any], ...] = ()


_REF_KEYWORDS = ("$ref", "$dynamicRef")
_ID_KEYWORDS = ("$id", "id")  # `id`: drafts 3 and 4


def _json_ref_sites(node: Any, path: DocPath = (),
                    scopes: tuple[Mapping[str, Any], ...] = ()) -> Iterator[_RefSite]:
    """The references of a JSON Schema, where a subschema can stand: names under `properties`
    / `$defs` and data (`enum`, `default`, ...) are not mistaken for keywords, so a default
    value holding a `"$ref"` key is left alone, as the validator leaves it."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _json_ref_sites(item, path + (i,), scopes)
        return
    if not isinstance(node, Mapping):
        return
    if path and any(k in node for k in _ID_KEYWORDS):
        scopes = (*scopes, node)
    for k, v in node.items():
        here = path + (k,)
        if k in (*_REF_KEYWORDS, *_ID_KEYWORDS) and isinstance(v, str):
            yield _RefSite(here, k, v, node, scopes)
        elif k in (*_NAMED_SUBSCHEMAS, "patternProperties") and isinstance(v, Mapping):
            for name, sub in v.items():
                yield from _json_ref_sites(sub, here + (name,), scopes)
        elif k not in _DATA_KEYWORDS:
            yield from _json_ref_sites(v, here, scopes)


def _compact_ref_sites(node: Mapping[str, Any]) -> Iterator[_RefSite]:
    """The references of a compact schema: leaves' `$ref`, and those inside their `items`."""
    for here, leaf in compact_leaves(node):
        if isinstance(leaf.get("$ref"), str):
            yield _RefSite(here + ("$ref",), "$ref", leaf["$ref"], leaf)
        if isinstance(leaf.get("items"), Mapping):
            yield from _json_ref_sites(leaf["items"], here + ("items",))


def _ref_sites(doc: Mapping[str, Any]) -> list[_RefSite]:
    return list(_compact_ref_sites(doc) if is_compact(doc) else _json_ref_sites(doc))


def _bad_refs(sites: Iterable[_RefSite], path: str,
              positions: Mapping[DocPath, Position]) -> list[Problem]:
    """References and ids that are not URI references at all (`http://[::1`): a positioned
    problem, where resolving them (or anything below an id) would raise."""
    problems = []
    for site in sites:
        try:
            urlsplit(site.value)
        except ValueError as exc:
            problems.append(_problem_at(path, positions, site.path, "schema-ref",
                                        f"{site.keyword} {site.value!r} is not a URI reference "
                                        f"({exc})"))
    return problems


def _own_refs(sites: Iterable[_RefSite], base: str, path: str,
              positions: Mapping[DocPath, Position]) -> list[Problem]:
    """A compact schema is compiled before it is used, so a `$ref` into the compact schema
    itself (`#/a`, `schema.yaml#/a`) would be looked up in a document its author never wrote:
    refused at the `$ref`, with where shared definitions go instead."""
    problems = []
    for site in sites:
        if site.keyword in _REF_KEYWORDS and not site.scopes and _target(base, site.value) == base:
            problems.append(_problem_at(
                path, positions, site.path, "schema-ref",
                f"$ref {site.value!r} points into this compact schema, which is compiled to "
                "JSON Schema before use; put shared definitions in a file under schemas/ and "
                "$ref that (../schemas/common.yaml#/$defs/port)"))
    return problems


def _target(base: str, ref: str) -> str:
    """The document a reference names, as `referencing` computes it."""
    return base if ref.startswith("#") else urldefrag(urljoin(base, ref)).url


def _id_of(spec: Specification[Any], node: Any) -> str | None:
    """The id a subschema gives itself under `spec` (None for none, or for an `id` that is not
    a string, which is no subschema's id)."""
    try:
        found = spec.create_resource(node).id()
    except (AttributeError, TypeError):
        return None
    return found if isinstance(found, str) else None


def _lookup(resolver: Any, ref: str) -> Any:
    """`resolver.lookup(ref)`, or None. Beyond `Unresolvable`, `referencing` raises ValueError
    or TypeError for a pointer through a list or a scalar (`#/required/x`); the validator would
    raise the same while validating, so all of them mean "cannot be followed"."""
    from referencing.exceptions import Unresolvable

    try:
        return resolver.lookup(ref)
    except (Unresolvable, LookupError, ValueError, TypeError, AttributeError):
        return None


@dataclass
class _RefWalk:
    """Follows references the way the validator will: from the same root resolver, moved by
    the same ids, with the same dialect (`spec`)."""

    root: Any  # the root resolver
    base: str  # its base URI
    spec: Specification[Any]
    dialect: Any  # the validator class that will evaluate what a reference reaches
    done: set[int] = field(default_factory=set)  # subschemas known not to loop

    def problem(self, site: _RefSite) -> str | None:
        """Why the validator could not follow `site`, or None."""
        resolver, base = self.root, self.base
        for scope in site.scopes:
            sid = _id_of(self.spec, scope)
            if sid is not None:
                resolver, base = resolver.in_subresource(self.spec.create_resource(scope)), \
                    urljoin(base, sid)
        kw, ref = site.keyword, site.value
        resolved = _lookup(resolver, ref)
        if resolved is None:
            target = urljoin(base, ref)
            where = target[len(REPO_BASE):] if target.startswith(REPO_BASE) else target
            return (f"{kw} {ref!r} does not resolve ({where}); refs reach files under schemas/ "
                    "of this repository")
        contents = resolved.contents
        if not isinstance(contents, (Mapping, bool)):
            return (f"{kw} {ref!r} points at {type(contents).__name__} "
                    f"{_short(repr(contents))}, which is not a schema")
        verdict = _meta_verdict(contents, self.dialect) if isinstance(contents, Mapping) \
            else None
        if verdict is not None:  # a data value (`default: {type: 5}`) is no schema either
            return f"{kw} {ref!r} points at an invalid JSON Schema: {_short(verdict[1])}"
        if self.loops(contents, resolved.resolver, frozenset({id(site.holder)})):
            return (f"{kw} {ref!r} leads back to itself without descending into the value (through "
                    "$ref, allOf, anyOf, oneOf, not, if/then/else): it would never end")
        return None

    def loops(self, node: Any, resolver: Any, stack: frozenset[int]) -> bool:
        """Whether the subschemas applied to the same value as `node` (its references and
        in-place applicators) reach one already on `stack`: validation would recurse forever.
        Past 100 in-place levels is counted as a loop (Python's stack would not last)."""
        if not isinstance(node, Mapping) or id(node) in self.done:
            return False
        if id(node) in stack or len(stack) > 100:
            return True
        stack = stack | {id(node)}
        for kw in _REF_KEYWORDS:
            if isinstance(node.get(kw), str):
                resolved = _lookup(resolver, node[kw])
                if resolved is not None and self.loops(resolved.contents, resolved.resolver,
                                                       stack):
                    return True
        for sub in _in_place_subschemas(node):
            sid = _id_of(self.spec, sub)
            inner = resolver if sid is None else \
                resolver.in_subresource(self.spec.create_resource(sub))
            if self.loops(sub, inner, stack):
                return True
        self.done.add(id(node))
        return False


def _in_place_subschemas(node: Mapping[str, Any]) -> list[Any]:
    """The subschemas a validator applies to the value `node` is applied to."""
    subs: list[Any] = [node.get(kw) for kw in ("not", "if", "then", "else")]
    for kw in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(kw), list):
            subs += node[kw]
    if isinstance(node.get("dependentSchemas"), Mapping):
        subs += list(node["dependentSchemas"].values())
    return subs


def _follow_refs(sites: Iterable[_RefSite], walk: _RefWalk, path: str,
                 positions: Mapping[DocPath, Position]) -> list[Problem]:
    """Every reference followed as the validator will follow it: one that does not resolve,
    lands on something that is no schema (a number, a list, a default value), or loops back to
    itself is a positioned problem here instead of a traceback (or endless recursion) while
    validating."""
    problems = []
    for site in sites:
        if site.keyword in _REF_KEYWORDS:
            message = walk.problem(site)
            if message is not None:
                problems.append(_problem_at(path, positions, site.path, "schema-ref", message))
    return problems


# ---------------------------------------------------------------------------------------------
# python-jsonschema with patterns evaluated by RE2 (its own keywords call Python's `re`)


def _search(pattern: str, text: str) -> bool | PatternError:
    try:
        return pattern_search(pattern, text)
    except PatternError as exc:
        return exc


def _error(message: str) -> ValidationError:
    """A python-jsonschema error (these keywords run only inside python-jsonschema, which is
    imported by then)."""
    from jsonschema import ValidationError

    return ValidationError(message)


def _unevaluable(exc: PatternError) -> ValidationError:
    return _error(f"pattern {exc.pattern!r} cannot be evaluated: {exc.reason}")


def _kw_pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "string"):
        return
    hit = _search(patrn, instance)
    if isinstance(hit, PatternError):
        yield _unevaluable(hit)
    elif not hit:
        yield _error(f"{instance!r} does not match {patrn!r}")


def _kw_pattern_properties(validator: Any, pp: Mapping[str, Any], instance: Any,
                           schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pp.items():
        for k, v in instance.items():
            hit = _search(pattern, k)
            if isinstance(hit, PatternError):
                yield _unevaluable(hit)
                break
            if hit:
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _extras(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Keys neither `properties` nor `patternProperties` cover (an unevaluable pattern covers
    nothing: the pattern itself is reported)."""
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in properties
            and not any(_search(p, k) is True for p in patterns)]


def _kw_additional_properties(validator: Any, ap: Any, instance: Any,
                              schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        names = ", ".join(repr(e) for e in sorted(extras))
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            regexes = ", ".join(repr(p) for p in sorted(schema["patternProperties"]))
            yield _error(f"{names} {verb} not match any of the regexes: {regexes}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield _error(f"Additional properties are not allowed ({names} {verb} "
                                  "unexpected)")


def _is_valid(errors: Iterator[Any]) -> bool:
    return next(errors, None) is None


def _evaluated_by_refs(validator: Any, instance: Any, schema: Any) -> list[str]:
    keys: list[str] = []
    for kw in ("$ref", "$dynamicRef"):
        ref = schema.get(kw)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            keys += _evaluated_keys(validator.evolve(schema=resolved.contents,
                                                     _resolver=resolved.resolver),
                                    instance, resolved.contents)
    return keys


def _evaluated_keys(validator: Any, instance: Any, schema: Any) -> list[str]:
    """python-jsonschema's `find_evaluated_property_keys_by_schema` (2020-12), with
    `patternProperties` matched by RE2."""
    if validator.is_type(schema, "boolean"):
        return []
    keys = _evaluated_by_refs(validator, instance, schema)
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys += properties.keys() & instance.keys()
    for kw in ("additionalProperties", "unevaluatedProperties"):
        if (sub := schema.get(kw)) is not None:
            keys += [k for k, v in instance.items() if _is_valid(validator.descend(v, sub))]
    for pattern in schema.get("patternProperties", {}):
        keys += [k for k in instance if _search(pattern, k) is True]
    for name, sub in schema.get("dependentSchemas", {}).items():
        if name in instance:
            keys += _evaluated_keys(validator, instance, sub)
    for kw in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(kw, []):
            if _is_valid(validator.descend(instance, sub)):
                keys += _evaluated_keys(validator, instance, sub)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys += _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys += _evaluated_keys(validator, instance, schema["else"])
    return keys


def _kw_unevaluated_properties(validator: Any, up: Any, instance: Any,
                               schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = set(_evaluated_keys(validator, instance, schema))
    bad = [k for k in instance if k not in evaluated
           and not _is_valid(validator.descend(instance[k], up, path=k, schema_path=k))]
    if bad:
        names = ", ".join(repr(k) for k in sorted(bad, key=str))
        verb = "was" if len(bad) == 1 else "were"
        if up is False:
            yield _error(f"Unevaluated properties are not allowed ({names} {verb} "
                                  "unexpected)")
        else:
            yield _error("Unevaluated properties are not valid under the given schema "
                                  f"({names} {verb} unevaluated and invalid)")


_LINEAR_CLASSES: dict[Any, Any] = {}


def _linear_validator_class(cls: Any) -> Any:
    """`cls` with every keyword that evaluates a pattern replaced by an RE2 version. The
    2019-09 `unevaluatedProperties` (with `$recursiveRef`) keeps its own implementation."""
    from jsonschema import Draft202012Validator
    from jsonschema import validators as jsonschema_validators

    if cls not in _LINEAR_CLASSES:
        keywords = {"pattern": _kw_pattern, "patternProperties": _kw_pattern_properties,
                    "additionalProperties": _kw_additional_properties}
        if cls is Draft202012Validator:
            keywords["unevaluatedProperties"] = _kw_unevaluated_properties
        keywords = {k: fn for k, fn in keywords.items() if k in cls.VALIDATORS}
        _LINEAR_CLASSES[cls] = jsonschema_validators.extend(cls, keywords)
    return _LINEAR_CLASSES[cls]


# ---------------------------------------------------------------------------------------------
# secrets: by name, and by pattern (`patternProperties` / `additionalProperties`)


@dataclass(frozen=True)
class _AnyChild:
    """A path segment no name fixes: a `patternProperties` regex, or (regex None) the children
    `additionalProperties` covers."""

    regex: str | None
    declared: frozenset[str] = frozenset()
    excluded: tuple[str, ...] = ()


def _secret_rule(path: tuple[str | _AnyChild, ...]) -> str | SecretPattern:
    """A literal path is a key; one with a free segment is a rule. Below a second free segment
    the rule stops at the first one and masks its whole child: more than needed, never less."""
    free = next((i for i, seg in enumerate(path) if isinstance(seg, _AnyChild)), None)
    if free is None:
        return ".".join(str(seg) for seg in path)
    seg = path[free]
    assert isinstance(seg, _AnyChild)
    below = path[free + 1:]
    rest = "" if any(isinstance(s, _AnyChild) for s in below) else ".".join(map(str, below))
    group = ".".join(str(s) for s in path[:free])
    return SecretPattern(group, seg.regex, seg.declared, seg.excluded, rest)


class _SecretWalk:
    """Finds `writeOnly` through `properties`, `patternProperties`, `additionalProperties`,
    `$ref`, combinators and conditionals. Arrays are leaves in etcd, so a secret anywhere in
    `items` makes the whole array secret."""

    def __init__(self) -> None:
        self.found: set[tuple[str | _AnyChild, ...]] = set()

    def walk(self, node: Any, path: tuple[str | _AnyChild, ...], depth: int, res: Any,
             collapse: bool = False) -> None:
        if not isinstance(node, Mapping) or depth > 32:
            return
        if isinstance(node.get("$ref"), str):
            resolved = _lookup(res, node["$ref"])
            if resolved is not None:
                self.walk(resolved.contents, path, depth + 1, resolved.resolver, collapse)
        if path and node.get("writeOnly") is True:
            self.found.add(path)
        for kw in ("allOf", "anyOf", "oneOf"):
            for alt in node.get(kw, ()) or ():
                self.walk(alt, path, depth + 1, res, collapse)
        for kw in ("then", "else", "not"):
            self.walk(node.get(kw), path, depth + 1, res, collapse)
        for kw in ("items", "prefixItems", "contains", "additionalItems"):
            subs = node.get(kw)
            for sub in subs if isinstance(subs, list) else [subs]:
                self.walk(sub, path, depth + 1, res, collapse=True)
        self._children(node, path, depth, res, collapse)

    def _children(self, node: Mapping[str, Any], path: tuple[str | _AnyChild, ...],
                  depth: int, res: Any, collapse: bool) -> None:
        props = node.get("properties")
        props = props if isinstance(props, Mapping) else {}
        patterns = node.get("patternProperties")
        patterns = patterns if isinstance(patterns, Mapping) else {}

        def below(seg: str | _AnyChild) -> tuple[str | _AnyChild, ...]:
            return path if collapse else path + (seg,)

        for name, child in props.items():
            self.walk(child, below(str(name)), depth + 1, res, collapse)
        for regex, child in patterns.items():
            self.walk(child, below(_AnyChild(str(regex))), depth + 1, res, collapse)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            rest = _AnyChild(None, frozenset(map(str, props)), tuple(map(str, patterns)))
            self.walk(extra, below(rest), depth + 1, res, collapse)

    def secret_keys(self) -> SecretKeys:
        keys: set[str] = set()
        rules: list[SecretPattern] = []
        for path in sorted(self.found, key=repr):
            rule = _secret_rule(path)
            if isinstance(rule, str):
                keys.add(rule)
            elif rule not in rules:
                rules.append(rule)
        return SecretKeys(keys, rules)


# ---------------------------------------------------------------------------------------------
# compiled service schemas


class PythonValidator:
    """python-jsonschema's validator of one compiled schema (RE2 for patterns), built on first
    use: building it imports python-jsonschema and `referencing` (~0.1 s on a fresh process),
    which a valid commit never needs when jsonschema-rs has taken the schema."""

    def __init__(self, compiled: Mapping[str, Any], registry: Callable[[], Registry[Any]],
                 ) -> None:
        self._compiled = compiled
        self._registry = registry
        self._built: Validator | None = None

    def get(self) -> Validator:
        if self._built is None:
            from jsonschema import Draft202012Validator, FormatChecker
            from jsonschema.validators import validator_for

            cls = _linear_validator_class(validator_for(self._compiled,
                                                        default=Draft202012Validator))
            self._built = cls(self._compiled, registry=self._registry(),
                              format_checker=FormatChecker())
        return self._built


@dataclass
class ServiceSchema:
    """A service's compiled schema and what the loader needs from it."""

    service: str
    file: str
    compiled: dict[str, Any]
    python: PythonValidator  # python-jsonschema's, built when first asked: it explains a "no"
    secret_keys: SecretKeys  # flattened keys (or key prefixes) secret by name, and pattern rules
    fast: Any = None  # a jsonschema-rs validator: answers "valid?" ~35x faster
    compact: bool = False  # compiled from the compact form: closed, with `unknown-key` problems
    unknown_keys: str = "error"  # `.gitconf.yaml` `unknown_keys`: error | warn

    @property
    def validator(self) -> Validator:
        return self.python.get()

    @cached_property
    def masker(self) -> Masker:
        return Masker.of(self.secret_keys)

    @property
    def has_secrets(self) -> bool:
        return bool(self.secret_keys) or bool(self.secret_keys.patterns)

    def is_secret(self, key: str) -> bool:
        return self.masker.is_secret(key)

    def secret_keys_of(self, keys: Iterable[str]) -> SecretKeys:
        """The secret names plus the unit's own keys a pattern rule makes secret: a deploy
        records these, so they stay masked even after the rule is gone."""
        return self.secret_keys.matched(keys)


# Compiled schemas without problems, shared by every `SchemaSet` of this process: the daemon
# builds a set per pass, and a one-key commit should not compile its service's schema again.
# Keyed by the schema's content, `unknown_keys` and, when it has `$ref`s, what they resolve to
# and the content of the shared schemas (the same inputs give the same validator).
_ACROSS_SETS: dict[tuple[str, ...], ServiceSchema] = {}
_ACROSS_MAX = 512
# What each schema text's `$ref`s say, for a text whose references are all URI references: a
# thousand services generated from one template have one schema text, walked once.
_REF_TARGETS: dict[str, tuple[str, ...]] = {}


class SchemaSet:
    """The shared `schemas/` resources of one repository plus a validator per service."""

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.shared: dict[str, Any] = {}  # uri -> document
        self.unknown_keys = str((settings or {}).get("unknown_keys", "error"))
        self._registry: Registry[Any] | None = None
        self._rs_registry: Any = None
        self._compiled: dict[tuple[str, ...], ServiceSchema] = {}
        self._shared_key: str | None = None  # digest of `shared`, for `_ACROSS_SETS`

    def add_shared(self, path: str, doc: Any) -> None:
        self.shared[repo_uri(path)] = doc
        self._shared_key = None
        self._registry = None

    @property
    def registry(self) -> Registry[Any]:
        """The shared schemas as `referencing` resources, by path and by `$id`; built when a
        reference is followed or python-jsonschema validates (`referencing` is not imported
        before)."""
        if self._registry is None:
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012

            registry: Registry[Any] = Registry()
            for uri, doc in self.shared.items():
                resource = Resource.from_contents(doc, default_specification=DRAFT202012)
                registry = registry.with_resource(uri, resource)
                if isinstance(doc, Mapping) and isinstance(doc.get("$id"), str):
                    registry = registry.with_resource(doc["$id"], resource)
            self._registry = registry
        return self._registry

    def check_shared(self, path: str, doc: Any, positions: Mapping[DocPath, Position],
                     ) -> list[Problem]:
        """A shared schema is entered by its path (`../schemas/common.yaml#/$defs/port`), so its
        references are followed from there."""
        sites = list(_json_ref_sites(doc))
        bad = _bad_refs(sites, path, positions)
        if bad:
            return bad
        from jsonschema import Draft202012Validator
        from jsonschema.validators import validator_for
        from referencing.jsonschema import DRAFT202012, specification_with

        patterns = _pattern_problems(path, positions, _json_patterns(doc))
        spec, dialect = DRAFT202012, Draft202012Validator
        if isinstance(doc, Mapping) and isinstance(doc.get("$schema"), str):
            spec = specification_with(doc["$schema"], default=DRAFT202012)
            dialect = validator_for(doc, default=Draft202012Validator)
        base = repo_uri(path)
        walk = _RefWalk(self.registry.resolver(base_uri=base), base, spec, dialect)
        return (patterns or _check_schema(doc, path, positions)) + \
            _follow_refs(sites, walk, path, positions)

    def compile(self, service: str, path: str, doc: Any, positions: Mapping[DocPath, Position],
                compact_meta: ErrorSource) -> tuple[ServiceSchema | None, list[Problem]]:
        """Compile a service's schema. Services generated from one template share their
        schema's text; two identical texts whose `$ref`s resolve to the same resources mean
        the same thing, so the validators (and secrets) are built once for them."""
        if not isinstance(doc, Mapping):
            return None, [Problem(path, 1, 1, "schema", "a schema must be a mapping")]
        if "$schema" in doc and not isinstance(doc["$schema"], str):
            return None, [_problem_at(path, positions, ("$schema",), "schema",
                                      "$schema must be the URI of a JSON Schema dialect")]
        base = repo_uri(path)
        digest = _digest(doc)
        targets = _REF_TARGETS.get(digest)
        sites = None
        if targets is None:  # not seen in this process: find its references (~1 ms a schema)
            sites = _ref_sites(doc)
            bad = _bad_refs(sites, path, positions)
            if bad:
                return None, bad
            targets = tuple(site.value for site in sites if site.keyword in _REF_KEYWORDS)
            if len(_REF_TARGETS) >= _ACROSS_MAX:
                _REF_TARGETS.clear()
            _REF_TARGETS[digest] = targets
        refs = tuple(sorted(urljoin(base, target) for target in targets))
        key = (digest, self.unknown_keys, *refs)
        wide = (*key, self._shared_digest()) if refs else key
        shared = self._compiled.get(key) or _ACROSS_SETS.get(wide)
        if shared is not None:
            return replace(shared, service=service, file=path,
                           compiled={**shared.compiled, "$id": base}), []
        result, problems = self._compile(service, path, doc, positions, compact_meta,
                                         _ref_sites(doc) if sites is None else sites)
        if result is not None:
            self._compiled[key] = result
            if not problems:
                if len(_ACROSS_SETS) >= _ACROSS_MAX:
                    _ACROSS_SETS.clear()
                _ACROSS_SETS[wide] = result
        return result, problems

    def _shared_digest(self) -> str:
        if self._shared_key is None:
            self._shared_key = _digest(self.shared)
        return self._shared_key

    def _compile(self, service: str, path: str, doc: Mapping[str, Any],
                 positions: Mapping[DocPath, Position], compact_meta: ErrorSource,
                 sites: list[_RefSite]) -> tuple[ServiceSchema | None, list[Problem]]:
        """Check, compile, and follow every reference from the compiled root exactly as the
        validator will (its dialect, its root id), so a reference it could not follow is a
        positioned problem now rather than a traceback while validating."""
        compact = is_compact(doc)
        compiled, problems = _checked(doc, path, positions, compact_meta, compact)
        if compiled is None:
            return None, problems
        base = repo_uri(path)
        if compact:
            problems = _own_refs(sites, base, path, positions)
            if problems:
                return None, problems
        compiled.setdefault("$id", base)
        refs = [site for site in sites if site.keyword in _REF_KEYWORDS]
        if refs:  # followed now, as the validator will follow them
            problems = _follow_refs(refs, self._ref_walk(compiled), path, positions)
            if problems:
                return None, problems
        python = PythonValidator(compiled, lambda: self.registry)
        return ServiceSchema(service, path, compiled, python,
                             self._secrets(compiled, bool(refs)),
                             self._fast_validator(compiled), compact, self.unknown_keys), []

    def _ref_walk(self, compiled: dict[str, Any]) -> _RefWalk:
        """A walk from the compiled root with the validator's own dialect and root id."""
        from jsonschema import Draft202012Validator
        from jsonschema.validators import validator_for
        from referencing import Specification
        from referencing.jsonschema import specification_with

        cls = validator_for(compiled, default=Draft202012Validator)
        spec = specification_with(cls.ID_OF(cls.META_SCHEMA) or "urn:unknown-dialect",
                                  default=Specification.OPAQUE)
        root = spec.create_resource(compiled)
        return _RefWalk(self.registry.resolver_with_root(root), root.id() or "", spec, cls)

    def _fast_validator(self, compiled: dict[str, Any]) -> Any:
        """jsonschema-rs for the common answer ("valid"), offline and over the same resources,
        with patterns on the linear `regex` crate; None where it is not installed or cannot
        take the schema."""
        try:
            import jsonschema_rs
        except ImportError:
            return None
        try:
            if self._rs_registry is None:
                self._rs_registry = jsonschema_rs.Registry(list(self.shared.items()))
            return jsonschema_rs.validator_for(compiled, registry=self._rs_registry,
                                               validate_formats=True, offline=True,
                                               pattern_options=jsonschema_rs.RegexOptions())
        except Exception:  # a schema it cannot compile: python-jsonschema alone decides
            return None

    def _secrets(self, compiled: Mapping[str, Any], has_refs: bool) -> SecretKeys:
        """Secret keys (`writeOnly`), by flattened key or by pattern rule, following `$ref`s
        (a schema without any is walked without a resolver: nothing would ask it)."""
        resolver = None
        if has_refs:
            from referencing import Resource
            from referencing.jsonschema import DRAFT202012

            base = str(compiled.get("$id", REPO_BASE))
            resolver = self.registry.with_resource(
                base, Resource.from_contents(dict(compiled), default_specification=DRAFT202012)
            ).resolver(base_uri=base)
        walk = _SecretWalk()
        walk.walk(compiled, (), 0, resolver)
        return walk.secret_keys()


def _checked(doc: Mapping[str, Any], path: str, positions: Mapping[DocPath, Position],
             compact_meta: ErrorSource, compact: bool) -> tuple[dict[str, Any] | None,
                                                              list[Problem]]:
    """The schema as JSON Schema, or the positioned problems that stop it from being one
    (meta-schema, patterns RE2 cannot evaluate)."""
    if compact:
        problems = [_problem_at(path, positions, tuple(e.absolute_path), "schema",
                                _meta_message(e))
                    for e in compact_meta.iter_errors(doc) if not _is_regex_format(e)]
        # `format: regex` (asserted by `compact_meta_validator()`) is RE2's to judge: here, at
        # the pattern itself, in the words of docs/schemas.md, for any meta-validator given
        problems += _pattern_problems(path, positions, _compact_patterns(doc))
        if problems:
            return None, problems
        compiled = compile_compact(doc)
        # the meta-schema checks each leaf (and `items` against Draft 2020-12); should anything
        # still compile to an invalid JSON Schema, it is reported at the leaf, in the compact file
        verdict = _meta_verdict(compiled)
        if verdict is not None:
            where = tuple(p for p in verdict[0] if p != "properties")
            return None, [_problem_at(path, positions, where, "schema",
                                      f"invalid compact schema: {_short(verdict[1])}")]
        return compiled, []
    problems = _pattern_problems(path, positions, _json_patterns(doc))
    problems = problems or _check_schema(doc, path, positions)
    return (None, problems) if problems else (dict(doc), [])


_META_VERDICTS: dict[str, tuple[tuple[Any, ...], str] | None] = {}


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _meta_verdict(doc: Any, dialect: Any = None) -> tuple[tuple[Any, ...], str] | None:
    """None when `doc` is a valid JSON Schema (of `dialect`, a validator class; by default its
    own `$schema`'s), else where and why not; remembered by content. Formats are not asserted
    here: patterns are RE2's to judge (`_pattern_problems`)."""
    digest = _digest(doc) + (dialect.__name__ if dialect is not None else "")
    if digest not in _META_VERDICTS and dialect is None and _rs_meta_valid(doc):
        _META_VERDICTS[digest] = None
    if digest not in _META_VERDICTS:
        from jsonschema import Draft202012Validator, SchemaError
        from jsonschema.validators import validator_for

        cls = dialect or (validator_for(doc, default=Draft202012Validator)
                          if isinstance(doc, Mapping) else Draft202012Validator)
        try:
            cls.check_schema(doc, format_checker=None)
            _META_VERDICTS[digest] = None
        except SchemaError as exc:
            _META_VERDICTS[digest] = (tuple(exc.absolute_path), exc.message)
    return _META_VERDICTS[digest]


# the dialects both validators know, as `$schema` may name them
_RS_DIALECTS = frozenset(
    uri + tail
    for uri in ("https://json-schema.org/draft/2020-12/schema",
                "https://json-schema.org/draft/2019-09/schema",
                "http://json-schema.org/draft-07/schema", "http://json-schema.org/draft-06/schema",
                "http://json-schema.org/draft-04/schema")
    for tail in ("", "#"))
_RS_DEFAULT = "https://json-schema.org/draft/2020-12/schema"  # when `$schema` is absent


def _rs_meta_valid(doc: Any) -> bool:
    """jsonschema-rs's "a valid schema of its dialect", which takes microseconds where
    python-jsonschema's `check_schema` takes ~50 ms on a fresh process (Draft 2020-12's
    `$dynamicRef`s): a one-key apply pays it for its service's schema. Any other answer (not
    valid, a dialect it may not know, jsonschema-rs missing) leaves the verdict, and its
    words, to python-jsonschema."""
    dialect = doc.get("$schema", _RS_DEFAULT) if isinstance(doc, Mapping) else None
    if not isinstance(dialect, str) or dialect not in _RS_DIALECTS:
        return False
    try:
        import jsonschema_rs

        return bool(jsonschema_rs.meta.is_valid(doc))
    except Exception:  # not installed, or a document it cannot take
        return False



def _check_schema(doc: Any, path: str,
                  positions: Mapping[DocPath, Position]) -> list[Problem]:
    """Meta-validation costs ~10 ms a schema (Draft 2020-12's `$dynamicRef`s), while building a
    validator costs microseconds; services generated from one template share their schema's
    content, so the verdict is remembered by content."""
    verdict = _meta_verdict(doc)
    if verdict is None:
        return []
    where, message = verdict
    return [_problem_at(path, positions, where, "schema",
                        f"invalid JSON Schema: {_short(message)}")]


def _is_regex_format(error: Any) -> bool:
    return bool(error.validator == "format" and error.validator_value == "regex")


def _meta_message(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    prefix = f"{where}: " if where else ""
    return f"invalid compact schema: {prefix}{_short(error.message)}"


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _problem_at(file: str, positions: Mapping[DocPath, Position], path: DocPath,
                code: str, message: str) -> Problem:
    """Attribute a problem to the deepest written part of `path`."""
    for n in range(len(path), 0, -1):
        pos = positions.get(path[:n])
        if pos is not None:
            return Problem(file, pos.line, pos.column, code, message)
    return Problem(file, 1, 1, code, message)


def unflatten(values: Mapping[str, JSON]) -> dict[str, Any]:
    """Dotted keys back to the nested document a schema describes (`a.b: 1` -> `{a: {b: 1}}`).
    The loader has already refused keys that are both a value and a parent."""
    doc: dict[str, Any] = {}
    for key, value in values.items():
        parts = key.split(".")
        node = doc
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return doc


# ---------------------------------------------------------------------------------------------
# validating values: each error on the key that caused it, secrets never quoted


@dataclass
class _Unit:
    """One unit's values with where they were written: positions of keys (leaves) and of
    groups (their header line), and which lines hold a secret value."""

    schema: ServiceSchema
    values: Mapping[str, JSON]
    positions: Mapping[str, Position]
    groups: Mapping[str, Position]
    default_file: str
    _secret_lines: set[tuple[str, int]] | None = field(default=None, repr=False)

    def position(self, key: str) -> Position:
        """A written key or group where it is; otherwise its nearest written parent."""
        hit = self.positions.get(key) or self.groups.get(key)
        if hit is not None:
            return hit
        for group in parents(key):
            near = self.group_position(group)
            if near is not None:
                return near
        return Position(self.default_file, 1, 1)

    def group_position(self, group: str) -> Position | None:
        """A group's header line; for a group only written as dotted keys (`"a.b": 1`), its
        first key."""
        hit = self.groups.get(group) or self.positions.get(group)
        if hit is not None:
            return hit
        inside = [p for k, p in self.positions.items() if k.startswith(group + ".")
                  and k in self.values]
        return min(inside, key=lambda p: (p.line, p.column)) if inside else None

    def shows_secret(self, pos: Position) -> bool:
        """A secret value is written on this line: renderers must not quote it."""
        if self._secret_lines is None:
            masker = self.schema.masker
            self._secret_lines = {(p.file, p.line) for k, p in self.positions.items()
                                  if k in self.values and masker.is_secret(k)}
        return (pos.file, pos.line) in self._secret_lines

    def problem(self, pos: Position, code: str, message: str, key: str,
                severity: str = "error") -> Problem:
        secret = self.shows_secret(pos) or (key in self.values and self.schema.is_secret(key))
        return Problem(pos.file, pos.line, pos.column, code, message, key or None,
                       "warning" if severity == "warning" else "error", secret)


def validate_values(schema: ServiceSchema, values: Mapping[str, JSON],
                    positions: Mapping[str, Position], default_file: str,
                    groups: Mapping[str, Position] | None = None) -> list[Problem]:
    """Validate one unit's merged values; each error lands on the key that caused it.
    `groups` (where each group's header is written) lets a missing key point at its parent.

    When jsonschema-rs says the document is valid, it is (the common case, ~35x faster);
    otherwise python-jsonschema decides and explains, so verdicts are its own."""
    doc = unflatten(values)
    if schema.fast is not None:
        try:
            if schema.fast.is_valid(doc):
                return []
        except Exception:
            pass
    from referencing.exceptions import Unresolvable

    unit = _Unit(schema, values, positions, groups or {}, default_file)
    problems: list[Problem] = []
    required_seen: dict[DocPath, int] = {}
    try:
        for error in schema.validator.iter_errors(doc):
            if schema.compact and _is_unknown_key_error(error):
                problems.extend(_unknown_key_problems(unit, error))
            elif error.validator == "required":
                problems.extend(_required_problem(unit, error, required_seen))
            else:
                problems.append(_value_problem(unit, error))
    except Unresolvable as exc:
        # compile() follows every reference it finds; one reached only while validating (an
        # `$id` in a shared schema moving its base) still fails the unit, never the process
        problems.append(Problem(schema.file, 1, 1, "schema-ref",
                                f"$ref {_short(str(exc.ref))!r} of this schema (or of a schema "
                                "it refers to) does not resolve while validating"))
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    return problems


def _is_unknown_key_error(error: Any) -> bool:
    """A closed compact group refused a key (not a JSON Schema reached through `$ref`)."""
    return (error.validator == "additionalProperties" and error.validator_value is False
            and isinstance(error.instance, Mapping) and "$ref" not in error.schema_path)


def _unknown_key_problems(unit: _Unit, error: Any) -> Iterator[Problem]:
    group = ".".join(str(p) for p in error.absolute_path)
    declared = [str(k) for k in error.schema.get("properties", {})]
    severity = "warning" if unit.schema.unknown_keys == "warn" else "error"
    for extra in _extras(error.instance, error.schema):
        key = f"{group}.{extra}" if group else str(extra)
        message = _unknown_key_message(unit.schema.service, group, str(extra), declared)
        yield unit.problem(unit.position(key), UNKNOWN_KEY, message, key, severity)


def _unknown_key_message(service: str, group: str, name: str, declared: list[str]) -> str:
    """Name the unknown key and the closest declared sibling, so a typo is fixed from the
    message alone: "`tiemout`: not in the schema of payments; did you mean `timeout`?"."""

    def full(n: str) -> str:
        return f"{group}.{n}" if group else n

    close = difflib.get_close_matches(name, declared, n=1)
    if close:
        hint = f"; did you mean `{full(close[0])}`?"
    elif declared:
        shown = ", ".join(f"`{full(n)}`" for n in sorted(declared)[:8])
        hint = f" (declared here: {shown}{', …' if len(declared) > 8 else ''})"
    else:
        hint = " (the schema declares no keys here)"
    return f"`{full(name)}`: not in the schema of {service}{hint}"


def _required_problem(unit: _Unit, error: Any, seen: dict[DocPath, int]) -> Iterator[Problem]:
    """python-jsonschema reports each missing name of one `required` in order, with the name
    only in its message: count them to know which one this is."""
    where = tuple(error.absolute_path)
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    missing = [str(r) for r in error.validator_value if r not in instance]
    n = seen.get(where, 0)
    seen[where] = n + 1
    if n >= len(missing):
        return
    group = ".".join(str(p) for p in where)
    key = f"{group}.{missing[n]}" if group else missing[n]
    pos = (unit.group_position(group) or unit.position(group)) if group \
        else Position(unit.default_file, 1, 1)  # inside an array item: the array's line
    yield unit.problem(pos, "schema", f"`{key}` is required but missing", key)


def _value_problem(unit: _Unit, error: Any) -> Problem:
    key = ".".join(str(p) for p in error.absolute_path)
    pos = unit.position(key)
    if error.validator in ("additionalProperties", "unevaluatedProperties") \
            and isinstance(error.instance, Mapping):  # a JSON Schema's own: at the first extra
        extra = next(iter(_extras(error.instance, error.schema)), None)
        if extra is not None:
            pos = unit.position(f"{key}.{extra}" if key else str(extra))
    masker = unit.schema.masker
    if _names_only(error):
        message = f"{key}: {_short(error.message)}" if key else _short(error.message)
    elif masker.is_secret(key):
        message = f"`{key}`: {_expected(error)} (value is secret, not shown)"
    elif masker.group_has_secret(key, unit.values):
        name = f"`{key}`" if key else "the top level"
        message = f"{name}: {_expected(error)} (it holds a secret, not shown)"
    else:
        message = f"{key}: {_short(error.message)}" if key else _short(error.message)
    return unit.problem(pos, "schema", message, key)


def _names_only(error: Any) -> bool:
    """Errors whose message quotes key names, never values."""
    return (error.validator in ("additionalProperties", "unevaluatedProperties")
            and error.validator_value is False) or error.validator == "dependentRequired"


_EXPECTATIONS: dict[str, str] = {
    "minLength": "expected at least {} characters",
    "maxLength": "expected at most {} characters",
    "pattern": "expected to match the pattern {!r}",
    "format": "expected the format {!r}",
    "minimum": "expected at least {}",
    "maximum": "expected at most {}",
    "exclusiveMinimum": "expected more than {}",
    "exclusiveMaximum": "expected less than {}",
    "multipleOf": "expected a multiple of {}",
    "minItems": "expected at least {} items",
    "maxItems": "expected at most {} items",
    "minProperties": "expected at least {} keys",
    "maxProperties": "expected at most {} keys",
    "uniqueItems": "expected unique items",
}


def _expected(error: Any) -> str:
    """What the schema wanted, in words that quote the schema and never the value."""
    v = error.validator_value
    if error.validator == "type":
        return "expected " + " or ".join(str(t) for t in (v if isinstance(v, list) else [v]))
    if error.validator in ("enum", "const"):
        return "expected one of the values the schema allows"
    template = _EXPECTATIONS.get(str(error.validator))
    if template is not None:
        return template.format(v)
    return f"does not satisfy '{error.validator}'"
