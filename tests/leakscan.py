"""A secret-leak scan over the whole suite (registered in tests/conftest.py).

The session knows every secret value of the fixture repository (`examples/config-repo/**`: the
values of the keys its schemas mark secret, found with gitconf's own loader and `Masker`), and
the GitHub token of every fake GitHub server a test starts. For each test it collects what
gitconf said and wrote where a secret must never appear:

- every CLI run through `typer.testing.CliRunner.invoke` (that is `tests.helpers.cli` and
  anything else driving the app in-process): stdout and stderr, unless the run asked for
  `--show-secrets`;
- the log file of every `tests.daemons.DaemonProc`;
- every request body, path and query sent to a `tests.fakegithub.FakeGitHub` (pull request
  titles, bodies, comments, labels, statuses);
- every record under `{prefix}/_system/` of the session etcd, for tests that used the
  `prefix` fixture (deploy history, pending deploys, unit records, overrides, pins, schemas,
  last-applied).

and fails the test when a secret value appears in any of it. Not scanned, on purpose: data keys
(`{prefix}/{service}/{env}/{key}`: etcd must hold the value), Git content, and outputs the test
asked to unmask. The scan is a substring search over the collected text: a few milliseconds
per test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config-repo"
MIN_SECRET = 6  # shorter values would match by accident


@dataclass
class Collected:
    """What the current test made gitconf say or write."""

    outputs: list[tuple[str, str]] = field(default_factory=list)  # (where, text)
    daemons: list[Any] = field(default_factory=list)
    fakes: list[Any] = field(default_factory=list)
    extra_secrets: dict[str, str] = field(default_factory=dict)  # value -> what it is

    def clear(self) -> None:
        self.outputs.clear()
        self.daemons.clear()
        self.fakes.clear()
        self.extra_secrets.clear()


COLLECTED = Collected()


def example_secrets(root: Path = EXAMPLE) -> dict[str, str]:
    """Secret value -> `service/env key` for every value the example's schemas mark secret."""
    from gitconf.masking import Masker
    from gitconf.repo_format import load_desired
    from gitconf.trees import FileTree

    found: dict[str, str] = {}
    for unit, desired in load_desired(FileTree(root)).units.items():
        masker = Masker.of(desired.secret_keys)
        for key, value in desired.values.items():
            if not masker.is_secret(key):
                continue
            texts = [value] if isinstance(value, str) else \
                [json.dumps(value, separators=(",", ":")), json.dumps(value)]
            for text in texts:
                if len(text) >= MIN_SECRET:
                    found[text] = f"{unit} {key}"
    return found


def _install() -> list[tuple[Any, str, Any]]:
    """Wrap the places outputs are born; returns what to restore."""
    import typer.testing

    from tests import daemons, fakegithub

    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)

    original_invoke = typer.testing.CliRunner.invoke

    def invoke(self: Any, app: Any, args: Any = None, *a: Any, **kw: Any) -> Any:
        result = original_invoke(self, app, args, *a, **kw)
        argv = [args] if isinstance(args, str) else list(args or [])
        if not any(str(x).startswith("--show-secrets") for x in argv):
            where = "gitconf " + " ".join(str(x) for x in argv[:4])
            try:
                stdout = result.stdout
            except ValueError:
                stdout = ""
            try:
                stderr = result.stderr
            except ValueError:
                stderr = ""
            COLLECTED.outputs.append((where, stdout + "\n" + stderr))
        return result

    patch(typer.testing.CliRunner, "invoke", invoke)

    original_daemon_init = daemons.DaemonProc.__init__

    def daemon_init(self: Any, *a: Any, **kw: Any) -> None:
        original_daemon_init(self, *a, **kw)
        COLLECTED.daemons.append(self)

    patch(daemons.DaemonProc, "__init__", daemon_init)

    original_fake_init = fakegithub.FakeGitHub.__init__

    def fake_init(self: Any, *a: Any, **kw: Any) -> None:
        original_fake_init(self, *a, **kw)
        COLLECTED.fakes.append(self)
        token = getattr(self, "token", "")
        if isinstance(token, str) and len(token) >= 8:
            COLLECTED.extra_secrets[token] = "the GitHub token"

    patch(fakegithub.FakeGitHub, "__init__", fake_init)
    return saved


@pytest.fixture(scope="session")
def leak_scan_session() -> Iterator[dict[str, Any]]:
    """Installs the collectors once; holds the example's secrets and a store per endpoint."""
    saved = _install()
    state: dict[str, Any] = {"secrets": example_secrets(), "stores": {}}
    try:
        yield state
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
        for store in state["stores"].values():
            try:
                store.close()
            except Exception:
                pass


def _system_records(state: dict[str, Any], funcargs: dict[str, Any]) -> list[tuple[str, str]]:
    """Every `{prefix}/_system/` record the test left in the session etcd."""
    prefix, server = funcargs.get("prefix"), funcargs.get("etcd_server")
    if not isinstance(prefix, str) or server is None or getattr(server, "process", None) is None:
        return []
    from gitconf.etcdstore import connect
    from gitconf.records import Keys

    endpoint = server.endpoint
    store = state["stores"].get(endpoint)
    try:
        if store is None:
            store = state["stores"][endpoint] = connect(endpoint)
        kvs, _ = store.scan(Keys(prefix).system_b)
    except Exception as exc:  # etcd gone: nothing to scan, and not this scan's business
        return [("etcd", f"(could not scan: {type(exc).__name__})")]
    return [(f"etcd {kv.key.decode(errors='replace')}", kv.value.decode(errors="replace"))
            for kv in kvs]


def _texts(state: dict[str, Any], funcargs: dict[str, Any]) -> list[tuple[str, str]]:
    texts = list(COLLECTED.outputs)
    for d in COLLECTED.daemons:
        try:
            texts.append((f"daemon log {d.log.name}", d.logs()))
        except OSError:
            pass
    for fake in COLLECTED.fakes:
        for r in list(fake.requests_log):
            body = json.dumps(r.json, ensure_ascii=False) if r.json is not None else ""
            texts.append((f"GitHub {r.method} {r.path}",
                          f"{r.path} {json.dumps(r.query)} {body}"))
    texts += _system_records(state, funcargs)
    return texts


def find_leaks(secrets: dict[str, str], texts: list[tuple[str, str]]) -> list[str]:
    leaks = []
    for where, text in texts:
        for value, what in secrets.items():
            if value in text:
                leaks.append(f"{what} in {where}")
    return leaks


@pytest.fixture(autouse=True)
def leak_scan(request: pytest.FixtureRequest, leak_scan_session: dict[str, Any]) -> Iterator[None]:
    """Per test: collect, then fail the test when any secret value was shown or recorded.
    Opt out with `@pytest.mark.leaks_ok` (a test about the scan itself, say)."""
    COLLECTED.clear()
    yield
    if request.node.get_closest_marker("leaks_ok") is not None:
        COLLECTED.clear()
        return
    secrets = {**leak_scan_session["secrets"], **COLLECTED.extra_secrets}
    texts = _texts(leak_scan_session, dict(getattr(request.node, "funcargs", {})))
    leaks = find_leaks(secrets, texts)
    COLLECTED.clear()
    if leaks:
        shown = sorted(set(leaks))
        pytest.fail("secret values leaked (tests/leakscan.py): " + "; ".join(shown[:10])
                    + (f" and {len(shown) - 10} more" if len(shown) > 10 else ""),
                    pytrace=False)
