"""The etcd store against real etcd servers: the error table (every client error becomes one of
ours with the server's text), the dial timeout, reading with a role limited to a prefix, the
prefix-only history replay, op builders and `TxnResult.ranges()`; and the rule that no module
but `etcdstore.py` imports `pyetcd` or `grpc`."""

from __future__ import annotations

import ast
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyetcd import etcdrpc, exceptions

from gitconf.embedded_etcd import EmbeddedEtcd, etcd_binary
from gitconf.errors import EtcdError, EtcdUnavailable, UsageError
from gitconf.etcdstore import (
    EtcdAuthFailed,
    EtcdCompacted,
    EtcdConfig,
    EtcdNoSpace,
    EtcdPermissionDenied,
    EtcdStore,
    TxnTooLarge,
    map_etcd_errors,
    wire_put,
)
from gitconf.store import KV, KeyEvent, WatchBatch, prefix_end

ROOT_PW = "r00t-Secret-pw"
APP_PW = "app-Secret-pw"
PACKAGE = Path(__file__).resolve().parents[2] / "gitconf"


def store_for(server: EmbeddedEtcd, user: str | None = None, password: str | None = None,
              ) -> EtcdStore:
    cfg = EtcdConfig.from_env(server.endpoint)
    cfg.user, cfg.password = user, password
    return EtcdStore(cfg)


