"""Edit a YAML values file in place, so that a follow-up pull request shows only the edited lines.

An emergency override (SPEC §5) changes keys in etcd; the follow-up pull request must change the
same keys in `<service>/<environment>.yaml` and nothing else: comments, key order, quoting,
indentation, blank lines, flow mappings, CRLF line endings, the final newline and every other
byte stay as they are. Round-tripping through a YAML library cannot promise that, so this module
patches text.

How it works:

- The file is parsed with libyaml (`yaml.parse(..., Loader=yaml.CSafeLoader)`) into a small node
  tree of our own that records each node's character span. We compose from events rather than
  with `yaml.compose` because the composer turns every alias into the anchored node itself and
  so loses where the alias was written; we need that to edit `key: *alias` in place and to tell
  whether an anchored value is shared.
- A flattened dotted key (`database.pool_size`) is looked up along the nested path and along
  literal dotted spellings (`"database.pool_size": 1`, `{"a.b": {"c": 1}}`). An edit acts on
  that entry: setting a key that holds a mapping replaces the whole mapping. Keys under it
  written elsewhere as literal dotted keys (`a: 1` beside `a.b: 2`) are separate entries, as
  they are separate keys in etcd, and are left alone.
- An existing value is replaced by rewriting only its span; a value that spans several lines (a
  block mapping, sequence or block scalar) is replaced by one line written after the key.
- A missing key is inserted by text, not by ruamel.yaml: a new line (or nested lines, indented
  as that mapping's keys and with the file's indentation step) after the last entry of the
  deepest existing mapping on its path, or `, key: value` inside a flow mapping. Where a prefix
  of the key already holds something that is not a mapping written in this file (a scalar, a
  list, an alias, a mapping merged in with `<<`), the rest is written as a literal dotted key,
  which is what the flattened form means.
- New values are rendered on one line: scalars in a style that YAML 1.1 reads back as exactly
  that JSON value (the old quote style is kept where it can represent the new string), lists
  and mappings in flow style.
- Merge keys: explicit keys win over `<<`, so overriding a merged key inserts an explicit key
  into the mapping that uses the merge. Removing a merged key is impossible in this file and
  raises `EditError`.
- Anchors: a value (or a mapping on its path) that is anchored and reused by an alias elsewhere
  is refused: editing it would change the other keys too. `key: *alias` itself is replaced.
- `unset_key` removes the entry's lines (the whole entry, block value included). A mapping left
  empty is removed as well rather than left as `parent: {}`, because `{}` is itself a leaf key
  (SPEC §2) and would put a key into etcd that the override did not. Its comment lines stay
  where they were, and a comment at the end of a removed `parent:` line is kept as a comment
  line: an unset never removes a comment except those on the removed entry's own lines.
- Safety net: the result is loaded again and its flattened values must equal the old ones with
  exactly the requested edits applied (types compared strictly), else `EditError`. This module
  never returns a file that means something other than what was asked.

Pure: no I/O, no subprocesses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import field
from typing import Any

import yaml

from .fastclass import dataclass
from .model import JSON, UNSET, Unset  # UNSET ("remove this key") is shared with overrides


class EditError(Exception):
    """An edit that cannot be made safely; `message` says why, naming the file (and line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# `UNSET`, an `apply_edits` value meaning "remove this key", lives with the typed records
# (`model`): overrides use it too, without importing this module

MAX_EXPANDED_NODES = 2_000_000  # alias bombs: refuse before `yaml.load` expands them
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INDICATORS = set(",[]{}#&*!|>'\"%@`")
_ANCHOR_PREFIX = re.compile(r"&[^\s,\[\]{}]+[ \t]+")
_BLOCK_HEADER = re.compile(r"(?:[&!][^\s]*\s+)*[|>]([0-9+-]*)")


# --------------------------------------------------------------------------- public API


def set_key(text: str, key: str, value: JSON, *, file: str = "<file>") -> str:
    """Return `text` with the flattened `key` set to `value`: the value of its entry (with all
    that is nested in it) is replaced, or a new entry is inserted where the key belongs."""
    return apply_edits(text, {key: value}, file=file)


def unset_key(text: str, key: str, *, file: str = "<file>") -> str:
    """Return `text` without the entry of the flattened `key` (and all nested in it); a mapping
    left empty goes too. EditError if the file has no entry for the key."""
    return apply_edits(text, {key: UNSET}, file=file)


def apply_edits(text: str, edits: Mapping[str, JSON | Unset], *, file: str = "<file>") -> str:
    """Apply several edits in order (`UNSET` removes a key) and verify the result as a whole.

    Each edit is made on a fresh parse of the previous result, so positions are always exact;
    the verification compares the final file with the original one plus all the edits.
    """
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    doc = _parse(body, file)
    expected = dict(doc.flat)
    for key, value in edits.items():
        _check_key(key, file)
        if value is UNSET:
            new, replaced = _unset_one(doc, key)
        else:
            _check_json(value, key, file)
            new, replaced = _set_one(doc, key, value)
        _expect(expected, key, value, replaced)
        new = _keep_final_newline(doc.text, new, doc.nl)
        try:
            doc = _parse(new, file)
        except EditError as exc:
            raise EditError(f"{file}: editing {key!r} would make the file invalid "
                            f"({exc.message}); edit it by hand") from None
    _verify(expected, doc.flat, list(edits), file)
    return bom + doc.text


# --------------------------------------------------------------------------- parsing


@dataclass(eq=False)
class _Node:
    """One YAML node with its character span in the text (`end` is exclusive)."""

    kind: str  # "scalar" | "seq" | "map" | "alias"
    start: int
    end: int
    style: str = ""  # scalar style: "", "'", '"', "|", ">"
    flow: bool = False  # a flow collection
    value: str = ""  # scalar text, or an alias's anchor name
    anchor: str | None = None
    tag: str | None = None
    items: list[_Node] = field(default_factory=list)
    pairs: list[tuple[_Node, _Node]] = field(default_factory=list)
    parent: _Node | None = None
    key: _Node | None = None  # for a mapping's value: its key node
    size: int = 1  # nodes after alias expansion


@dataclass
class _Doc:
    """A parsed file: the text, its node tree, where aliases are, and its flattened values."""

    text: str
    file: str
    root: _Node | None
    aliases: dict[str, list[int]]  # anchor name -> start index of every alias to it
    data: Any
    flat: dict[str, Any]
    nl: str


def _parse(text: str, file: str) -> _Doc:
    """Parse and load `text`; every reason not to touch the file becomes an EditError."""
    _check_text(text, file)
    try:
        root, aliases = _compose(text, file)
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
        raise EditError(f"{file}:{line}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise EditError(f"{file}: not valid YAML: {exc}") from None
    except RecursionError:
        raise EditError(f"{file}: nested too deeply to edit") from None
    if root is not None and root.kind != "map" and not _is_empty_scalar(root):
        raise EditError(f"{file}:{_line(text, root.start)}: the top level is not a mapping")
    try:
        flat = _flatten(data, file)
    except RecursionError:
        raise EditError(f"{file}: nested too deeply to edit") from None
    nl = "\r\n" if "\r\n" in text[: text.find("\n") + 1] else "\n"
    return _Doc(text, file, root, aliases, data, flat, nl)


def _check_text(text: str, file: str) -> None:
    """Refuse what line-based editing cannot handle: tabs in indentation, lone CR line ends."""
    for number, line in enumerate(text.split("\n"), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise EditError(f"{file}:{number}: a tab in the indentation; gitconf edits only "
                            "space-indented YAML")
        if "\r" in (line[:-1] if line.endswith("\r") else line):
            raise EditError(f"{file}:{number}: a carriage return that does not end a line; "
                            "only LF or CRLF line endings can be edited")


def _compose(text: str, file: str) -> tuple[_Node | None, dict[str, list[int]]]:
    """Build the node tree from libyaml events (see the module docstring for why)."""
    root: _Node | None = None
    stack: list[_Node] = []
    pending: list[_Node | None] = []  # per open mapping: a key waiting for its value
    aliases: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    documents = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                line = _line(text, _index(event.start_mark))
                raise EditError(f"{file}:{line}: a second YAML document; a values file holds "
                                "exactly one")
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = stack.pop()
            pending.pop()
            done.end = _index(event.end_mark)
            if done.anchor is not None:
                sizes[done.anchor] = done.size
            if stack:
                _grow(stack[-1], done.size, file)
            continue
        node = _event_node(event, aliases, sizes)
        if node is None:
            continue
        if stack:
            _attach(stack[-1], pending, node)
            if node.kind in ("scalar", "alias"):
                _grow(stack[-1], node.size, file)
        else:
            root = node
        if node.kind in ("map", "seq"):
            stack.append(node)
            pending.append(None)
        elif node.anchor is not None:
            sizes[node.anchor] = node.size
    return root, aliases


def _event_node(event: yaml.Event, aliases: dict[str, list[int]],
                sizes: dict[str, int]) -> _Node | None:
    """The node an event starts, or None for stream/document events."""
    start, end = _index(event.start_mark), _index(event.end_mark)
    if isinstance(event, yaml.ScalarEvent):
        return _Node("scalar", start, end, style=event.style or "", value=event.value,
                     anchor=event.anchor, tag=event.tag)
    if isinstance(event, yaml.AliasEvent):
        name = event.anchor or ""
        aliases.setdefault(name, []).append(start)
        return _Node("alias", start, end, value=name, size=sizes.get(name, 1))
    if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
        kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
        return _Node(kind, start, end, flow=bool(event.flow_style), anchor=event.anchor,
                     tag=event.tag)
    return None


def _index(mark: Any) -> int:
    """A mark's character index (libyaml gives every event marks; the stubs allow None)."""
    return int(mark.index) if mark is not None else 0


def _attach(parent: _Node, pending: list[_Node | None], node: _Node) -> None:
    """Hang `node` under the open collection: a sequence item, a mapping key or its value."""
    node.parent = parent
    if parent.kind == "seq":
        parent.items.append(node)
    elif pending[-1] is None:
        pending[-1] = node
    else:
        key = pending[-1]
        node.key = key
        parent.pairs.append((key, node))
        pending[-1] = None


def _grow(parent: _Node, size: int, file: str) -> None:
    """Count expanded nodes so that an alias bomb is refused before anything expands it."""
    parent.size += size
    if parent.size > MAX_EXPANDED_NODES:
        raise EditError(f"{file}: aliases expand this file beyond any configuration's size "
                        "(a YAML bomb?)")


def _flatten(data: Any, file: str) -> dict[str, Any]:
    """Flatten loaded YAML as gitconf does: nested mappings to dotted keys, `{}` is a leaf."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EditError(f"{file}: the top level is not a mapping")
    out: dict[str, Any] = {}
    _flatten_into(out, "", data, file)
    return out


def _flatten_into(out: dict[str, Any], prefix: str, mapping: dict[Any, Any], file: str) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise EditError(f"{file}: mapping key {key!r} under {prefix or 'the top level'!r} "
                            "is not a string; quote it")
        flat_key = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            _flatten_into(out, flat_key, value, file)
            continue
        if flat_key in out:
            raise EditError(f"{file}: key {flat_key!r} is written twice (nested and as a "
                            "literal dotted key)")
        out[flat_key] = value


# --------------------------------------------------------------------------- locating keys


@dataclass
class _Hit:
    """Where a key is, or where it would go: `mapping` holds it or is its deepest parent."""

    mapping: _Node | None  # None: the file has no document yet
    key: _Node | None = None  # the entry's key node, when the key exists
    value: _Node | None = None
    path: tuple[str, ...] = ()  # key spellings from the root down to `mapping`
    rest: tuple[str, ...] = ()  # missing segments under `mapping` (empty when found)


def _locate(doc: _Doc, key: str) -> _Hit:
    """Find `key` along nested and literal dotted spellings (explicit entries only)."""
    root = doc.root
    if root is None or root.kind != "map":
        return _Hit(None, rest=tuple(key.split(".")))
    hits: list[_Hit] = []
    partials: list[_Hit] = []
    _search(root, key, (), hits, partials)
    leaves = [h for h in hits if not _is_branch(doc, h)]
    if len(hits) > 1 and len(leaves) == 1:  # `a: {b: {c: 1}}` beside `a.b: 2`: `a.b` is a leaf
        hits = leaves
    if len(hits) > 1:
        lines = ", ".join(str(_line(doc.text, h.key.start)) for h in hits if h.key)
        raise EditError(f"{doc.file}: key {key!r} is written more than once (lines {lines})")
    if hits:
        return hits[0]
    return min(partials, key=lambda h: len(h.rest))


def _is_branch(doc: _Doc, hit: _Hit) -> bool:
    """Whether a found entry holds a non-empty mapping (a prefix of flat keys, not a leaf)."""
    name = hit.key.value if hit.key is not None else ""
    value = _loaded_at(doc.data, hit.path).get(name)
    return isinstance(value, dict) and bool(value)


def _search(mapping: _Node, key: str, path: tuple[str, ...],
            hits: list[_Hit], partials: list[_Hit]) -> None:
    for knode, vnode in mapping.pairs:
        if knode.kind != "scalar" or _is_merge(knode):
            continue
        name = knode.value
        if key == name:
            hits.append(_Hit(mapping, knode, vnode, path))
        elif key.startswith(name + ".") and vnode.kind == "map":
            _search(vnode, key[len(name) + 1:], path + (name,), hits, partials)
    partials.append(_Hit(mapping, path=path, rest=tuple(key.split("."))))


def _is_merge(node: _Node) -> bool:
    return node.kind == "scalar" and (
        node.tag == _MERGE_TAG or (node.value == "<<" and node.style == "" and node.tag is None))


def _is_empty_scalar(node: _Node) -> bool:
    return node.kind == "scalar" and node.style == "" and node.value == "" and node.tag is None


def _loaded_at(data: Any, path: tuple[str, ...]) -> dict[str, Any]:
    """The loaded mapping at an explicit key path (merged keys included)."""
    for name in path:
        data = data.get(name) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _refuse_shared(doc: _Doc, key: str, mapping: _Node | None, value: _Node | None) -> None:
    """Refuse to edit bytes that aliases elsewhere also stand for (they would change too)."""
    node = mapping
    while node is not None:
        _refuse_anchor(doc, key, node, "lies in a mapping")
        node = node.parent
    for inner in _walk(value) if value is not None else ():
        _refuse_anchor(doc, key, inner, "has a value")


def _refuse_anchor(doc: _Doc, key: str, node: _Node, what: str) -> None:
    if node.anchor is None:
        return
    outside = [i for i in doc.aliases.get(node.anchor, []) if not node.start <= i < node.end]
    if outside:
        raise EditError(
            f"{doc.file}:{_line(doc.text, node.start)}: {key!r} {what} anchored as "
            f"&{node.anchor}, which the alias at line {_line(doc.text, outside[0])} reuses; "
            "editing it would change that key too. Edit the file by hand")


# --------------------------------------------------------------------------- set


def _set_one(doc: _Doc, key: str, value: JSON) -> tuple[str, set[str]]:
    """The edited text, and the flat keys the edit replaces (see `_replaced_keys`)."""
    hit = _locate(doc, key)
    _refuse_shared(doc, key, hit.mapping, hit.value)
    replaced = _replaced_keys(doc, key, hit)
    if hit.key is not None and hit.value is not None and hit.mapping is not None:
        return _replace_value(doc, hit.mapping, hit.key, hit.value, value), replaced
    names = _new_names(doc, key, hit)
    if hit.mapping is None:
        return _insert_block(doc, None, names, value), replaced
    if hit.mapping.flow:
        return _insert_flow(doc, hit.mapping, names, value), replaced
    return _insert_block(doc, hit.mapping, names, value), replaced


def _replaced_keys(doc: _Doc, key: str, hit: _Hit) -> set[str]:
    """The flat keys an edit of `key` replaces: the key and the keys nested in its node.

    Keys under `key` that are written elsewhere as literal dotted keys (`key.x: 1` beside
    `key: ...`) are separate entries (separate etcd keys) and stay, as etcd keeps them when
    one key is overridden. A merged (`<<`) mapping that an explicit entry will hide counts as
    the key's node. An empty mapping that a new key goes into stops being the leaf `{}`.
    """
    name = hit.key.value if hit.key is not None else ".".join(hit.rest)
    parent: Any = _loaded_at(doc.data, hit.path) if hit.mapping is not None else {}
    node = parent.get(name) if name in parent else None
    if isinstance(node, dict) and node:
        return {f"{key}.{sub}" for sub in _flatten(node, doc.file)}
    if hit.key is None and hit.path and not parent:
        return {key, ".".join(hit.path)}
    return {key}


def _new_names(doc: _Doc, key: str, hit: _Hit) -> list[str]:
    """The keys to write for a missing key: nested under `hit.mapping`, the first one possibly
    a literal dotted key where a prefix is already taken by something that is not a mapping."""
    taken = set(_loaded_at(doc.data, hit.path)) if hit.mapping is not None else set()
    rest = list(hit.rest)
    if ".".join(rest) not in taken and key in doc.flat:
        raise EditError(f"{doc.file}: {key!r} comes through an alias or a merge key (<<) of a "
                        "nested mapping and cannot be changed in this file; edit it by hand")
    j = 1
    while j < len(rest) and ".".join(rest[:j]) in taken:
        j += 1
    return [".".join(rest[:j])] + rest[j:]


def _replace_value(doc: _Doc, mapping: _Node, knode: _Node, old: _Node, value: JSON) -> str:
    """Rewrite only the old value's bytes; a multi-line value becomes one line after the key."""
    text = doc.text
    rendered = _render(value, mapping.flow, old.style if old.kind == "scalar" else "")
    multiline = (old.kind in ("map", "seq") and not old.flow) or old.style in ("|", ">")
    if not multiline:
        start = old.start
        if old.anchor is not None:
            match = _ANCHOR_PREFIX.match(text, old.start)
            start = match.end() if match else start
        if old.start == old.end and old.kind == "scalar":  # `key:` with an empty value
            pad = "" if text[old.start - 1:old.start] == " " else " "
            return text[:start] + pad + rendered + text[old.end:]
        return text[:start] + rendered + text[old.end:]
    stop = _entry_stop(text, old)
    term = _terminator_before(text, stop)
    key_line_end = _line_end(text, knode.end)
    if old.start < key_line_end:  # a block scalar header (or an anchor) on the key's line
        match = _ANCHOR_PREFIX.match(text, old.start) if old.anchor else None
        head = text[: match.end() if match else old.start]
        keep = ""
    else:
        colon = _colon_after(doc, knode)
        head = text[: colon + 1] + " "
        rest = text[colon + 1:key_line_end]
        keep = rest if rest.strip().startswith("#") else ""
    return head + rendered + keep + term + text[stop:]


def _insert_block(doc: _Doc, mapping: _Node | None, names: list[str], value: JSON) -> str:
    """Add lines after the last entry of a block mapping (or at the end of an empty file)."""
    text = doc.text
    if mapping is None:  # no document yet, or an empty one (`---`, maybe ended by `...`)
        column, at = 0, len(text)
        if doc.root is not None:
            start = doc.root.start
            at = start if _line_start(text, start) == start else _after_line(text, start)
    else:
        column = _key_column(doc, mapping.pairs[0][0])
        at = _entry_stop(text, mapping.pairs[-1][1])
    step = _indent_step(doc, mapping)
    lines = [f"{' ' * (column + i * step)}{_render_key(name, False)}:"
             for i, name in enumerate(names)]
    lines[-1] += " " + _render(value, False, "")
    block = doc.nl.join(lines)
    if at == len(text) and text and not text.endswith("\n"):
        return text + doc.nl + block
    return text[:at] + block + doc.nl + text[at:]


def _insert_flow(doc: _Doc, mapping: _Node, names: list[str], value: JSON) -> str:
    """Add `, key: value` after the last entry of a flow mapping (`{key: value}` if empty)."""
    text = doc.text
    rendered = _render(value, True, "")
    for name in reversed(names[1:]):
        rendered = "{" + f"{_render_key(name, True)}: {rendered}" + "}"
    entry = f"{_render_key(names[0], True)}: {rendered}"
    if mapping.pairs:
        last_key, last_value = mapping.pairs[-1]
        at = max(last_key.end, last_value.end)
        return text[:at] + ", " + entry + text[at:]
    at = mapping.end - 1
    if text[at:at + 1] != "}":
        raise EditError(f"{doc.file}:{_line(text, at)}: cannot find the end of this flow mapping")
    return text[:at] + entry + text[at:]


def _key_column(doc: _Doc, knode: _Node) -> int:
    start = _line_start(doc.text, knode.start)
    if doc.text[start:knode.start].strip(" "):
        raise EditError(f"{doc.file}:{_line(doc.text, knode.start)}: cannot tell how this "
                        "mapping is indented; edit the file by hand")
    return knode.start - start


def _indent_step(doc: _Doc, mapping: _Node | None) -> int:
    """The file's indentation step: the mapping's own, else the first nested block mapping's."""
    candidates = [mapping] if mapping is not None else []
    todo = [doc.root] if doc.root is not None else []
    while todo:
        node = todo.pop(0)
        candidates.append(node)
        todo.extend(v for _, v in node.pairs if v.kind == "map")
    for node in candidates:
        parent = node.parent
        if node.flow or not node.pairs or parent is None or parent.flow or parent.kind != "map":
            continue
        step = (_column(doc.text, node.pairs[0][0].start)
                - _column(doc.text, parent.pairs[0][0].start))
        if step > 0:
            return step
    return 2


# --------------------------------------------------------------------------- unset


def _unset_one(doc: _Doc, key: str) -> tuple[str, set[str]]:
    """The text without the key's entry, and the flat keys that removes."""
    hit = _locate(doc, key)
    if hit.key is None or hit.value is None or hit.mapping is None:
        if key in doc.flat:
            raise EditError(f"{doc.file}: {key!r} comes from a merge key (<<) or an alias, not "
                            "from an entry of its own; it cannot be removed in this file")
        raise EditError(f"{doc.file}: key {key!r} is not in the file")
    _refuse_shared(doc, key, hit.mapping, hit.value)
    chain = [(hit.key, hit.value)]
    mapping = hit.mapping
    while (mapping is not doc.root and len(mapping.pairs) == 1 and mapping.key is not None
           and mapping.parent is not None):
        chain.insert(0, (mapping.key, mapping))
        mapping = mapping.parent
    replaced = _replaced_keys(doc, key, hit)
    if mapping.flow:
        return _remove_flow_pair(doc.text, mapping, chain[0][0]), replaced
    return _remove_block_entries(doc, chain), replaced


def _remove_flow_pair(text: str, mapping: _Node, knode: _Node) -> str:
    """Cut one `key: value` out of a flow mapping together with one separating comma."""
    index = next(i for i, (k, _) in enumerate(mapping.pairs) if k is knode)
    key, value = mapping.pairs[index]
    if index + 1 < len(mapping.pairs):
        return text[:key.start] + text[mapping.pairs[index + 1][0].start:]
    end = max(key.end, value.end)
    if index > 0:
        prev_key, prev_value = mapping.pairs[index - 1]
        return text[: max(prev_key.end, prev_value.end)] + text[end:]
    return text[:key.start] + text[end:]


def _remove_block_entries(doc: _Doc, chain: list[tuple[_Node, _Node]]) -> str:
    """Remove a block entry's lines, and the key lines of the mappings it leaves empty.

    Comment lines inside those mappings stay; a comment at the end of a removed `parent:` line
    is kept as a comment line of its own.
    """
    text = doc.text
    cuts: list[tuple[int, int, str]] = []
    for depth, (knode, vnode) in enumerate(chain):
        start = _line_start(text, knode.start)
        _key_column(doc, knode)
        last = depth == len(chain) - 1
        if not last and vnode.kind == "map" and not vnode.flow:
            colon = _colon_after(doc, knode)
            line_end = _line_end(text, colon)
            rest = text[colon + 1:line_end].strip()
            if not rest:
                cuts.append((start, _after_line(text, colon), ""))
                continue
            if rest.startswith("#"):
                cuts.append((start, line_end, " " * (knode.start - start) + rest))
                continue
        cuts.append((start, _entry_stop(text, vnode), ""))
        break
    for start, end, replacement in reversed(cuts):
        text = text[:start] + replacement + text[end:]
    return text


# --------------------------------------------------------------------------- text positions


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _column(text: str, index: int) -> int:
    return index - _line_start(text, index)


def _line_end(text: str, index: int) -> int:
    """Index of the end of the line's content (before its LF or CRLF)."""
    end = text.find("\n", index)
    if end < 0:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _after_line(text: str, index: int) -> int:
    """Index just after the terminator of the line holding `index` (or the end of text)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _terminator_before(text: str, stop: int) -> str:
    if stop == 0 or text[stop - 1] != "\n":
        return ""
    return "\r\n" if stop >= 2 and text[stop - 2] == "\r" else "\n"


def _entry_stop(text: str, value: _Node) -> int:
    """Index after the last line of a mapping value (a block value's end mark lies further on,
    at the next key, past comments that are not its own)."""
    while value.kind in ("map", "seq") and not value.flow:
        value = value.pairs[-1][1] if value.kind == "map" else value.items[-1]
    end = value.end
    if value.kind == "scalar" and value.style in ("|", ">"):
        header = _BLOCK_HEADER.match(text, value.start)
        if header is not None and "+" in header.group(1):
            return end if end > 0 and text[end - 1] == "\n" else _after_line(text, end)
        while end > value.start and text[end - 1] in " \t\r\n":
            end -= 1
    return _after_line(text, end)


def _colon_after(doc: _Doc, knode: _Node) -> int:
    """The `:` after a block key, which must be on the key's own line."""
    index = knode.end
    while doc.text[index:index + 1] == " ":
        index += 1
    if doc.text[index:index + 1] != ":":
        raise EditError(f"{doc.file}:{_line(doc.text, knode.start)}: cannot find the ':' after "
                        "this key (complex keys are not edited); edit the file by hand")
    return index


def _keep_final_newline(old: str, new: str, nl: str) -> str:
    """Keep the presence or absence of the final newline (an empty file gets one)."""
    if not old or not new or old.endswith("\n") == new.endswith("\n"):
        return new
    if old.endswith("\n"):
        return new + nl
    return new[:-2] if new.endswith("\r\n") else new[:-1]


# --------------------------------------------------------------------------- rendering


def _render(value: JSON, flow: bool, old_style: str) -> str:
    """One-line YAML for a JSON value that YAML 1.1 reads back as exactly that value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _render_float(value)
    if isinstance(value, str):
        return _render_str(value, flow, old_style)
    if isinstance(value, list):
        return "[" + ", ".join(_render(item, True, "") for item in value) + "]"
    items = (f"{_render_key(k, True)}: {_render(v, True, '')}" for k, v in value.items())
    return "{" + ", ".join(items) + "}"


def _render_float(value: float) -> str:
    """JSON's repr, with a `.0` where YAML 1.1 needs one to read a float (`1e+20` is a str)."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _render_str(value: str, flow: bool, old_style: str) -> str:
    """Keep the old quote style if it can hold the string, else plain if safe, else `"..."`."""
    if old_style == "'" and all(_raw_ok(c) for c in value):
        return "'" + value.replace("'", "''") + "'"
    if old_style != '"' and _plain_ok(value, flow, as_key=False):
        return value
    return _double_quoted(value)


def _render_key(name: str, flow: bool) -> str:
    return name if _plain_ok(name, flow, as_key=True) else _double_quoted(name)


def _raw_ok(char: str) -> bool:
    """A character YAML allows unescaped on one line (printable, not a line break or BOM)."""
    return ("\x20" <= char <= "\x7e" or ("\xa0" <= char <= "\ud7ff" and char not in "\u2028\u2029")
            or ("\ue000" <= char <= "\ufffd" and char != "\ufeff") or char >= "\U00010000")


def _double_quoted(value: str) -> str:
    """A double-quoted scalar: JSON-like escapes, other characters written as they are."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif _raw_ok(char):
            out.append(char)
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        elif char <= "\xff":
            out.append(f"\\x{ord(char):02x}")
        elif char <= "\uffff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _plain_ok(value: str, flow: bool, as_key: bool) -> bool:
    """Whether `value` can be written plain: a cheap character check, then a real read-back."""
    if not value or value != value.strip() or not all(_raw_ok(c) for c in value):
        return False
    if value[0] in _INDICATORS or (value[0] in "-?:" and (len(value) == 1 or value[1] == " ")):
        return False
    if ": " in value or " #" in value or value.endswith(":"):
        return False
    if flow and any(c in value for c in ",[]{}"):
        return False
    samples = [f"{value}: 0\n"] if as_key else [f"k: {value}\n"]
    if flow:
        samples += [f"{{{value}: 0}}"] if as_key else [f"{{k: {value}}}", f"[{value}]"]
    expected: list[Any] = [{value: 0}] if as_key else [{"k": value}]
    if flow:
        expected += [{value: 0}] if as_key else [{"k": value}, [value]]
    try:
        loaded = [yaml.load(sample, Loader=yaml.CSafeLoader) for sample in samples]
    except yaml.YAMLError:
        return False
    return all(_same(got, want) for got, want in zip(loaded, expected, strict=True))


# --------------------------------------------------------------------------- verification


def _check_key(key: str, file: str) -> None:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise EditError(f"{file}: {key!r} is not a flattened key (empty segment)")


def _check_json(value: Any, key: str, file: str) -> None:
    """Only JSON values can be written (and compared after the edit)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise EditError(f"{file}: the value for {key!r} is not JSON ({item!r})")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise EditError(f"{file}: the value for {key!r} is not UTF-8 text") from None
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise EditError(f"{file}: the value for {key!r} has a key that is not a string")
            todo.extend(item)
            todo.extend(item.values())
        elif item is not None and not isinstance(item, (bool, int, float, str)):
            raise EditError(f"{file}: the value for {key!r} is not JSON "
                            f"({type(item).__name__})")


def _expect(flat: dict[str, Any], key: str, value: JSON | Unset, replaced: set[str]) -> None:
    """What an edit means for the flat values: the replaced keys go, the new value's keys come."""
    for gone in replaced:
        flat.pop(gone, None)
    if value is UNSET:
        return
    flat.update(_flatten({key: value}, "<value>") if value != {} else {key: {}})


def _verify(expected: dict[str, Any], got: dict[str, Any], keys: list[str], file: str) -> None:
    """The safety net: refuse a result whose values differ from the intended ones anywhere."""
    wrong = sorted(k for k in expected.keys() | got.keys()
                   if k not in expected or k not in got or not _same(expected[k], got[k]))
    if wrong:
        shown = ", ".join(repr(k) for k in wrong[:5]) + (" ..." if len(wrong) > 5 else "")
        raise EditError(f"{file}: editing {', '.join(map(repr, keys))} in place would not give "
                        f"the intended values (wrong: {shown}); edit the file by hand")


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and True, as JSON (and etcd's readers) do."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _walk(node: _Node) -> Iterator[_Node]:
    """Every node under (and including) `node`."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(current.items)
        todo.extend(n for pair in current.pairs for n in pair)
