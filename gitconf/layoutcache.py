"""The layout of a commit, remembered on disk between processes.

A layout (which files are settings, schemas, bases and environments) depends only on the
commit's tree, yet computing it lists the whole tree: 0.04 s at 100K keys, 0.21 s at 1M, most
of what a one-key `gitconf apply` does besides starting up. A CLI run is a new process, so the
reconciler's in-memory reuse (a commit that only modified existing files keeps the previous
commit's layout) needs the previous layout from somewhere: here, one JSON file per commit in
the cache directory (`$GITCONF_CACHE_DIR/layouts/`, beside the clones of URL repositories).

A commit id names its tree, so an entry never goes stale; it is also stamped with a format
number and gitconf's version (the layout rules may change between releases). Anything that
cannot be read back exactly (a missing, torn, foreign or hostile file) is ignored and the
layout computed again; a cache that cannot be written (read-only, full) costs nothing but the
saving. Only JSON is read: a cache file is data, never code.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .gitsource import cache_root
from .model import Problem
from .repo_format import Layout, ServiceFiles

FORMAT = 1
KEEP = 16  # entries kept: the newest few commits are all a deploy ever asks for
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def cache_dir() -> Path:
    return cache_root() / "layouts"


def _path_of(commit: str) -> Path | None:
    return cache_dir() / f"{commit}.json" if _COMMIT.fullmatch(commit) else None


def load(commit: str) -> tuple[str, Layout] | None:
    """The remembered layout of `commit` and the commit it was saved under (another one when
    `commit` only modified files of that one: see `alias`), or None."""
    doc = _read(commit)
    if doc is not None and isinstance(doc.get("same_as"), str):
        doc = _read(doc["same_as"])
    if doc is None:
        return None
    try:
        return doc["commit"], _layout_of(doc["layout"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _read(commit: str) -> dict[str, Any] | None:
    path = _path_of(commit)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(64 * 1024 * 1024))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT \
            or doc.get("gitconf") != __version__ or doc.get("commit") != commit:
        return None
    return doc


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
                    "same_as": saved_as})


def save(commit: str, layout: Layout) -> None:
    """Remember `layout` as the layout of `commit`."""
    data = _json_of(layout)
    try:
        if json.loads(json.dumps(data["settings"])) != layout.settings:
            return  # JSON would change them (a number key, a date): not remembered
    except (TypeError, ValueError):
        return
    _write(commit, {"format": FORMAT, "gitconf": __version__, "commit": commit, "layout": data})


def _write(commit: str, doc: dict[str, Any]) -> None:
    """Write one entry atomically (a reader sees the whole file or none), then forget all but
    the newest `KEEP` entries."""
    path = _path_of(commit)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
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


def _json_of(layout: Layout) -> dict[str, Any]:
    return {
        "settings": layout.settings,
        "settings_file": layout.settings_file,
        "shared_schemas": layout.shared_schemas,
        "services": [[s.name, s.schema, s.base, s.envs] for s in layout.services.values()],
        "problems": [[p.file, p.line, p.column, p.code, p.message, p.key, p.severity, p.secret]
                     for p in layout.problems],
    }


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _layout_of(doc: dict[str, Any]) -> Layout:
    """Rebuild a layout, checking every field's type: what comes back is what was saved, or
    an error (and the layout is computed again)."""
    settings = doc["settings"]
    if not isinstance(settings, dict):
        raise TypeError("settings")
    services: dict[str, ServiceFiles] = {}
    for name, schema, base, envs in doc["services"]:  # 10,000 at 1M keys: checked inline
        if type(name) is not str or (schema is not None and type(schema) is not str) or \
                (base is not None and type(base) is not str) or type(envs) is not dict or \
                not all(type(e) is str and type(p) is str for e, p in envs.items()):
            raise TypeError("service")
        services[name] = ServiceFiles(name, schema, base, envs)
    problems = []
    for file, line, column, code, message, key, severity, secret in doc["problems"]:
        if not (isinstance(line, int) and isinstance(column, int) and isinstance(secret, bool)
                and severity in ("error", "warning")):
            raise TypeError("problem")
        problems.append(Problem(_text(file), line, column, _text(code), _text(message),
                                _maybe_text(key), severity, secret))
    return Layout(settings, services, [_text(p) for p in doc["shared_schemas"]], problems,
                  _maybe_text(doc["settings_file"]))
