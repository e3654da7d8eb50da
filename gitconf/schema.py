"""Service schemas: the compact form of SPEC §2 compiled to JSON Schema (Draft 2020-12),
`$ref`s into the repository's `schemas/`, secret marking, and validation errors mapped back to
the file, line and column of the offending key.

One validator is built per schema and reused for every environment (building one costs far
more than using it). Every repository resource lives under the base URI `file:///repo/`; no
retriever is registered, so a `$ref` can only reach files of the repository itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator, FormatChecker, SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from .keypath import parents
from .masking import Masker
from .model import JSON, Position, Problem

REPO_BASE = "file:///repo/"
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
MAX_MESSAGE = 300


def repo_uri(path: str) -> str:
    return REPO_BASE + path


def packaged_schema(name: str) -> dict[str, Any]:
    """The JSON Schemas gitconf uses on its own files (copies of the repo's `schemas/`)."""
    text = resources.files("gitconf").joinpath("data", name).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def is_compact(doc: Mapping[str, Any]) -> bool:
    """SPEC §2: a JSON Schema has `$schema`, or a string as its top-level `type`."""
    return not ("$schema" in doc or isinstance(doc.get("type"), str))


def _is_compact_leaf(node: Mapping[str, Any]) -> bool:
    return isinstance(node.get("type"), str) or "$ref" in node


def compile_compact(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Compact form -> Draft 2020-12. `min`/`max` become the bound that fits the type."""

    def leaf(spec: Mapping[str, Any]) -> dict[str, Any]:
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

    def group(node: Mapping[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, child in node.items():
            if not isinstance(child, Mapping):
                continue  # the meta-schema has reported it already
            if _is_compact_leaf(child):
                props[name] = leaf(child)
                if child.get("required"):
                    required.append(name)
            else:
                props[name] = group(child)
                if _group_required(child):
                    required.append(name)
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        return out

    compiled = group(doc)
    compiled["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return compiled


def _group_required(node: Mapping[str, Any]) -> bool:
    """A group is required when anything inside it is."""
    for child in node.values():
        if isinstance(child, Mapping):
            if _is_compact_leaf(child):
                if child.get("required"):
                    return True
            elif _group_required(child):
                return True
    return False


def _iter_refs(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path + (k,), v
            else:
                yield from _iter_refs(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _iter_refs(v, path + (i,))


@dataclass
class ServiceSchema:
    """A service's compiled schema and what the loader needs from it."""

    service: str
    file: str
    compiled: dict[str, Any]
    validator: Validator
    secret_keys: frozenset[str]  # flattened keys (or key prefixes) whose values are secret
    fast: Any = None  # a jsonschema-rs validator: answers "valid?" ~35x faster

    @property
    def masker(self) -> Masker:
        return Masker(self.secret_keys)

    def is_secret(self, key: str) -> bool:
        return self.masker.is_secret(key)


class SchemaSet:
    """The shared `schemas/` resources of one repository plus a validator per service."""

    def __init__(self) -> None:
        self.registry: Registry[Any] = Registry()
        self.shared: dict[str, Any] = {}  # uri -> document
        self._rs_registry: Any = None
        self._compiled: dict[tuple[str, tuple[str, ...]], ServiceSchema] = {}

    def add_shared(self, path: str, doc: Any) -> None:
        uri = repo_uri(path)
        self.shared[uri] = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = self.registry.with_resource(uri, resource)
        if isinstance(doc, Mapping) and isinstance(doc.get("$id"), str):
            self.registry = self.registry.with_resource(doc["$id"], resource)

    def check_shared(self, path: str, doc: Any, positions: Mapping[tuple[Any, ...], Position],
                     ) -> list[Problem]:
        return _check_schema(doc, path, positions) + self._check_refs(doc, path, positions)

    def compile(self, service: str, path: str, doc: Any,
                positions: Mapping[tuple[Any, ...], Position],
                compact_meta: Validator) -> tuple[ServiceSchema | None, list[Problem]]:
        """Compile a service's schema. Services generated from one template share their
        schema's text; two identical texts whose `$ref`s resolve to the same resources mean
        the same thing, so the validators (and secrets) are built once for them."""
        if not isinstance(doc, Mapping):
            return None, [Problem(path, 1, 1, "schema", "a schema must be a mapping")]
        base = repo_uri(path)
        key = (_digest(doc), tuple(sorted(urljoin(base, ref) for _, ref in _iter_refs(doc))))
        shared = self._compiled.get(key)
        if shared is not None:
            return replace(shared, service=service, file=path,
                           compiled={**shared.compiled, "$id": base}), []
        result, problems = self._compile(service, path, doc, positions, compact_meta)
        if result is not None:
            self._compiled[key] = result
        return result, problems

    def _compile(self, service: str, path: str, doc: Mapping[str, Any],
                 positions: Mapping[tuple[Any, ...], Position],
                 compact_meta: Validator) -> tuple[ServiceSchema | None, list[Problem]]:
        if is_compact(doc):
            problems = [_problem_at(path, positions, tuple(e.absolute_path), "schema",
                                    _meta_message(e))
                        for e in compact_meta.iter_errors(doc)]
            if problems:
                return None, problems
            compiled = compile_compact(doc)
        else:
            compiled = dict(doc)
            problems = _check_schema(compiled, path, positions)
            if problems:
                return None, problems
        problems = self._check_refs(doc, path, positions)
        if problems:
            return None, problems
        compiled.setdefault("$id", repo_uri(path))
        cls = validator_for(compiled, default=Draft202012Validator)
        validator = cls(compiled, registry=self.registry, format_checker=FormatChecker())
        return ServiceSchema(service, path, compiled, validator, self._secrets(compiled),
                             self._fast_validator(compiled)), []

    def _fast_validator(self, compiled: dict[str, Any]) -> Any:
        """jsonschema-rs for the common answer ("valid"), offline and over the same resources;
        None where it is not installed or cannot take the schema."""
        try:
            import jsonschema_rs
        except ImportError:
            return None
        try:
            if self._rs_registry is None:
                self._rs_registry = jsonschema_rs.Registry(list(self.shared.items()))
            return jsonschema_rs.validator_for(compiled, registry=self._rs_registry,
                                               validate_formats=True, offline=True)
        except Exception:  # a schema it cannot compile: python-jsonschema alone decides
            return None

    def _check_refs(self, doc: Any, path: str,
                    positions: Mapping[tuple[Any, ...], Position]) -> list[Problem]:
        problems = []
        base = repo_uri(path)
        resolver = self.registry.resolver(base_uri=base)
        own = Resource.from_contents(doc, default_specification=DRAFT202012)
        resolver = self.registry.with_resource(base, own).resolver(base_uri=base)
        for rpath, ref in _iter_refs(doc):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                target = urljoin(base, ref)
                where = target[len(REPO_BASE):] if target.startswith(REPO_BASE) else target
                problems.append(_problem_at(path, positions, rpath, "schema-ref",
                                            f"$ref {ref!r} does not resolve ({where}); refs reach "
                                            "files under schemas/ of this repository"))
        return problems

    def _secrets(self, compiled: Mapping[str, Any]) -> frozenset[str]:
        """Secret keys (`writeOnly`), by flattened key, following `$ref`s."""
        secrets: set[str] = set()
        base = str(compiled.get("$id", REPO_BASE))
        resolver = self.registry.with_resource(
            base, Resource.from_contents(dict(compiled), default_specification=DRAFT202012)
        ).resolver(base_uri=base)

        def walk(node: Any, key: str, depth: int, res: Any) -> None:
            if not isinstance(node, Mapping) or depth > 32:
                return
            if isinstance(node.get("$ref"), str):
                try:
                    resolved = res.lookup(node["$ref"])
                except Unresolvable:
                    resolved = None
                if resolved is not None:
                    walk(resolved.contents, key, depth + 1, resolved.resolver)
            if key and node.get("writeOnly") is True:
                secrets.add(key)
            for sub in ("allOf", "anyOf", "oneOf"):
                for alt in node.get(sub, ()) or ():
                    walk(alt, key, depth + 1, res)
            props = node.get("properties")
            if isinstance(props, Mapping):
                for name, child in props.items():
                    walk(child, f"{key}.{name}" if key else str(name), depth + 1, res)

        walk(compiled, "", 0, resolver)
        return frozenset(secrets)


_META_VERDICTS: dict[str, tuple[tuple[Any, ...], str] | None] = {}


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _check_schema(doc: Any, path: str,
                  positions: Mapping[tuple[Any, ...], Position]) -> list[Problem]:
    """Meta-validation costs ~10 ms a schema (Draft 2020-12's `$dynamicRef`s), while building a
    validator costs microseconds; services generated from one template share their schema's
    content, so the verdict is remembered by content."""
    digest = _digest(doc)
    if digest not in _META_VERDICTS:
        cls = validator_for(doc, default=Draft202012Validator) if isinstance(doc, Mapping) \
            else Draft202012Validator
        try:
            cls.check_schema(doc)
            _META_VERDICTS[digest] = None
        except SchemaError as exc:
            _META_VERDICTS[digest] = (tuple(exc.absolute_path), exc.message)
    verdict = _META_VERDICTS[digest]
    if verdict is None:
        return []
    where, message = verdict
    return [_problem_at(path, positions, where, "schema",
                        f"invalid JSON Schema: {_short(message)}")]


def _meta_message(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    prefix = f"{where}: " if where else ""
    return f"invalid compact schema: {prefix}{_short(error.message)}"


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _problem_at(file: str, positions: Mapping[tuple[Any, ...], Position], path: tuple[Any, ...],
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


def validate_values(schema: ServiceSchema, values: Mapping[str, JSON],
                    positions: Mapping[str, Position], default_file: str) -> list[Problem]:
    """Validate one unit's merged values; each error lands on the key that caused it.

    When jsonschema-rs says the document is valid, it is (the common case, ~35x faster);
    otherwise python-jsonschema decides and explains, so verdicts and messages are its own."""
    doc = unflatten(values)
    if schema.fast is not None:
        try:
            if schema.fast.is_valid(doc):
                return []
        except Exception:
            pass
    problems = []
    for error in schema.validator.iter_errors(doc):
        path = [str(p) for p in error.absolute_path]
        key = ".".join(path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            missing = [r for r in error.validator_value if r not in error.instance]
            if missing:
                key = f"{key}.{missing[0]}" if key else str(missing[0])
        pos = _position_of(key, values, positions, default_file)
        if schema.masker.group_has_secret(key, values) or schema.is_secret(key):
            message = f"{key}: value (secret, not shown) does not satisfy '{error.validator}'"
        else:
            message = f"{key}: {_short(error.message)}" if key else _short(error.message)
        problems.append(Problem(pos.file, pos.line, pos.column, "schema", message, key or None))
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    return problems


def _position_of(key: str, values: Mapping[str, JSON], positions: Mapping[str, Position],
                 default_file: str) -> Position:
    if key in positions:
        return positions[key]
    for group in parents(key):  # the key is missing: report at its nearest written parent
        if group in positions:
            return positions[group]
        inside = [positions[k] for k in values if k.startswith(group + ".") and k in positions]
        if inside:
            return min(inside, key=lambda p: (p.line, p.column))
    return Position(default_file, 1, 1)