def etcdctl(server: EmbeddedEtcd, *args: str) -> None:
    ctl = str(Path(etcd_binary()).with_name("etcdctl"))
    res = subprocess.run([ctl, f"--endpoints=http://{server.endpoint}", *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# -- the error table, without a server ---------------------------------------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


C = grpc.StatusCode


@pytest.mark.parametrize(("raised", "error", "message"), [
    (FakeRpcError(C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
     TxnTooLarge, "etcd refused the transaction: etcdserver: too many operations in txn request"),
    (FakeRpcError(C.INVALID_ARGUMENT, "etcdserver: request is too large"), TxnTooLarge,
     "etcd refused the transaction: etcdserver: request is too large"),
    (FakeRpcError(C.PERMISSION_DENIED, "etcdserver: permission denied"), EtcdPermissionDenied,
     "etcd: permission denied for range on prefix /config/: the user needs read/write on the "
     "prefix (docs/security.md)"),
    (FakeRpcError(C.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or "
                  "password"), EtcdAuthFailed, "authentication failed: check GITCONF_ETCD_USER/"
     "GITCONF_ETCD_PASSWORD (etcdserver: authentication failed, invalid user ID or password)"),
    (FakeRpcError(C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"),
     EtcdNoSpace, "etcd is out of space (alarm NOSPACE): etcdserver: mvcc: database space "
     "exceeded"),
    (FakeRpcError(C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
     EtcdCompacted, "etcd: etcdserver: mvcc: required revision has been compacted"),
    (FakeRpcError(C.UNAVAILABLE, "failed to connect to all addresses"), EtcdUnavailable,
     "etcd at http://h:1 is unreachable (failed to connect to all addresses)"),
    (FakeRpcError(C.NOT_FOUND, "etcdserver: requested lease not found"), EtcdError,
     "etcd: etcdserver: requested lease not found"),
    (exceptions.RevisionCompactedError(7), EtcdCompacted,
     "etcd: required revision has been compacted (history starts at 7)"),
    (exceptions.NoServerAvailableError("none"), EtcdUnavailable,
     "etcd at http://h:1 is unreachable (every member failed recently)"),
    (exceptions.ConnectionFailedError(), EtcdUnavailable,
     "etcd at http://h:1 is unreachable (etcd connection failed)"),
    (ValueError("Trying to use a failed node"), EtcdUnavailable,
     "etcd at http://h:1 is unreachable (Trying to use a failed node)"),
])
def test_error_table(raised: BaseException, error: type[EtcdError], message: str) -> None:
    with pytest.raises(error) as info, map_etcd_errors("range", "prefix /config/", "http://h:1"):
        raise raised
    assert type(info.value) is error
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_error_table_lets_other_errors_through() -> None:
    with pytest.raises(ValueError, match="unrelated"), map_etcd_errors():
        raise ValueError("unrelated")
    with pytest.raises(KeyError), map_etcd_errors():
        raise KeyError("x")


# -- the error table against a server ----------------------------------------------------------


def test_129_operations_are_txn_too_large_with_the_servers_text(store: EtcdStore,
                                                                prefix: str) -> None:
    ops = [wire_put(f"{prefix}/k{i}".encode(), b"v") for i in range(129)]
    with pytest.raises(TxnTooLarge, match="too many operations in txn request"):
        store.txn_wire([], ops)
    with pytest.raises(TxnTooLarge, match="too many operations in txn request"):
        store.txn([], [store.op_put(f"{prefix}/k{i}".encode(), b"v") for i in range(129)])
    assert store.txn_wire([], ops[:128]).succeeded  # the limit is the server's: 128 pass


def test_a_request_over_the_size_limit_is_txn_too_large(store: EtcdStore, prefix: str) -> None:
    big = b"x" * 2_000_000  # etcd's --max-request-bytes is 1.5 MiB
    with pytest.raises(TxnTooLarge, match="request is too large"):
        store.txn_wire([], [wire_put(f"{prefix}/big".encode(), big)])
    with pytest.raises(TxnTooLarge, match="request is too large"):
        store.put(f"{prefix}/big".encode(), big)


def test_unknown_lease_keeps_the_servers_text(store: EtcdStore, prefix: str) -> None:
    with pytest.raises(EtcdError, match="requested lease not found"):
        store.put(f"{prefix}/l".encode(), b"1", lease=123456789)


class Blackhole:
    """A TCP server that accepts connections and never answers (a hung etcd, a firewall that
    lets the handshake through)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["silent", "closed"])
def test_unreachable_endpoint_fails_within_seconds(kind: str) -> None:
    hole = Blackhole() if kind == "silent" else None
    port = hole.port if hole else closed_port()
    started = time.monotonic()
    try:
        with pytest.raises(EtcdUnavailable, match=f"127.0.0.1:{port} is unreachable"):
            EtcdStore(EtcdConfig.from_env(f"127.0.0.1:{port}")).revision()
    finally:
        if hole:
            hole.close()
    assert time.monotonic() - started < 6.0  # it took 21.7 s with grpc's connect timeout


def test_dial_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EtcdConfig.from_env("h:1").dial_timeout == 2.0
    monkeypatch.setenv("GITCONF_ETCD_TIMEOUT", "0.5")
    assert EtcdConfig.from_env("h:1").dial_timeout == 0.5
    monkeypatch.setenv("GITCONF_ETCD_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="GITCONF_ETCD_TIMEOUT"):
        EtcdConfig.from_env("h:1")


# -- auth: a throwaway etcd with a root user and an app user limited to /config/ ---------------


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EmbeddedEtcd]:
    server = EmbeddedEtcd(extra_args=("--auth-token-ttl", "2")).start()
    try:
        etcdctl(server, "user", "add", f"root:{ROOT_PW}")
        etcdctl(server, "user", "add", f"app:{APP_PW}")
        etcdctl(server, "role", "add", "config-rw")
        etcdctl(server, "role", "grant-permission", "config-rw", "--prefix=true", "readwrite",
                "/config/")
        etcdctl(server, "user", "grant-role", "app", "config-rw")
        etcdctl(server, "auth", "enable")
        yield server
    finally:
        server.cleanup()


def test_wrong_password_is_auth_failed_in_one_line(auth_etcd: EmbeddedEtcd) -> None:
    wrong = "Wr0ng-pw-for-app"
    with pytest.raises(EtcdAuthFailed) as info:
        store_for(auth_etcd, "app", wrong)
    text = str(info.value)
    assert text.startswith("authentication failed: check GITCONF_ETCD_USER/GITCONF_ETCD_PASSWORD")
    assert "invalid user ID or password" in text  # the server's text
    assert wrong not in text and "\n" not in text and info.value.exit_code == 2


def test_no_user_on_an_etcd_with_auth_is_auth_failed(auth_etcd: EmbeddedEtcd) -> None:
    store = store_for(auth_etcd)
    try:
        with pytest.raises(EtcdAuthFailed, match=r"requires a user.*user name is empty"):
            store.revision()
    finally:
        store.close()


def test_a_role_limited_to_the_prefix_reads_the_revision_within_it(auth_etcd: EmbeddedEtcd,
                                                                   ) -> None:
    app, root = store_for(auth_etcd, "app", APP_PW), store_for(auth_etcd, "root", ROOT_PW)
    try:
        written = app.put(b"/config/a", b"1")
        assert app.revision(within=b"/config/") == root.revision() >= written
        with pytest.raises(EtcdPermissionDenied) as info:
            app.revision()
        assert str(info.value) == ("etcd: permission denied for range on key \\x00: the user "
                                   "needs read/write on the prefix (docs/security.md)")
        assert info.value.exit_code == 2
        with pytest.raises(EtcdPermissionDenied, match="for put on key /other"):
            app.put(b"/other", b"1")
        with pytest.raises(EtcdPermissionDenied, match="for txn on key /other/x"):
            app.txn_wire([], [wire_put(b"/other/x", b"1")])
    finally:
        app.close()
        root.close()


def test_an_expired_token_is_renewed(auth_etcd: EmbeddedEtcd) -> None:
    app = store_for(auth_etcd, "app", APP_PW)
    try:
        app.revision(within=b"/config/")
        time.sleep(3.5)  # --auth-token-ttl 2: the token is gone
        assert app.revision(within=b"/config/") > 0
    finally:
        app.close()


def test_a_role_limited_to_the_prefix_replays_its_history(auth_etcd: EmbeddedEtcd) -> None:
    app, root = store_for(auth_etcd, "app", APP_PW), store_for(auth_etcd, "root", ROOT_PW)
    try:
        start = app.put(b"/config/h/1", b"1")
        root.put(b"/elsewhere", b"1")
        second = app.put(b"/config/h/2", b"2")
        until = root.put(b"/elsewhere", b"2")
        assert app.changes_since(b"/config/h/", start, until) is None  # keyspace: denied
        expected = [KeyEvent(b"/config/h/1", start, False, b"1"),
                    KeyEvent(b"/config/h/2", second, False, b"2")]
        assert app.changes_since(b"/config/h/", start, until, scope="prefix") == expected
        assert app.changes_since(b"/config/h/", start, until, scope="auto") == expected
    finally:
        app.close()
        root.close()


# -- NOSPACE -----------------------------------------------------------------------------------


def test_out_of_space_is_etcd_no_space() -> None:
    server = EmbeddedEtcd(extra_args=("--quota-backend-bytes", str(2 * 1024 * 1024))).start()
    try:
        store = store_for(server)
        with pytest.raises(EtcdNoSpace) as info:
            for i in range(100):
                store.put(f"/fill/{i}".encode(), b"x" * 500_000)
        assert str(info.value).startswith("etcd is out of space (alarm NOSPACE): etcdserver: "
                                          "mvcc: database space exceeded")
        assert store.get(b"/fill/0") is not None  # reads still work
        store.close()
    finally:
        server.cleanup()


# -- history replay ----------------------------------------------------------------------------


def _interleaved(store: EtcdStore, prefix: str) -> tuple[int, list[KeyEvent], int]:
    """Writes inside and outside `prefix`/in/, ending with a foreign write."""
    inside, outside = f"{prefix}/in/".encode(), f"{prefix}/out/".encode()
    start = store.put(outside + b"first", b"x")
    expected: list[KeyEvent] = []
    for i in range(5):
        rev = store.put(inside + b"k%d" % i, b"v")
        expected.append(KeyEvent(inside + b"k%d" % i, rev, False, b"v"))
        store.put(outside + b"k%d" % i, b"v")
    store.delete(inside + b"k1")
    expected.append(KeyEvent(inside + b"k1", store.revision(), True))
    res = store.txn([], [store.op_put(inside + b"t", b"1"), store.op_put(outside + b"t", b"1"),
                         store.op_delete(inside + b"k2")])
    expected += [KeyEvent(inside + b"t", res.revision, False, b"1"),
                 KeyEvent(inside + b"k2", res.revision, True)]
    until = store.put(outside + b"last", b"x")
    store.put(inside + b"after", b"not in the interval")
    return start, expected, until


@pytest.mark.parametrize("scope", ["keyspace", "prefix", "auto"])
def test_changes_since_returns_the_prefix_changes_in_order(store: EtcdStore, prefix: str,
                                                           scope: Any) -> None:
    start, expected, until = _interleaved(store, prefix)
    got = store.changes_since(f"{prefix}/in/".encode(), start, until, scope=scope)
    assert got == expected


def test_prefix_replay_with_nothing_under_the_prefix(store: EtcdStore, prefix: str) -> None:
    start = store.put(f"{prefix}/out/a".encode(), b"1")
    until = store.put(f"{prefix}/out/b".encode(), b"1")
    assert store.changes_since(f"{prefix}/in/".encode(), start, until) == []
    began = time.monotonic()
    got = store.changes_since(f"{prefix}/in/".encode(), start, until, scope="prefix")
    # etcd < 3.5.13 may send a progress notification before the replayed events, so silence
    # is all it says: "unknown" (the caller reads everything); newer servers say "nothing"
    assert got == ([] if store._orders_progress() else None)
    assert time.monotonic() - began < 3.0


def test_prefix_replay_longer_than_one_batch(store: EtcdStore, prefix: str) -> None:
    """etcd replays at most 1000 revisions per response: the rest follows."""
    inside = f"{prefix}/in/".encode()
    start = store.revision() + 1
    revs = [store.txn_wire([], [wire_put(inside + b"%04d" % i, b"v")]).revision
            for i in range(1010)]
    until = store.put(f"{prefix}/out/x".encode(), b"1")
    got = store.changes_since(inside, start, until, scope="prefix")
    assert got is not None and [c.mod_revision for c in got] == revs


def test_changes_since_compacted_history_is_none(store: EtcdStore, prefix: str) -> None:
    start = store.put(f"{prefix}/in/a".encode(), b"1")
    until = store.put(f"{prefix}/in/a".encode(), b"2")
    store._call(lambda c: c.kvstub.Compact(etcdrpc.CompactionRequest(revision=until),
                                           timeout=5))
    for scope in ("keyspace", "prefix"):
        assert store.changes_since(f"{prefix}/in/".encode(), start, until, scope=scope) is None


def _bulk(store: EtcdStore, prefix: str, batches: int) -> None:
    """Another application's traffic: 100 keys a transaction, outside `prefix`/in/."""
    for i in range(batches):
        store.txn_wire([], [wire_put(f"{prefix}/out/{j}".encode(), b"%d" % i)
                            for j in range(100)])


def _filled(store: EtcdStore, prefix: str) -> tuple[bytes, int]:
    inside = f"{prefix}/in/".encode()
    for i in range(20):
        store.put(inside + b"k%02d" % i, b"v0")
    return inside, store.revision() + 1


@pytest.mark.parametrize("keys", [20, 200])
def test_walk_after_bulk_traffic_finds_what_the_replay_finds(
        store: EtcdStore, prefix: str, keys: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 transactions of 100 foreign keys: reading the prefix beats replaying 6,000 events,
    and gives each changed key at its last revision. 20 keys: fewer than the revisions in
    between, which settles it without sampling the traffic; 200: more, so the last revisions'
    events are sampled."""
    inside, start = _filled(store, prefix)
    for i in range(20, keys):
        store.put(inside + b"k%02d" % i, b"v0")
    start = store.revision() + 1
    sampled: list[int] = []
    events_in = store._events_in
    monkeypatch.setattr(store, "_events_in",
                        lambda *a: sampled.append(1) or events_in(*a))  # type: ignore
    _bulk(store, prefix, 30)
    store.put(inside + b"k03", b"v1")  # changed
    _bulk(store, prefix, 30)
    store.put(inside + b"new", b"v1")  # added
    store.put(inside + b"k05", b"v1")
    until = store.put(inside + b"k05", b"v2")  # changed twice
    walked = store._walk(inside, start, until, 10.0)
    replayed = store.changes_since(inside, start, until)
    assert walked is not None and replayed is not None
    latest = {e.key: e.mod_revision for e in replayed}
    assert sorted((e.key, e.mod_revision) for e in walked) == sorted(latest.items())
    assert len(latest) == 3 and not any(e.deleted for e in walked)
    assert walked.examined <= replayed.examined  # the replay it saved, estimated
    if keys < until - start + 1:
        assert not sampled and walked.examined == until - start + 1  # one event a revision
    else:
        assert sampled and walked.examined >= 5000
    assert store.changes_since(inside, start, until, scope="auto") == walked
    cuts = [inside + b"k02", inside + b"k10", inside + b"k10", inside + b"new", b"/elsewhere/",
            inside]  # in order or not, repeated, outside the prefix, the prefix itself
    assert store._walk(inside, start, until, 10.0, cuts) == walked  # the parts add up
    assert store.changes_since(inside, start, until, scope="auto", cuts=cuts) == walked


@pytest.mark.parametrize("case", ["deleted", "deleted and made again", "short", "compacted"])
def test_walk_leaves_to_the_replay_what_it_cannot_see(store: EtcdStore, prefix: str,
                                                      case: str) -> None:
    """A walk sees no deletes (the counts before and after give them away), is not worth it
    over a few revisions, and cannot read a compacted past; the replay answers then."""
    inside, start = _filled(store, prefix)
    if case != "short":
        _bulk(store, prefix, 60)
    if case.startswith("deleted"):
        store.delete(inside + b"k01")
    if case == "deleted and made again":
        store.put(inside + b"k01", b"v1")
    until = store.put(inside + b"k02", b"v1")
    if case == "compacted":
        store._call(lambda c: c.kvstub.Compact(etcdrpc.CompactionRequest(revision=until),
                                               timeout=5))
    assert store._walk(inside, start, until, 10.0) is None
    got = store.changes_since(inside, start, until, scope="auto")
    if case == "compacted":
        assert got is None
    else:
        assert got is not None and got[-1] == KeyEvent(inside + b"k02", until, False, b"v1")
        assert any(e.deleted for e in got) == case.startswith("deleted")


def test_watch_prefix_delivers_key_events(store: EtcdStore, prefix: str) -> None:
    got: list[WatchBatch | Exception] = []
    done = threading.Event()

    def callback(batch: WatchBatch | Exception) -> None:
        got.append(batch)
        done.set()

    key = f"{prefix}/w/a".encode()
    start = store.revision() + 1
    watch = store.watch_prefix(f"{prefix}/w/".encode(), start, callback)
    try:
        res = store.txn([], [store.op_put(key, b"1"), store.op_delete(f"{prefix}/w/b".encode())])
        deleted = store.delete(key)
        assert done.wait(5)
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        store.cancel_watch(watch)
    assert deleted == 1
    first, second = got[:2]
    assert isinstance(first, WatchBatch) and isinstance(second, WatchBatch)
    assert first.events == [KeyEvent(key, res.revision, False, b"1")]
    assert first.revision == res.revision
    assert second.events == [KeyEvent(key, res.revision + 1, True)]


# -- builders and results ----------------------------------------------------------------------


def test_txn_result_ranges(store: EtcdStore, prefix: str) -> None:
    unit = f"{prefix}/svc/prod/".encode()
    a = store.put(unit + b"a", b"1")
    b = store.put(unit + b"b", b"2")
    rec = store.put(f"{prefix}/_system/units/svc".encode(), b"{}")
    res = store.txn([], [store.op_range_prefix(unit), store.op_get(f"{prefix}/_system/units/svc"
                                                                   .encode()),
                         store.op_get(f"{prefix}/missing".encode())])
    assert res.ranges() == [[KV(unit + b"a", b"1", a, a), KV(unit + b"b", b"2", b, b)],
                            [KV(f"{prefix}/_system/units/svc".encode(), b"{}", rec, rec)], []]
    put = store.txn([], [store.op_put(unit + b"c", b"3")])
    assert put.ranges() == [[]]


def test_cmp_created_zero_means_absent(store: EtcdStore, prefix: str) -> None:
    key = f"{prefix}/leader".encode()
    first = store.txn([store.cmp_created(key, 0)], [store.op_put(key, b"me")])
    second = store.txn([store.cmp_created(key, 0)], [store.op_put(key, b"you")])
    assert first.succeeded and not second.succeeded
    kv = store.get(key)
    assert kv is not None and kv.value == b"me" and kv.create_revision == first.revision
    assert store.txn([store.cmp_created(key, first.revision)], []).succeeded


def test_revision_within_a_prefix_is_the_store_revision(store: EtcdStore, prefix: str) -> None:
    rev = store.put(f"{prefix}/x".encode(), b"1")
    assert store.revision(within=f"{prefix}/".encode()) == store.revision() == rev


def test_prefix_end() -> None:
    assert prefix_end(b"/config/") == b"/config0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


# -- one house: only the store talks to etcd ---------------------------------------------------


def _client_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{path.relative_to(PACKAGE.parent)}: {n}" for n in names
                  if n.split(".")[0] in ("pyetcd", "grpc")]
    return found


def test_the_import_check_sees_the_store() -> None:
    assert _client_imports(PACKAGE / "etcdstore.py")  # the check itself works


def test_only_the_store_imports_the_etcd_client() -> None:
    offenders = [imp for path in sorted(PACKAGE.rglob("*.py")) if path.name != "etcdstore.py"
                 for imp in _client_imports(path)]
    assert offenders == []
