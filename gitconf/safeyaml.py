"""Safe YAML with positions: libyaml composes nodes, and we build JSON values from them ourselves.

Why not `yaml.safe_load`: it silently keeps the last of duplicate keys, turns timestamps into
`datetime`, accepts `!!binary`/`!!set`, loses every line number, and expands alias bombs until
memory runs out. Building from the node graph lets us refuse each of those with a position, at
the speed of the C composer.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .fastclass import dataclass
from .model import Position, Problem

Path = tuple[Any, ...]

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = _T + "str", _T + "int", _T + "float", _T + "bool", _T + "null"
TIMESTAMP, SEQ, MAP, MERGE = _T + "timestamp", _T + "seq", _T + "map", _T + "merge"
VALUE = _T + "value"  # YAML 1.1 resolves a plain `=` to this; YAML 1.2 and other tools: a string

MAX_DEPTH = 128
MAX_FILE_BYTES = 16 * 1024 * 1024
# Alias expansion: a document may build BUDGET_FLOOR nodes, or BUDGET_FACTOR times the nodes it
# writes, whichever is more. Counted against written nodes, not bytes, so padding a small bomb
# with a comment buys it nothing.
BUDGET_FLOOR = 200_000
BUDGET_FACTOR = 20
# Integers are JSON only while Python can print them (4300 digits, CPython's default int/str
# conversion limit); a literal much longer than that is refused before it is converted
# (sexagesimal `1:00:00:...` converts in quadratic time).
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")  # YAML 1.1 reads these as Python's int() does
_MAX_INT_TEXT = 4 * MAX_INT_DIGITS
# a number as JSON writes it (RFC 8259 §6), and the constants Python's `json` reads but JSON
# has not: a `.json` file read by the YAML reader keeps JSON's meaning for both
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_JSON_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})


class _Stop(Exception):
    """Abandons a document whose expansion is out of bounds (alias bombs, runaway nesting)."""


@dataclass
class LoadedYaml:
    data: Any
    positions: dict[Path, Position]  # mapping key (and, on request, item) paths -> where written
    problems: list[Problem] = field(default_factory=list)


def decode(raw: bytes, file: str) -> tuple[str | None, Problem | None]:
    """UTF-8 only (a BOM is allowed); a bad byte is reported where it stands."""
    if len(raw) > MAX_FILE_BYTES:
        return None, Problem(file, 1, 1, "file-too-large",
                             f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Problem(file, line, column, "encoding",
                             f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def json_number(text: str) -> tuple[int | float | None, str | None]:
    """What JSON makes of a bare token: `(number, None)`; `(None, why)` for a number or constant
    JSON has no value for (`1e400` overflows to infinity, `NaN`, an integer too long to print);
    `(None, None)` for anything else. One rule for the YAML reader of `.json` files and for the
    JSON parser's fallback, so a `.json` file means the same whichever reads it."""
    if text in _JSON_CONSTANTS:
        return None, f"{text!r} has no JSON representation"
    m = _JSON_NUMBER.fullmatch(text)
    if m is None:
        return None, None
    if m.group(1) is None and m.group(2) is None:
        if len(text.lstrip("-")) > MAX_INT_DIGITS:
            return None, _too_long(text)
        return int(text), None
    value = float(text)
    if math.isinf(value):
        return None, _no_json_float(text)
    return value, None


PRESCAN_BOUND = 5_000  # nesting libyaml's recursive composer survives (it crashes past ~20,000)


def _nesting_bound(text: str) -> int:
    """How deep `text` could nest at most: every level of a sequence or mapping, flow or block,
    takes at least one of these characters."""
    return sum(text.count(c) for c in "[{-:?")


