"""The layout of a commit, remembered on disk between processes.

A layout (which files are settings, schemas, bases and environments) depends only on the
commit's tree, yet computing it lists the whole tree: 0.04 s at 100K keys, 0.21 s at 1M, most
of what a one-key `gitconf apply` does besides starting up. A CLI run is a new process, so the
in-memory reuse (`Layouts`: a commit that only modified existing files keeps the previous
commit's layout) needs the previous layout from somewhere: here, one JSON file per commit in
the cache directory (`$GITCONF_CACHE_DIR/layouts/`, beside the clones of URL repositories).

A commit id names its tree, so an entry never goes stale; it is also stamped with a format
number and gitconf's version (the layout rules may change between releases). Anything that
cannot be read back exactly (a missing, torn, foreign or hostile file) is ignored and the
layout computed again; a cache that cannot be written (read-only, full) costs nothing but the
saving. Only JSON is read: a cache file is data, never code.

An entry is a JSON header line (settings, problems, counts, and the SHA-256 of the rest)
followed by one JSON line per service. A one-key pass needs one or two services of 10,000:
they are found by their line and parsed alone (`StoredServices`), instead of 10,000 objects
built and checked on every run (~50-130 ms at 1M keys).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CacheCorrupt, GitconfError
from .gitsource import GitSource, cache_root
from .model import Problem
from .repo_format import SETTINGS_FILES, Layout, ServiceFiles, read_layout
from .trees import Tree

FORMAT = 2
KEEP = 16  # entries kept: the newest few commits are all a deploy ever asks for
MAX_BYTES = 64 * 1024 * 1024
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_DECODER = json.JSONDecoder()


class Layouts:
    """The layout of the commit a reconciler works on, kept between its passes. The layout
    depends only on which files exist and on `.gitconf.yaml`: when a commit only modifies files
    the previous one had, its layout is reused instead of listing the whole tree again (which
    costs time in proportion to the repository). A new process starts from the layout
    remembered on disk for the commit, or for the one applied last."""

    def __init__(self, source: GitSource):
        self.source = source
        self._last: tuple[str, Layout] | None = None  # (commit, its layout)
        self._saved = ""  # the commit whose entry on disk holds that layout

    def at(self, commit: str, tree: Tree, since: str | None = None) -> Layout:
        """The layout of `commit` (whose tree is `tree`); `since`: the commit applied last,
        whose remembered layout a new process may start from."""
        if self._last is None:
            for known in [c for c in (commit, since) if c]:
                remembered = load(known)
                if remembered is not None:
                    self._last, self._saved = (known, remembered[1]), remembered[0]
                    break
        if self._last is not None:
            prev, layout = self._last
            if prev == commit:
                return layout
            try:
                status = self.source.changed_status(prev, commit)
            except GitconfError:
                status = [("?", "")]
            if all(s == "M" and p not in SETTINGS_FILES for s, p in status):
                self._last = (commit, layout)
                if self._saved:
                    alias(commit, self._saved)
                return layout
        layout = read_layout(tree)
        self._last, self._saved = (commit, layout), commit
        save(commit, layout)
        return layout


def cache_dir() -> Path:
    return cache_root() / "layouts"


def _path_of(commit: str) -> Path | None:
    return cache_dir() / f"{commit}.json" if _COMMIT.fullmatch(commit) else None


def load(commit: str) -> tuple[str, Layout] | None:
    """The remembered layout of `commit` and the commit it was saved under (another one when
    `commit` only modified files of that one: see `alias`), or None."""
    entry = _read(commit)
    if entry is not None and isinstance(entry[0].get("same_as"), str):
        entry = _read(entry[0]["same_as"])
    if entry is None:
        return None
    head, rest = entry
    try:
        return head["commit"], _layout_of(head, rest)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _read(commit: str) -> tuple[dict[str, Any], bytes] | None:
    """An entry's header and the service lines after it, when the header is ours and the
    lines are the ones it was written with."""
    path = _path_of(commit)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES)
        first, _, rest = raw.partition(b"\n")
        head = json.loads(first)
    except (OSError, ValueError):
        return None
    if not isinstance(head, dict) or head.get("format") != FORMAT \
            or head.get("gitconf") != __version__ or head.get("commit") != commit:
        return None
    if "same_as" not in head and head.get("digest") != hashlib.sha256(rest).hexdigest():
        return None  # torn, truncated or edited
    return head, rest


def alias(commit: str, saved_as: str) -> None:
    """Remember that `commit` has the layout saved under `saved_as` (it only modified files):
    a few bytes instead of the whole layout again. The entry it names is touched, so it stays
    among the newest while aliases point to it."""
    target = _path_of(saved_as)
    if target is None or saved_as == commit:
        return
    try:
        os.utime(target)
    except OSError:
        return
    _write(commit, {"format": FORMAT, "gitconf": __version__, "commit": commit,
                    "same_as": saved_as}, b"")


def save(commit: str, layout: Layout) -> None:
    """Remember `layout` as the layout of `commit`."""
    try:
        if json.loads(json.dumps(layout.settings)) != layout.settings:
            return  # JSON would change them (a number key, a date): not remembered
        lines = "".join(json.dumps([s.name, s.schema, s.base, s.envs],
                                   separators=(",", ":")) + "\n"
                        for s in layout.services.values()).encode("utf-8")
    except (TypeError, ValueError):
        return
    head = {"format": FORMAT, "gitconf": __version__, "commit": commit,
            "settings": layout.settings, "settings_file": layout.settings_file,
            "shared_schemas": layout.shared_schemas,
            "problems": [[p.file, p.line, p.column, p.code, p.message, p.key, p.severity,
                          p.secret] for p in layout.problems],
            "services": len(layout.services),
            "units": sum(len(s.envs) for s in layout.services.values()),
            "digest": hashlib.sha256(lines).hexdigest()}
    _write(commit, head, lines)


def _write(commit: str, head: dict[str, Any], lines: bytes) -> None:
    """Write one entry atomically (a reader sees the whole file or none), then forget all but
    the newest `KEEP` entries."""
    path = _path_of(commit)
    if path is None:
        return
    try:
        data = json.dumps(head, separators=(",", ":")).encode("utf-8") + b"\n" + lines
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(path.parent)
    except (OSError, TypeError, ValueError):
        pass


def _prune(directory: Path) -> None:
    entries = []
    for entry in os.scandir(directory):
        if entry.name.endswith(".json"):
            try:
                entries.append((entry.stat().st_mtime, entry.path))
            except OSError:
                continue
    entries.sort(reverse=True)
    for _, path in entries[KEEP:]:
        try:
            os.unlink(path)
        except OSError:
            pass


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _service(entry: Any) -> ServiceFiles:
    """One stored service line, every field's type checked."""
    name, schema, base, envs = entry
    if type(name) is not str or (schema is not None and type(schema) is not str) or \
            (base is not None and type(base) is not str) or type(envs) is not dict or \
            not all(type(e) is str and type(p) is str for e, p in envs.items()):
        raise TypeError("service")
    return ServiceFiles(name, schema, base, envs)


