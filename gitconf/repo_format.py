"""The config repository format of SPEC §2: layout, naming, values, `_base` merge, limits, schemas.

`iter_units()` streams one service at a time so that validating a large repository keeps only
one service's files in memory; `load_desired()` collects the same stream into a `DesiredState`
for the commands that plan against etcd.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import field, replace
from typing import Any, Literal, NamedTuple

from . import safeyaml
from .fastclass import dataclass
from .keypath import all_parents, nearest_parent_in, parents
from .model import JSON, DesiredState, DesiredUnit, Position, Problem, UnitId
from .records import dumps_value
from .schema import ErrorSource, SchemaSet, ServiceSchema, meta_check, validate_values
from .trees import Tree

log = logging.getLogger("gitconf")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
NAME_RULE = ("lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, "
             "at most 63 characters")
YAML_EXTS = (".yaml", ".yml")
SETTINGS_FILES = (".gitconf.yaml", ".gitconf.yml")
SCHEMA_FILES = ("schema.yaml", "schema.yml", "schema.json")
BASE_FILES = ("_base.yaml", "_base.yml")
SHARED_SCHEMAS_DIR = "schemas"
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class ServiceFiles:
    name: str
    schema: str | None = None
    base: str | None = None
    envs: dict[str, str] = field(default_factory=dict)

    def all_files(self) -> list[str]:
        out = [p for p in (self.schema, self.base) if p]
        out.extend(self.envs.values())
        return out


@dataclass
class Layout:
    settings: dict[str, Any]
    services: Mapping[str, ServiceFiles]  # a dict, or a stored layout's lazily read services
    shared_schemas: list[str]
    problems: list[Problem]
    settings_file: str | None = None
    units: int | None = field(default=None, compare=False)  # known without counting (stored)

    def unit_count(self, services: Collection[str] | None = None,
                   environments: Collection[str] | None = None) -> int:
        """How many units the selection holds; a stored layout answers the whole count
        without reading its services, and a few named services are looked up."""
        if not services and not environments and self.units is not None:
            return self.units
        chosen = self.services.values() if not services else \
            (self.services[n] for n in set(services) if n in self.services)
        return sum(1 for s in chosen for e in s.envs if not environments or e in environments)

    def spread(self, parts: int) -> list[str]:
        """Up to `parts - 1` service names spaced evenly through the services in the order they
        were read (git's tree order, near the order of their keys in etcd): where a pass cuts
        its walk of the prefix into parts etcd reads in parallel (`selection`). A stored
        layout picks them from its text without reading every service."""
        pick = getattr(self.services, "spread", None)
        if callable(pick):
            return list(pick(parts))
        names = list(self.services)
        return sorted({names[len(names) * i // parts] for i in range(1, parts)}) \
            if len(names) >= parts else []

    @property
    def files(self) -> int:
        n = sum(len(s.all_files()) for s in self.services.values()) + len(self.shared_schemas)
        return n + (1 if self.settings_file else 0)


def is_yaml(path: str) -> bool:
    return path.endswith(YAML_EXTS)


# ---------------------------------------------------------------------------------------------
# layout


class PathRole(NamedTuple):
    """What one path of the tree is, by the layout rules of SPEC §2 alone (names unchecked)."""

    kind: Literal["settings", "shared-schema", "schema", "base", "env", "nested", "reserved",
                  "other"]
    service: str = ""
    env: str = ""


def classify_path(path: str, ignore: Collection[str] = ()) -> PathRole:
    """The one place that says what a path is: every reader of the layout asks it."""
    if path in SETTINGS_FILES:
        return PathRole("settings")
    top, sep, rest = path.partition("/")
    if not sep or top.startswith((".", "_")) or top in ignore:
        return PathRole("other")
    if top == SHARED_SCHEMAS_DIR:
        kind: Any = "shared-schema" if rest.endswith((*YAML_EXTS, ".json")) else "other"
        return PathRole(kind)
    if not (is_yaml(rest) or rest == "schema.json"):
        return PathRole("other")  # README.md and friends
    if "/" in rest:
        return PathRole("nested", top)
    if rest in SCHEMA_FILES:
        return PathRole("schema", top)
    if rest in BASE_FILES:
        return PathRole("base", top)
    if rest.startswith((".", "_")):
        return PathRole("reserved", top)
    return PathRole("env", top, rest.rsplit(".", 1)[0])


def unit_of_path(path: str) -> tuple[str, str | None] | None:
    """`svc/prod.yaml` -> (svc, prod); `svc/_base.yaml` / schema -> (svc, None); else None."""
    role = classify_path(path)
    if role.kind == "env":
        return role.service, role.env
    if role.kind in ("schema", "base"):
        return role.service, None
    return None


def units_touched(paths: Iterable[str], envs_of: Callable[[str], Iterable[str]]) -> set[UnitId]:
    """Units whose files are among `paths`: an environment file names its unit; `_base.yaml`
    or a schema names every environment `envs_of(service)` gives."""
    units: set[UnitId] = set()
    for path in paths:
        hit = unit_of_path(path)
        if hit is None:
            continue
        svc, env = hit
        if env is not None:
            units.add(UnitId(svc, env))
        else:
            units.update(UnitId(svc, e) for e in envs_of(svc))
    return units


def affects_everything(path: str) -> bool:
    """Settings and shared schemas can change every unit."""
    return classify_path(path).kind in ("settings", "shared-schema")


def units_in_layout(layout: Layout) -> set[UnitId]:
    return {UnitId(s.name, e) for s in layout.services.values() for e in s.envs}


def read_layout(tree: Tree, paths: list[str] | None = None) -> Layout:
    """Which files are settings, shared schemas, service schemas, bases and environments."""
    paths = tree.paths() if paths is None else paths
    problems: list[Problem] = []
    settings: dict[str, Any] = {}
    settings_file = next((p for p in SETTINGS_FILES if p in set(paths)), None)
    if settings_file:
        raw = dict(tree.read([settings_file]))[settings_file]
        settings, problems = load_settings(settings_file, raw)
    ignore = set(settings.get("ignore", ()))
    services: dict[str, ServiceFiles] = {}
    layout = Layout(settings, services, [], problems, settings_file)
    reported_names: set[str] = set()
    for path in paths:
        role = classify_path(path, ignore)
        if role.kind == "shared-schema":
            layout.shared_schemas.append(path)
        elif role.kind not in ("other", "settings"):
            _place(layout, services, path, role, reported_names)
    _report_refused(tree, layout, ignore)
    return layout


def _report_refused(tree: Tree, layout: Layout, ignore: Collection[str]) -> None:
    """Symbolic links, FIFOs and devices where a config file (or a service directory) would be
    are problems, never read. A refused environment file fails its unit (reconcile never
    prunes a failed unit); a refused `.gitconf.yaml` breaks the settings, which stops apply."""
    for entry in tree.refused():
        role = classify_path(entry.path, ignore)
        maybe_service_dir = ("/" not in entry.path and bool(NAME_RE.match(entry.path))
                             and entry.path not in ignore)
        if role.kind == "settings":
            layout.problems.append(Problem(entry.path, 1, 1, "settings", entry.message))
        elif role.kind != "other" or maybe_service_dir:
            layout.problems.append(Problem(entry.path, 1, 1, entry.code, entry.message))


def _place(layout: Layout, services: dict[str, ServiceFiles], path: str, role: PathRole,
           reported_names: set[str]) -> None:
    """File one service path into the layout, or report why it cannot be."""
    problems, top = layout.problems, role.service
    if role.kind == "nested":
        problems.append(Problem(path, 1, 1, "layout", f"{path}: config files belong directly "
                                                      f"in {top}/; nested directories are not "
                                                      "read"))
        return
    if not NAME_RE.match(top):
        if top not in reported_names:
            reported_names.add(top)
            problems.append(Problem(path, 1, 1, "bad-name",
                                    f"{top!r} is not a valid service name ({NAME_RULE}); "
                                    "list it under ignore: in .gitconf.yaml if it is not "
                                    "a service"))
        return
    svc = services.setdefault(top, ServiceFiles(top))
    if role.kind in ("schema", "base"):
        what = "schemas" if role.kind == "schema" else "base files"
        current = svc.schema if role.kind == "schema" else svc.base
        if current:
            problems.append(Problem(path, 1, 1, "duplicate-file",
                                    f"{top} has two {what}: {current} and {path}"))
        elif role.kind == "schema":
            svc.schema = path
        else:
            svc.base = path
        return
    if role.kind == "reserved":
        problems.append(Problem(path, 1, 1, "layout", f"{path}: names starting with '_' or "
                                                      "'.' are reserved (only _base.yaml is "
                                                      "read)"))
        return
    _place_env(layout, svc, path, role.env)


def _place_env(layout: Layout, svc: ServiceFiles, path: str, env: str) -> None:
    environments = layout.settings.get("environments")
    problems = layout.problems
    if not NAME_RE.match(env):
        problems.append(Problem(path, 1, 1, "bad-name",
                                f"{env!r} is not a valid environment name ({NAME_RULE})"))
    elif environments is not None and env not in environments:
        problems.append(Problem(path, 1, 1, "unknown-environment",
                                f"environment {env!r} is not listed in .gitconf.yaml "
                                f"(environments: {', '.join(environments)})"))
    elif env in svc.envs:
        problems.append(Problem(path, 1, 1, "duplicate-file",
                                f"{svc.name}/{env} is defined twice: {svc.envs[env]} and "
                                f"{path}"))
    else:
        svc.envs[env] = path


def read_settings(tree: Tree) -> dict[str, Any]:
    """`.gitconf.yaml` alone, without listing the tree (a commit: one `ls-tree` of that path):
    what the follow-up pull requests need on every daemon cycle, at a cost independent of the
    repository's size. Broken settings read as none (the pass reports them)."""
    for name in SETTINGS_FILES:
        try:
            raw = dict(tree.read([name])).get(name)
        except (KeyError, OSError):
            continue
        if raw is not None:
            settings, problems = load_settings(name, raw)
            return {} if problems else settings
    return {}


def load_settings(path: str, raw: bytes) -> tuple[dict[str, Any], list[Problem]]:
    doc, positions, problems = _load_doc(path, raw)
    if problems:
        return {}, problems
    if doc is None:
        return {}, []
    validator = meta_check("gitconf-config.json")
    for err in validator.iter_errors(doc):
        where = tuple(err.absolute_path)
        pos = next((positions[where[:n]] for n in range(len(where), 0, -1)
                    if where[:n] in positions), Position(path, 1, 1))
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
            pos = positions.get(where + (extra[0],), pos) if extra else pos
        problems.append(Problem(path, pos.line, pos.column, "settings",
                                f"{'.'.join(map(str, where)) or 'settings'}: {err.message}"))
    return (doc if not problems and isinstance(doc, dict) else {}), problems


class _LazyPositions(Mapping[tuple[Any, ...], Position]):
    """Positions of a JSON document, computed (by the YAML loader) only if a problem asks."""

    def __init__(self, text: str, path: str):
        self._text, self._path = text, path
        self._positions: dict[tuple[Any, ...], Position] | None = None

    def _load(self) -> dict[tuple[Any, ...], Position]:
        if self._positions is None:
            # `json.loads` accepted the text, so its tabs are whitespace between tokens, which
            # YAML refuses where it takes them for indentation: as spaces they keep every column
            self._positions = safeyaml.load(_spaced(self._text), self._path,
                                            item_positions=True).positions
        return self._positions

    def __getitem__(self, key: tuple[Any, ...]) -> Position:
        return self._load()[key]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class _NotPlainJSON(Exception):
    """Text `json.loads` reads that gitconf refuses, and why (a problem code and message)."""

    def __init__(self, code: str = "not-json", message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotPlainJSON("duplicate-key", f"duplicate key {key!r}")
            seen.add(key)
    return out


def _no_constants(name: str) -> Any:
    raise _NotPlainJSON("not-json", f"{name!r} has no JSON representation")


def _finite_float(text: str) -> float:
    """`1e400` is JSON text but no JSON value once parsed (inf): refused, as YAML refuses it."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotPlainJSON("not-json", safeyaml.json_number(text)[1] or "out of range")
    return value


def _json_int(text: str) -> int:
    """An integer as the YAML reader takes it: one too long to print is refused, in its words."""
    value, why = safeyaml.json_number(text)
    if why is not None or not isinstance(value, int):
        raise _NotPlainJSON("not-json", why or f"{text[:80]!r} is not an integer")
    return value


def _inert(_: Any) -> None:
    return None


def _spaced(text: str) -> str:
    """Tabs as spaces: the same JSON where tabs only separate tokens, at the same columns."""
    return text.replace("\t", " ")


def _fast_json(text: str) -> Any:
    """`json.loads` is 30x faster than the positioned YAML path; anything it would accept but
    we refuse (duplicate keys, NaN, 1e400) sends the file down the YAML path for a positioned
    report."""
    try:
        return json.loads(text, object_pairs_hook=_pairs_no_duplicates,
                          parse_constant=_no_constants, parse_float=_finite_float)
    except (_NotPlainJSON, ValueError, RecursionError):
        raise _NotPlainJSON from None


def _load_doc(path: str, raw: bytes, item_positions: bool = False,
              ) -> tuple[Any, Mapping[tuple[Any, ...], Position], list[Problem]]:
    text, problem = safeyaml.decode(raw, path)
    if text is None:
        assert problem is not None
        return None, {}, [problem]
    if path.endswith(".json"):
        return _load_json(path, text, item_positions)
    loaded = safeyaml.load(text, path, item_positions=item_positions)
    return loaded.data, loaded.positions, loaded.problems


def _load_json(path: str, text: str, item_positions: bool,
               ) -> tuple[Any, Mapping[tuple[Any, ...], Position], list[Problem]]:
    """A `.json` file: plain JSON through `json.loads` (positions only if a problem asks for
    them); anything else through the YAML reader with JSON's scalars, so a duplicate key,
    `NaN` or `1e400` is a problem where it is written and a number means what JSON says
    (`1e5` is 100000.0, not YAML 1.1's string)."""
    try:
        return _fast_json(text), _LazyPositions(text, path), []
    except _NotPlainJSON:
        pass
    loaded = safeyaml.load(text, path, item_positions=item_positions, json_scalars=True)
    if loaded.problems and loaded.problems[0].code == "yaml-syntax":
        return _json_yaml_cannot_read(path, text, item_positions)
    return loaded.data, loaded.positions, loaded.problems


def _json_yaml_cannot_read(path: str, text: str, item_positions: bool,
                           ) -> tuple[Any, Mapping[tuple[Any, ...], Position], list[Problem]]:
    """JSON that libyaml refuses. A tab YAML takes for indentation (before the top-level `{`,
    on a line of its own): read again with tabs as spaces (strict JSON has no raw tab inside a
    string), with the same rules and positions as any `.json` file. Spelled as libyaml cannot
    read (a surrogate pair escape, a key over 1024 characters): `json.loads` decides, with the
    same refusals, at line 1."""
    try:  # inert hooks: only a syntax error (or depth) can stop this parse
        json.loads(text, object_pairs_hook=_inert, parse_int=_inert, parse_float=_inert,
                   parse_constant=_inert)
    except json.JSONDecodeError as exc:
        return None, {}, [Problem(path, exc.lineno, exc.colno, "json-syntax", exc.msg)]
    except RecursionError:
        pass  # the YAML reader says where the nesting gets too deep
    if "\t" in text:
        loaded = safeyaml.load(_spaced(text), path, item_positions=item_positions,
                               json_scalars=True)
        if not (loaded.problems and loaded.problems[0].code == "yaml-syntax"):
            return loaded.data, loaded.positions, loaded.problems
    try:
        return json.loads(text, object_pairs_hook=_pairs_no_duplicates, parse_int=_json_int,
                          parse_constant=_no_constants, parse_float=_finite_float), {}, []
    except _NotPlainJSON as exc:
        return None, {}, [Problem(path, 1, 1, exc.code, exc.message)]
    except RecursionError:
        return None, {}, [Problem(path, 1, 1, "nesting-too-deep",
                                  "document nests too deeply to be configuration")]
    except ValueError as exc:  # pragma: no cover - the parse above found the text well-formed
        return None, {}, [Problem(path, 1, 1, "not-json", f"not a JSON value: {str(exc)[:80]}")]


# ---------------------------------------------------------------------------------------------
# values


@dataclass
class Values:
    """One values file, flattened."""

    values: dict[str, JSON]
    positions: dict[str, Position]
    problems: list[Problem]
    parsed: bool = True  # False when the file could not be read as a mapping at all
    groups: dict[str, Position] = field(default_factory=dict)  # where each group's header is
    dotted: bool = False  # a key written with a dot in it (`"a.b": 1`): may collide with `a`


def load_values(path: str, raw: bytes) -> Values:
    doc, ypos, problems = _load_doc(path, raw)
    problems = list(problems)
    if doc is None:
        return Values({}, {}, problems, parsed=not problems)
    if not isinstance(doc, dict):
        problems.append(Problem(path, 1, 1, "not-a-mapping",
                                "the top level of a values file must be a mapping of keys"))
        return Values({}, {}, problems, parsed=False)
    out = Values({}, {}, problems)
    _flatten(doc, (), "", path, ypos, out)
    if out.dotted:  # otherwise every group is a mapping of the file: none is also a value
        _check_parents(out, path)
    return out


def _flatten(node: dict[str, Any], ypath: tuple[Any, ...], prefix: str, file: str,
             ypos: Mapping[tuple[Any, ...], Position], out: Values) -> None:
    for seg, value in node.items():
        kpath = ypath + (seg,)
        pos = ypos.get(kpath) or Position(file, 1, 1)
        key = f"{prefix}.{seg}" if prefix else seg
        bad = None if seg in (_GOOD_INNER if prefix else _GOOD_TOP) else \
            _segment_problem(seg, not prefix, out)
        if bad:
            code, message = bad
            out.problems.append(Problem(file, pos.line, pos.column, code, message, key))
            continue
        if isinstance(value, dict) and value:
            out.groups.setdefault(key, pos)
            _flatten(value, kpath, key, file, ypos, out)
            continue
        if len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
            out.problems.append(Problem(file, pos.line, pos.column, "key-too-long",
                                        f"key is {len(key.encode())} bytes; the limit is "
                                        f"{MAX_KEY_BYTES}", key[:80] + "…"))
            continue
        size = _value_size(value)
        if size > MAX_VALUE_BYTES:
            out.problems.append(Problem(file, pos.line, pos.column, "value-too-large",
                                        f"value is {size} bytes as JSON; the limit is "
                                        f"{MAX_VALUE_BYTES}", key))
            continue
        if key in out.values:
            first = out.positions[key]
            out.problems.append(Problem(file, pos.line, pos.column, "key-collision",
                                        f"{key!r} is also written at line {first.line}; "
                                        "two spellings of one key", key))
            continue
        out.values[key] = value
        out.positions[key] = pos


# Key segments already found well-formed (as a top-level key, and below one): files of one
# repository share most of their key names, checked once per process.
_GOOD_TOP: set[str] = set()
_GOOD_INNER: set[str] = set()
_GOOD_MAX = 65536


def _segment_problem(seg: str, top: bool, out: Values | None = None) -> tuple[str, str] | None:
    """`_first_segment_problem`, remembering a good segment; one with a dot in it is not
    remembered, so that each file that writes one is marked `dotted`."""
    problem = _first_segment_problem(seg, top)
    if "." in seg:
        if out is not None:
            out.dotted = True
        return problem
    good = _GOOD_TOP if top else _GOOD_INNER
    if problem is None and len(good) < _GOOD_MAX:
        good.add(seg)
    return problem


def _first_segment_problem(seg: str, top: bool) -> tuple[str, str] | None:
    if seg == "" or seg.startswith(".") or seg.endswith(".") or ".." in seg:
        return "bad-key", f"key {seg!r} has an empty segment"
    if "/" in seg:
        return "bad-key", f"key {seg!r} contains '/', which would change the etcd path"
    if _CONTROL.search(seg):
        return "bad-key", f"key {seg!r} contains a control character"
    if top and seg.startswith("_"):
        return "reserved-key", (f"key {seg!r}: top-level keys starting with '_' are reserved "
                                "(_system, _meta, ...)")
    return None


def key_problem(key: str) -> tuple[str, str] | None:
    """(code, message) when a flattened key breaks the format's rules (SPEC §2), else None:
    the same rules the loader applies, for keys that come from elsewhere (an override)."""
    for i, seg in enumerate(key.split(".")):
        bad = _segment_problem(seg, top=i == 0)
        if bad:
            return bad
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return "key-too-long", f"key is {len(key.encode())} bytes; the limit is {MAX_KEY_BYTES}"
    return None


def value_problem(value: JSON) -> tuple[str, str] | None:
    size = _value_size(value)
    if size > MAX_VALUE_BYTES:
        return "value-too-large", f"value is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}"
    return None


def _value_size(value: JSON) -> int:
    if isinstance(value, str):
        if len(value) * 6 < MAX_VALUE_BYTES:  # cannot exceed even if every char were escaped
            return len(value)
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if isinstance(value, (list, dict)):
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return 0


def _check_parents(out: Values, file: str) -> None:
    """`a: 1` beside `"a.b": 2` makes `a` both a value and a parent: refuse the later one."""
    keys = out.values
    for key in [k for k in keys if "." in k]:
        if key not in keys:
            continue  # refused already, as the later of another pair
        parent = nearest_parent_in(key, keys)
        if parent is None:
            continue
        a, b = out.positions[parent], out.positions[key]
        later, other, at = (key, parent, a) if (b.line, b.column) > (a.line, a.column) \
            else (parent, key, b)
        pos = out.positions[later]
        out.problems.append(Problem(file, pos.line, pos.column, "key-collision",
                                    f"{later!r} conflicts with {other!r} at line {at.line}: "
                                    "a key cannot be both a value and a group", later))
        del keys[later]
        del out.positions[later]


def merge_base(base: Values, env: Values) -> tuple[dict[str, JSON], dict[str, Position]]:
    """`_base.yaml` deep-merged under an environment (SPEC §2), computed on flattened keys:
    the environment's value wins, a value on either side replaces a whole group on the other,
    and an empty mapping (`{}`) in the environment keeps the base's keys beneath it."""
    if not base.values:
        return env.values, env.positions
    env_keys = env.values
    env_parents = all_parents(env_keys)
    base_parents = all_parents(base.values)
    values: dict[str, JSON] = {}
    positions: dict[str, Position] = {}
    for k, v in base.values.items():
        if k in env_keys or k in env_parents:
            continue  # the environment's value, or its group, replaces the base's
        # an environment value (other than `{}`) replaces the base group it names
        if any(p in env_keys and not (isinstance(env_keys[p], dict) and not env_keys[p])
               for p in parents(k)):
            continue
        values[k] = v
        positions[k] = base.positions[k]
    for k, v in env_keys.items():
        if isinstance(v, dict) and not v and k in base_parents:
            continue  # env `{}` merged with a base group leaves the base's keys
        values[k] = v
        positions[k] = env.positions[k]
    return values, positions


# ---------------------------------------------------------------------------------------------
# the whole repository


@dataclass
class LoadOptions:
    services: Collection[str] | None = None  # None: every service
    environments: Collection[str] | None = None
    encode: bool = False  # also encode each value as JSON (for deploys; validate needs none)
    # check the shared schemas themselves too (python-jsonschema: 0.1-0.2 s to import); a pass
    # ignores those problems and meets a shared schema only through a service schema's $ref,
    # which compiling that schema follows and checks
    check_shared: bool = True


def selected_services(layout: Layout, names: Collection[str] | None) -> list[ServiceFiles]:
    """The services of `layout` named in `names` (None: all), in name order; a few named
    ones are looked up, not found by going through the whole layout (a daemon's one-key
    cycle in a repository of 10,000 services)."""
    if names is None:
        return [s for _, s in sorted(layout.services.items())]
    return [layout.services[n] for n in sorted(names) if n in layout.services]


def iter_units(tree: Tree, layout: Layout, options: LoadOptions | None = None,
               schemas_out: dict[str, ServiceSchema] | None = None,
               ) -> Iterator[tuple[DesiredUnit | None, list[Problem]]]:
    """Yield each unit with its problems, one service at a time; a service-level problem with
    no unit to carry it (a broken `_base.yaml` of a service without environments) comes as
    `(None, problems)`. Shared-schema problems come first, as `(None, problems)`."""
    options = options or LoadOptions()
    schemas = SchemaSet(layout.settings)
    compact_meta = meta_check("compact-schema.json")
    shared_problems: list[Problem] = []
    if layout.shared_schemas:
        docs = []
        for path, raw in tree.read(layout.shared_schemas):
            doc, pos, problems = _load_doc(path, raw, item_positions=True)
            shared_problems.extend(problems)
            if doc is not None:
                schemas.add_shared(path, doc)
                docs.append((path, doc, pos))
        for path, doc, pos in docs if options.check_shared else ():
            shared_problems.extend(schemas.check_shared(path, doc, pos))
    if shared_problems:
        yield None, shared_problems

    selected = selected_services(layout, options.services)
    order: list[str] = []
    for svc in selected:
        envs = {e: p for e, p in svc.envs.items()
                if options.environments is None or e in options.environments}
        svc_paths = [p for p in (svc.schema, svc.base) if p] + list(envs.values())
        order.extend(svc_paths)
    contents = tree.read(order)
    for svc in selected:
        envs = {e: p for e, p in svc.envs.items()
                if options.environments is None or e in options.environments}
        svc_raw: dict[str, bytes] = {}
        for _ in range(len([p for p in (svc.schema, svc.base) if p]) + len(envs)):
            path, data = next(contents)
            svc_raw[path] = data
        yield from _service_units(svc, envs, svc_raw, schemas, compact_meta, schemas_out,
                                  bool(shared_problems), options.encode)


def _mark_secret_lines(problems: list[Problem], schema: ServiceSchema | None,
                       has_schema: bool, unparsed: set[str]) -> list[Problem]:
    """Which problems' source lines may hold a secret (renderers then hide the value): those
    at a secret key, and, when the service may have secrets (its schema says so, or it has a
    schema that did not compile), those at no key in a file that did not parse, where nothing
    tells which key the line holds (`token: "hunter2` with its quote unclosed)."""
    may_hold = schema.has_secrets if schema is not None else has_schema
    if not may_hold:
        return problems
    return [replace(p, secret=True)
            if (p.key and schema is not None and schema.is_secret(p.key))
            or (p.key is None and p.file in unparsed) else p
            for p in problems]


def _service_units(svc: ServiceFiles, envs: dict[str, str], raw: dict[str, bytes],
                   schemas: SchemaSet, compact_meta: ErrorSource,
                   schemas_out: dict[str, ServiceSchema] | None, shared_broken: bool,
                   encode: bool = False) -> Iterator[tuple[DesiredUnit | None, list[Problem]]]:
    service_problems: list[Problem] = []
    schema: ServiceSchema | None = None
    if svc.schema:
        doc, pos, problems = _load_doc(svc.schema, raw[svc.schema], item_positions=True)
        if problems:
            service_problems.extend(problems)
        elif doc is None:
            service_problems.append(Problem(svc.schema, 1, 1, "schema", "schema file is empty"))
        else:
            schema, problems = schemas.compile(svc.name, svc.schema, doc, pos, compact_meta)
            service_problems.extend(problems)
            if schema is not None and schemas_out is not None:
                schemas_out[svc.name] = schema
    base = load_values(svc.base, raw[svc.base]) if svc.base else Values({}, {}, [])
    service_problems.extend(base.problems)
    if not envs:
        if service_problems:
            yield None, service_problems
        return
    files_common = tuple(p for p in (svc.schema, svc.base) if p)
    for env, path in sorted(envs.items()):
        values = load_values(path, raw[path])
        merged, positions = merge_base(base, values)
        unparsed = {f for f, v in ((path, values), (svc.base, base)) if f and not v.parsed}
        problems = _mark_secret_lines(list(service_problems) + values.problems, schema,
                                      bool(svc.schema), unparsed)
        if schema is not None and values.parsed and base.parsed:
            problems.extend(validate_values(schema, merged, positions, path,
                                            groups={**base.groups, **values.groups}))
        unit = DesiredUnit(
            unit=UnitId(svc.name, env),
            values=merged,
            positions=positions,
            files=(path, *files_common),
            secret_keys=schema.secret_keys_of(merged) if schema else frozenset(),
            problems=problems,
            # encoded here, where parsing happens (in worker processes for large applies)
            encoded={k: dumps_value(v) for k, v in merged.items()} if encode else {},
        )
        if shared_broken and svc.schema:
            unit.problems.append(Problem(svc.schema, 1, 1, "schema",
                                         "shared schemas under schemas/ are invalid"))
        yield unit, problems


def load_desired(tree: Tree, options: LoadOptions | None = None,
                 layout: Layout | None = None) -> DesiredState:
    """The whole (or the selected part of the) repository as one `DesiredState`."""
    layout = layout or read_layout(tree)
    schemas: dict[str, ServiceSchema] = {}
    units: dict[UnitId, DesiredUnit] = {}
    problems: dict[Problem, None] = dict.fromkeys(layout.problems)
    for unit, unit_problems in iter_units(tree, layout, options, schemas_out=schemas):
        problems.update(dict.fromkeys(unit_problems))
        if unit is not None:
            units[unit.unit] = unit
    return DesiredState(
        units=units,
        schemas={name: s.compiled for name, s in schemas.items()},
        problems=list(problems),
        files=layout.files,
        settings=layout.settings,
    )