def _too_deep(text: str, file: str) -> Problem | None:
    """Refuse runaway nesting before libyaml's recursive composer sees it (it crashes the process
    somewhere past 20,000 levels). Every level needs an indicator character, so counting them is
    a cheap bound (`_nesting_bound`); only a document over it pays for an event-level scan."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
                return Problem(file, line, col, "nesting-too-deep",
                               f"nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return None


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """libyaml's syntax error, said where the mistake is: an unclosed quote where it opened
    (libyaml reports the end of the file), a tab in indentation as such."""
    msg = " ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and "quoted scalar" in str(exc.context or ""):
        mark = exc.context_mark
        msg = "a quoted value opened here is never closed (" + msg + ")"
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        msg = "a tab character: YAML indents with spaces only (" + msg + ")"
    # libyaml >= 0.2.5 (PyYAML 6.0.4 wheels) stops runaway nesting itself, as a syntax error
    code = "nesting-too-deep" if "maximum nesting depth" in msg else "yaml-syntax"
    return Problem(file, line, col, code, msg)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line + 1)
    return lines[line][column:column + 1] if line < len(lines) else ""


_PLAIN_TAGS: dict[str, str] = {}  # a plain scalar's text -> the tag YAML 1.1 resolves it to
_PLAIN_TAGS_MAX = 65536
_PLAIN_TEXT_MAX = 64  # longer texts are rarely repeated: resolved each time, not kept


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader, remembering how each short plain scalar resolves. libyaml calls
    the (Python) resolver for every node it composes, a third of a large file's load; values
    and keys repeat across a repository's files (`true`, `8080`, `host`). Without path
    resolvers, which the safe loader has none of, a plain scalar's tag is a function of its
    text alone, so the remembered answer is the resolver's."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode or not implicit[0] or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        tag = _PLAIN_TAGS.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(value) <= _PLAIN_TEXT_MAX and len(_PLAIN_TAGS) < _PLAIN_TAGS_MAX:
                _PLAIN_TAGS[value] = tag
        return tag


@functools.cache
def _libyaml_limits_nesting() -> bool:
    """libyaml 0.2.5+ (PyYAML 6.0.4 wheels) refuses flow and block nesting past 1000 levels by
    itself, which makes the pre-scan (a full extra parse of every large file) unnecessary.
    Asked once per process, and only for a text that could nest that deep (~8 ms)."""
    for probe in ("[" * 1100, "- " * 1100 + "x"):
        try:
            yaml.CSafeLoader(probe).get_single_node()
        except yaml.MarkedYAMLError as exc:
            if "maximum nesting depth" not in str(exc.problem):
                return False
        else:
            return False
    return True


def load(text: str, file: str, item_positions: bool = False,
         json_scalars: bool = False) -> LoadedYaml:
    """Compose one document with libyaml and build plain JSON values, collecting problems.

    `json_scalars` is for `.json` files the JSON parser refused: an unquoted scalar that YAML 1.1
    takes for text but JSON for a number (`1e5`, `1e400`) or a constant (`NaN`) keeps JSON's
    meaning, so `1e400` is a `not-json` problem where it is written, never the string "1e400"."""
    deep = None
    if _nesting_bound(text) > PRESCAN_BOUND and not _libyaml_limits_nesting():
        try:
            deep = _too_deep(text, file)
        except yaml.YAMLError:
            pass  # the composer below reports the syntax error with its position
    if deep is not None:
        return LoadedYaml(None, {}, [deep])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return LoadedYaml(None, {}, [_syntax_problem(exc, text, file)])
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control, U+FFFE)
        line, col = _offset_position(text, exc.position)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return LoadedYaml(None, {}, [Problem(file, line, col, "yaml-syntax",
                                             f"character {char} is not allowed in YAML: "
                                             f"{exc.reason}")])
    except yaml.YAMLError as exc:  # pragma: no cover - libyaml reports marks for all we know
        return LoadedYaml(None, {}, [Problem(file, 1, 1, "yaml-syntax", str(exc))])
    except RecursionError:
        return LoadedYaml(None, {}, [Problem(file, 1, 1, "nesting-too-deep",
                                             "document nests too deeply to be configuration")])
    finally:
        loader.dispose()
    if node is None:
        return LoadedYaml(None, {}, [])  # an empty document
    builder = _Builder(loader, file, node, item_positions=item_positions,
                       json_scalars=json_scalars)
    try:
        data = builder.build(node, (), 0)
    except _Stop:
        return LoadedYaml(None, builder.positions, builder.problems)
    return LoadedYaml(data, builder.positions, builder.problems)


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    """Line and column (1-based, in characters) of libyaml's byte offset into the UTF-8 text."""
    before = text.encode("utf-8")[:max(offset, 0)].decode("utf-8", "ignore")
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