class StoredServices(Mapping[str, ServiceFiles]):
    """The services of a stored layout, parsed when asked for: a lookup finds the service's
    line (`["name",` at a line start) and parses that line alone; iterating parses them all,
    in the order they were saved."""

    def __init__(self, text: str, count: int) -> None:
        self._text = text
        self._count = count
        self._parsed: dict[str, ServiceFiles] = {}
        self._complete = False

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, name: str) -> ServiceFiles:
        hit = self._parsed.get(name)
        if hit is not None or self._complete or not isinstance(name, str):
            if hit is None:
                raise KeyError(name)
            return hit
        key = "[" + json.dumps(name) + ","
        at = 0 if self._text.startswith(key) else self._text.find("\n" + key) + 1
        if at == 0 and not self._text.startswith(key):
            raise KeyError(name)
        end = self._text.find("\n", at)
        svc = self._parse(self._text[at:end if end >= 0 else len(self._text)])
        if svc.name != name:
            raise CacheCorrupt(f"layout cache entry under {cache_dir()} is corrupt "
                                   f"(service {name!r}); delete it")
        self._parsed[name] = svc
        return svc

    def __iter__(self) -> Iterator[str]:
        if not self._complete:
            services = [self._parse(line) for line in self._text.splitlines()]
            if len(services) != self._count:
                raise CacheCorrupt(f"layout cache entry under {cache_dir()} is corrupt "
                                       "(service count); delete it")
            self._parsed = {s.name: s for s in services}
            self._complete = True
        return iter(self._parsed)

    def spread(self, parts: int) -> list[str]:
        """`Layout.spread` from the text: the name that starts the line found at each even
        fraction of it (lines are about as long as one another). A name that cannot be read
        is left out: the names only say where a walk is cut."""
        text, names = self._text, set()
        if self._count < parts:
            return []
        for i in range(1, parts):
            at = text.rfind("\n", 0, len(text) * i // parts) + 1
            if not text.startswith('["', at):  # only a name is decoded, nothing nested
                continue
            try:
                name, _ = _DECODER.raw_decode(text, at + 1)
            except ValueError:
                continue
            names.add(name)
        return sorted(names)

    @staticmethod
    def _parse(line: str) -> ServiceFiles:
        try:
            return _service(json.loads(line))
        except (ValueError, TypeError) as exc:
            raise CacheCorrupt(f"layout cache entry under {cache_dir()} is corrupt "
                                   f"({exc}); delete it") from None


def _layout_of(head: dict[str, Any], rest: bytes) -> Layout:
    """Rebuild a layout, checking every field's type: what comes back is what was saved, or
    an error (and the layout is computed again). Services are checked as they are read."""
    settings = head["settings"]
    count, units = head["services"], head["units"]
    if not isinstance(settings, dict) or type(count) is not int or type(units) is not int:
        raise TypeError("header")
    text = rest.decode("utf-8")
    if text.count("\n") != count:
        raise ValueError("service lines")
    problems = []
    for file, line, column, code, message, key, severity, secret in head["problems"]:
        if not (isinstance(line, int) and isinstance(column, int) and isinstance(secret, bool)
                and severity in ("error", "warning")):
            raise TypeError("problem")
        problems.append(Problem(_text(file), line, column, _text(code), _text(message),
                                _maybe_text(key), severity, secret))
    return Layout(settings, StoredServices(text, count),
                  [_text(p) for p in head["shared_schemas"]], problems,
                  _maybe_text(head["settings_file"]), units=units)