class _Builder:
    def __init__(self, loader: yaml.CSafeLoader, file: str, root: Node, item_positions: bool,
                 json_scalars: bool = False):
        self.loader = loader
        self.json_scalars = json_scalars
        self.file = file
        self.root = root
        self.budget = BUDGET_FLOOR
        self.counted = False  # the written nodes are counted only if the floor runs out
        self.item_positions = item_positions
        self.positions: dict[Path, Position] = {}
        self.problems: list[Problem] = []
        # an aliased node is one node object: its scalar is converted (and any problem with it
        # reported) once, and its position made once, however often aliases expand it
        self._scalars: dict[int, Any] = {}
        self._reported: set[tuple[int, str]] = set()

    def pos(self, node: Node) -> Position:
        mark = node.start_mark  # cheaper to compute than to cache (one per key)
        return Position(self.file, mark.line + 1, mark.column + 1)

    def problem(self, node: Node, code: str, message: str, path: Path = ()) -> None:
        if (id(node), code) in self._reported:
            return  # the same written node, reached again through an alias
        self._reported.add((id(node), code))
        key = ".".join(str(p) for p in path) if path else None
        p = self.pos(node)
        self.problems.append(Problem(self.file, p.line, p.column, code, message, key))

    def enter(self, node: Node, path: Path, depth: int) -> None:
        """Every node built, and every mapping merged in, costs budget and a level of depth, so
        no alias graph (`&x {<<: *x}` included) expands without bound."""
        self.budget -= 1
        if self.budget < 0 and not self.counted:
            self.counted = True
            self.budget += BUDGET_FACTOR * _written_nodes(self.root) - BUDGET_FLOOR
        if self.budget < 0:
            self.problem(node, "alias-bomb",
                         "aliases expand this document beyond any configuration's size "
                         "(a YAML bomb?); loading stopped")
            raise _Stop
        if depth > MAX_DEPTH:
            self.problem(node, "nesting-too-deep", f"nesting deeper than {MAX_DEPTH} levels", path)
            raise _Stop

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.enter(node, path, depth)
        if isinstance(node, ScalarNode):
            if id(node) in self._scalars:
                return self._scalars[id(node)]
            value = self._scalars[id(node)] = self.scalar(node, path)
            return value
        if isinstance(node, SequenceNode):
            if node.tag != SEQ:
                self.problem(node, "unsafe-tag", f"tag {node.tag!r} is not allowed; "
                             "values are plain JSON", path)
                return None
            out = []
            for i, item in enumerate(node.value):
                ipath = path + (i,)
                if self.item_positions:
                    self.positions[ipath] = self.pos(item)
                out.append(self.build(item, ipath, depth + 1))
            return out
        assert isinstance(node, MappingNode)
        if node.tag != MAP:
            self.problem(node, "unsafe-tag", f"tag {node.tag!r} is not allowed; "
                         "values are plain JSON", path)
            return None
        return self.mapping(node, path, depth)

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[Node] = []
        for knode, vnode in node.value:
            if knode.tag == MERGE:
                merges.append(vnode)
                continue
            if not isinstance(knode, ScalarNode) or not _is_text(knode):
                shown = _shorten(knode.value) if isinstance(knode, ScalarNode) \
                    else "a collection"
                self.problem(knode, "non-string-key",
                             f"mapping key {shown!r} is not a string "
                             f"({knode.tag.rsplit(':', 1)[-1]}); quote it", path)
                continue
            key = knode.value
            if key in seen:
                self.problem(knode, "duplicate-key",
                             f"duplicate key {key!r} (first defined at line {seen[key]})",
                             path + (key,))
                continue
            seen[key] = knode.start_mark.line + 1
            kpath = path + (key,)
            self.positions[kpath] = self.pos(knode)
            out[key] = self.build(vnode, kpath, depth + 1)
        for merge in merges:  # `<<: *defaults`: explicit keys win, earlier merges win
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for src in sources:
                if not isinstance(src, MappingNode):
                    self.problem(src, "yaml-syntax", "a merge key (<<) takes a mapping or a "
                                 "list of mappings", path)
                    continue
                self.enter(src, path, depth + 1)
                merged = self.mapping(src, path, depth + 1)
                for k, v in merged.items():
                    out.setdefault(k, v)
        return out

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        tag = node.tag
        if tag == STR or _is_text(node):  # the common case first: most values are text
            if self.json_scalars and not node.style and tag == STR:  # plain: None or ""
                return self.json_plain(node, path)
            return node.value
        if tag == NULL:
            return None
        if tag == TIMESTAMP:
            return node.value  # timestamps stay as the text the author wrote
        if tag == INT:
            return self.integer(node, path)
        if tag in (BOOL, FLOAT):
            try:  # an explicit tag on text it does not fit: `!!bool maybe`, `!!float x`
                value = (self.loader.construct_yaml_bool(node) if tag == BOOL
                         else self.loader.construct_yaml_float(node))
            except (ValueError, KeyError, IndexError):
                return self.bad_value(node, path)
            if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
                self.problem(node, "not-json", _no_json_float(node.value), path)
                return None
            return value
        self.problem(node, "unsafe-tag", f"tag {tag!r} is not allowed; values are plain JSON", path)
        return None

    def json_plain(self, node: ScalarNode, path: Path) -> Any:
        """An unquoted scalar of a `.json` file that YAML 1.1 resolved to text: JSON's number
        (or refusal) where JSON has one, else the text (a YAML-only spelling, read as YAML)."""
        value, why = json_number(node.value)
        if why is not None:
            self.problem(node, "not-json", why, path)
            return None
        return node.value if value is None else value

    def integer(self, node: ScalarNode, path: Path) -> Any:
        text = node.value
        if len(text) < 19 and _DECIMAL.match(text):  # the common spelling: `8080`, `-1`
            return int(text)
        if len(text) > _MAX_INT_TEXT:
            self.problem(node, "not-json", _too_long(text), path)
            return None
        try:
            value = self.loader.construct_yaml_int(node)
        except (ValueError, IndexError):
            if self.loader.resolve(ScalarNode, text, (True, False)) == INT:
                # a well-formed literal that only Python's int/str digit limit refuses
                self.problem(node, "not-json", _too_long(text), path)
                return None
            return self.bad_value(node, path)
        if not -_INT_BOUND < value < _INT_BOUND:
            self.problem(node, "not-json", _too_long(text), path)
            return None
        return value

    def bad_value(self, node: ScalarNode, path: Path) -> None:
        kind = node.tag.rsplit(":", 1)[-1]
        self.problem(node, "bad-value", f"{_shorten(node.value)!r} is not a valid {kind} "
                     f"(tagged !!{kind}); remove the tag or fix the value", path)


def _written_nodes(root: Node) -> int:
    """The nodes of the document as written: each aliased node once."""
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            continue
        children = node.value if isinstance(node, SequenceNode) else \
            [n for pair in node.value for n in pair]
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


def _is_text(node: ScalarNode) -> bool:
    """A string scalar; a plain `=` (YAML 1.1's `!!value`) is the one-character string too."""
    return node.tag == STR or (node.tag == VALUE and node.value == "=")


def _no_json_float(text: str) -> str:
    """`.inf` and `.nan` are no JSON value; `1.0e+400` is a number too large for one."""
    if any(word in text.lower() for word in ("inf", "nan")):
        return f"{_shorten(text)!r} has no JSON representation"
    return f"{_shorten(text)!r} is beyond the range of a JSON number (it reads as infinity)"


def _too_long(text: str) -> str:
    return (f"integer {_shorten(text)!r} is too long to be a JSON number here (more than "
            f"{MAX_INT_DIGITS} digits)")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
