"""`gitconf daemon` for the people who run it: an HTTP server that slow or idle clients cannot
hold, configuration errors that stop it at start (one line, exit 2), `--listen :port` and
`--interval` units, log lines an on-call can read (start-up line, trigger of each deploy,
drift with keys but no values, one line per error streak, summaries for large cycles), and
idle cycles in the metrics. Real processes, real etcd, loopback only."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitconf.cli.cmd_daemon import parse_duration
from gitconf.daemon.http import Endpoints, make_server, parse_listen, serve
from gitconf.daemon.logs import JsonFormatter, RepeatFilter, TextFormatter, one_line
from gitconf.embedded_etcd import EmbeddedEtcd, etcd_binary, free_port
from gitconf.errors import EtcdUnavailable, UsageError
from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.daemons import DaemonProc, wait_until
from tests.helpers import GitRepo, cli, git, make_repo

SECRET = "ops-s3cret"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- helpers --------------------------------------------------------------------------------


def lines(d: DaemonProc) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (anything else in its output is returned as `raw`)."""
    out = []
    for line in d.logs().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


def messages(d: DaemonProc, pattern: str) -> list[str]:
    return [x["msg"] for x in lines(d) if re.search(pattern, x.get("msg", ""))]


def run_daemon(*args: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str, float]:
    """`gitconf daemon ARGS` as a process that is expected to stop by itself."""
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "gitconf", "daemon", *args],
                         env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stderr, time.monotonic() - start


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


def value(store: EtcdStore, keys: Keys, unit: UnitId, key: str = "a") -> Any:
    kv = store.get(keys.data_key(unit, key))
    return None if kv is None else json.loads(kv.value)["value"]


@pytest.fixture
def remote(tmp_path: Path) -> tuple[GitRepo, Path]:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    files: dict[str, str | bytes | None] = {".gitconf.yaml": "drift: revert\n"}
    files.update({f"svc{i:02d}/prod.yaml": "a: 1\n" for i in range(25)})
    work = make_repo(tmp_path / "work", files)
    git(work.path, "remote", "add", "origin", str(bare))
    git(work.path, "push", "-q", "origin", "main")
    return work, bare


def push(work: GitRepo, files: dict[str, str | bytes | None]) -> str:
    sha = work.commit(files)
    git(work.path, "push", "-q", "origin", "main")
    return sha


# -- 1. the HTTP server is bounded in connections and in time -------------------------------


def test_slow_clients_neither_hold_healthz_nor_stay_past_the_deadline(
        tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), {**env, "GITCONF_WEBHOOK_SECRET": SECRET},
                   "--interval", "10m").start()
    socks: list[socket.socket] = []
    try:
        wait_until(lambda: d.ready()[0] == 200)
        opened = time.monotonic()
        for i in range(50):  # half still in the headers, half in a body of 1000 bytes
            s = socket.create_connection(("127.0.0.1", d.port), timeout=2)
            s.sendall(b"POST /webhook/github HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                      b"POST /webhook/github HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: 1000\r\n\r\n{")
            socks.append(s)
        closed_at: dict[int, float] = {}
        next_check = time.monotonic()
        while len(closed_at) < len(socks) and time.monotonic() - opened < 14:
            if time.monotonic() >= next_check:  # /healthz answers at once, again and again
                t = time.monotonic()
                assert d.get("/healthz")[0] == 200
                assert time.monotonic() - t < 1.0
                next_check = t + 2
            _trickle(socks, closed_at)
        assert len(closed_at) == 50, f"only {len(closed_at)} connections were cut"
        assert max(closed_at.values()) - opened < 10 + 2  # the 10 s deadline (and a poll)
        assert min(closed_at.values()) - opened > 8  # a byte every second kept none alive
        assert d.get("/healthz")[0] == 200
        assert len(messages(d, "body incomplete")) == 1  # 25 of them: one line per streak
        assert d.proc is not None and d.proc.poll() is None
    finally:
        for s in socks:
            s.close()
        d.stop()


def _trickle(socks: list[socket.socket], closed_at: dict[int, float]) -> None:
    """One byte to each connection still open, and note those the server cut."""
    for i, s in enumerate(socks):
        if i not in closed_at:
            try:
                s.sendall(b"a")
            except OSError:
                closed_at[i] = time.monotonic()
    live = [s for i, s in enumerate(socks) if i not in closed_at]
    readable, _, _ = select.select(live, [], [], 1.0) if live else ([], [], [])
    for s in readable:
        try:
            gone = s.recv(4096) == b""
        except OSError:
            gone = True
        if gone:
            closed_at[socks.index(s)] = time.monotonic()


def _endpoints() -> Endpoints:
    return Endpoints(lambda: (True, {"status": "ok"}), lambda: b"", "main", SECRET,
                     lambda after: None, lambda: None)


def _get(port: int, path: str = "/healthz") -> tuple[int, float]:
    """The status (0: the connection failed) and how long the answer took."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, time.monotonic() - start
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - start
    except OSError:
        return 0, time.monotonic() - start


def test_connections_beyond_the_limit_get_503_at_once_and_the_deadline_frees_them() -> None:
    server = make_server("127.0.0.1", 0, _endpoints(), max_connections=4, deadline=1.5)
    serve(server)
    port = server.server_address[1]
    idle = []
    try:
        assert _get(port)[0] == 200
        for _ in range(4):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(0.2)  # accepted: four threads wait on them
        status, took = _get(port)
        assert status == 503 and took < 0.5  # no slot: answered by the accepting thread
        wait_until(lambda: _get(port)[0] == 200, timeout=1.5 + 1.0)  # the idle ones timed out
        for s in idle:
            s.settimeout(1)
            assert s.recv(100) == b""  # cut by the server, without an answer
        # a body that would exceed 25 MB is refused before it is read
        body_too_large = urllib.request.Request(
            f"http://127.0.0.1:{port}/webhook/github", data=b"{}", method="POST",
            headers={"Content-Length": str(25 * 1024 * 1024 + 1)})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(body_too_large, timeout=3)
        assert exc.value.code == 413
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()


# -- 2. configuration errors stop the daemon at start ---------------------------------------


def test_busy_listen_port_is_one_line_and_exit_2(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err, _ = run_daemon("--repo", str(repo.path), "--listen", f"127.0.0.1:{port}",
                                  env=env)
    assert code == 2
    assert one_error_line(err) == f"error: cannot listen on 127.0.0.1:{port}: address " \
                                  f"already in use"


def test_missing_repository_or_branch_fails_fast(tmp_path: Path, env: dict) -> None:
    listen = ("--listen", "127.0.0.1:0")
    code, err, took = run_daemon("--repo", str(tmp_path / "no" / "such"), *listen, env=env)
    assert code == 2 and took < 10
    assert one_error_line(err) == f"error: {tmp_path / 'no' / 'such'}: no such repository"
    code, err, took = run_daemon("--repo", f"file://{tmp_path}/gone.git", *listen, env=env)
    assert code == 2 and took < 10
    assert "does not appear to be a git repository" in one_error_line(err)
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    code, err, took = run_daemon("--repo", str(repo.path), "--branch", "nope", *listen,
                                 env=env)
    assert code == 2 and took < 10
    assert one_error_line(err) == f"error: branch 'nope' not found in {repo.path}"


def test_a_branch_deleted_later_is_retried_and_reported(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    git(repo.path, "branch", "live")
    d = DaemonProc(tmp_path, str(repo.path), env, "--branch", "live",
                   "--interval", "200ms").start()
    try:
        wait_until(lambda: d.ready()[0] == 200)
        git(repo.path, "branch", "-D", "live")
        wait_until(lambda: d.ready_is(503, git=False), timeout=10)
        wait_until(lambda: d.metric('gitconf_errors_total{kind="git"}') >= 3, timeout=10)
        assert len(messages(d, "branch 'live' not found")) == 1  # once for the streak
        git(repo.path, "branch", "live")
        wait_until(lambda: d.ready()[0] == 200, timeout=15)
        wait_until(lambda: messages(d, "git source working again after"), timeout=5)
        assert messages(d, r"… repeated \d+ more time\(s\).*branch 'live' not found")
    finally:
        assert d.stop() == 0


PASSWORD = "r00t-Pa55"


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EmbeddedEtcd]:
    server = EmbeddedEtcd().start()
    ctl = str(Path(etcd_binary()).with_name("etcdctl"))
    for args in (["user", "add", "root", "--interactive=false"], ["auth", "enable"]):
        res = subprocess.run([ctl, f"--endpoints=http://{server.endpoint}", *args],
                             input=f"{PASSWORD}\n", capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    try:
        yield server
    finally:
        server.cleanup()


def test_wrong_etcd_password_at_start_is_exit_2(tmp_path: Path, auth_etcd: EmbeddedEtcd) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    env = {"GITCONF_ETCD_ENDPOINTS": auth_etcd.endpoint, "GITCONF_ETCD_USER": "root",
           "GITCONF_ETCD_PASSWORD": "not-the-password", "GITCONF_PREFIX": "/auth"}
    code, err, took = run_daemon("--repo", str(repo.path), "--listen", "127.0.0.1:0",
                                 env=env)
    assert code == 2 and took < 15
    line = one_error_line(err)
    assert line.startswith("error: authentication failed") and "not-the-password" not in line


def test_unreachable_etcd_at_start_is_retried_logged_once_and_reported_back(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    port = free_port()
    env = {"GITCONF_ETCD_ENDPOINTS": f"127.0.0.1:{port}", "GITCONF_PREFIX": "/later",
           "GITCONF_CACHE_DIR": str(tmp_path / "cache")}
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "300ms",
                   "--lease-ttl", "2").start()
    etcd = EmbeddedEtcd(client_port=port, data_dir=str(tmp_path / "etcd"))
    try:
        wait_until(lambda: d.metric('gitconf_errors_total{kind="etcd"}') >= 3, timeout=20)
        assert d.ready_is(503, etcd=False)
        errors = messages(d, "^etcd error")
        assert len(errors) == 1, errors  # one line for the whole streak
        assert "\n" not in errors[0] and "RpcError" not in errors[0]
        assert f"127.0.0.1:{port} is unreachable" in errors[0]
        etcd.start()
        wait_until(lambda: d.ready()[0] == 200, timeout=30)
        wait_until(lambda: messages(d, r"^etcd reachable again after \d+ failed attempt"),
                   timeout=5)
        assert messages(d, r"^… repeated \d+ more time\(s\) until .*: etcd error")
    finally:
        assert d.stop() == 0
        etcd.cleanup()


def test_unreachable_remote_at_start_is_retried_and_its_credentials_never_shown(
        tmp_path: Path, env: dict) -> None:
    url = f"https://deploy:t0ps3cret@127.0.0.1:{free_port()}/config.git"
    no_proxy = {"GIT_TERMINAL_PROMPT": "0", "https_proxy": "", "HTTPS_PROXY": "",
                "http_proxy": "", "HTTP_PROXY": "", "all_proxy": "", "ALL_PROXY": "",
                "no_proxy": "*", "NO_PROXY": "*"}  # loopback only, whatever the machine says
    d = DaemonProc(tmp_path, url, {**env, **no_proxy}, "--interval", "10m").start()
    try:
        wait_until(lambda: d.metric('gitconf_errors_total{kind="git"}') >= 2, timeout=20)
        assert d.proc is not None and d.proc.poll() is None
        start = next(x for x in lines(d) if "started" in x.get("msg", ""))
        assert start["repo"] == f"https://***@127.0.0.1:{url.rsplit(':', 1)[1]}"
        assert start["drift"] == "from .gitconf.yaml"  # not read yet
        assert len(messages(d, "^git error")) == 1
        assert "t0ps3cret" not in d.logs()
    finally:
        assert d.stop() == 0


# -- 3. --listen :port and --interval units -------------------------------------------------


def test_listen_forms_and_every_interface() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen(":8080") == ("", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8080", "host:", "host:http", ":99999"):
        with pytest.raises(UsageError):
            parse_listen(bad)
    server = make_server("", 0, _endpoints())  # what `--listen :0` binds: every interface
    serve(server)
    try:
        assert server.server_address[0] in ("::", "0.0.0.0")
        assert _get(server.server_address[1])[0] == 200  # reached through loopback
    finally:
        server.shutdown()
        server.server_close()


def test_interval_units_and_bad_values(env: dict) -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("2m") == 120
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h") == 3600
    assert parse_duration("1m30s") == 90
    assert parse_duration("45") == 45  # bare seconds (demo --watch passes "5")
    for bad in ("10x", "", "0s", "-1", "1m 30s", "ms"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    res = cli("daemon", "--repo", ".", "--interval", "10x", env=env)
    assert res.exit_code == 2 and one_error_line(res.stderr).startswith("error: '10x'")
    res = cli("daemon", "--repo", ".", "--listen", "8080", env=env)
    assert res.exit_code == 2 and "--listen takes host:port or :port" in res.stderr


# -- 4. log lines ---------------------------------------------------------------------------


def test_start_line_deploy_lines_with_triggers_and_drift_without_values(
        remote: tuple[GitRepo, Path], tmp_path: Path, env: dict, store: EtcdStore,
        keys: Keys) -> None:
    work, bare = remote
    d = DaemonProc(tmp_path, f"file://{bare}", {**env, "GITCONF_WEBHOOK_SECRET": SECRET},
                   "--interval", "10m").start()
    unit0, unit1 = UnitId("svc00", "prod"), UnitId("svc01", "prod")
    try:
        # 200 alone may be a standby's answer, before the first pass has logged its lines
        wait_until(lambda: d.ready_is(200, first_reconcile=True), timeout=20)
        start = next(x for x in lines(d) if "started" in x.get("msg", ""))
        assert {k: start[k] for k in ("branch", "prefix", "interval", "drift", "webhook")} == {
            "branch": "main", "prefix": env["GITCONF_PREFIX"], "interval": "10m",
            "drift": "revert", "webhook": "on"}
        assert start["version"] and start["etcd"] == f"http://{env['GITCONF_ETCD_ENDPOINTS']}"
        assert all(ISO_Z.match(x["ts"]) for x in lines(d) if "ts" in x)
        # 25 deploys at start: one summary line, not 25
        summary = [x for x in lines(d) if x.get("msg", "").startswith("deployed 25 units")]
        assert len(summary) == 1 and summary[0]["trigger"] == "start"
        assert not messages(d, r"^deployed svc\d\d/prod")
        # a push announced by the webhook
        sha = push(work, {"svc00/prod.yaml": "a: 2\n"})
        assert d.push_hook(SECRET) == 202
        wait_until(lambda: value(store, keys, unit0) == 2, timeout=10)
        line = wait_until_line(d, r"^deployed svc00/prod #2")
        assert line["trigger"] == "webhook" and line["commit"] == sha
        assert (line["added"], line["changed"], line["deleted"]) == (0, 1, 0)
        # drift: reverted, the line names the policy and the key, never the value
        store.put(keys.data_key(unit1, "a"), b'{"value": 987654, "version": "manual", '
                                             b'"metadata": {}}')
        wait_until(lambda: value(store, keys, unit1) == 1, timeout=10)
        drift = wait_until_line(d, r"^drift in svc01/prod reverted")
        assert drift["msg"] == "drift in svc01/prod reverted to Git (policy revert): keys a"
        assert wait_until_line(d, r"^deployed svc01/prod #2")["trigger"] == "etcd"
        assert "987654" not in d.logs()
    finally:
        d.stop()


def wait_until_line(d: DaemonProc, pattern: str, timeout: float = 10) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [x for x in lines(d) if re.search(pattern, x.get("msg", ""))]
        return bool(found)

    wait_until(seen, timeout=timeout)
    return found[0]


def test_poll_and_file_triggers(remote: tuple[GitRepo, Path], tmp_path: Path,
                                env: dict) -> None:
    work, bare = remote
    polled = DaemonProc(tmp_path, f"file://{bare}", env, "--interval", "500ms",
                        name="poll").start()
    try:
        wait_until(lambda: polled.ready()[0] == 200, timeout=20)
        push(work, {"svc02/prod.yaml": "a: 3\n"})
        assert wait_until_line(polled, r"^deployed svc02/prod #2")["trigger"] == "poll"
    finally:
        polled.stop()
    local = make_repo(tmp_path / "local", {"svc/prod.yaml": "a: 1\n"})
    filed = DaemonProc(tmp_path, str(local.path), {**env, "GITCONF_PREFIX": "/file-trigger"},
                       "--interval", "10m", name="file").start()
    try:
        wait_until(lambda: filed.ready()[0] == 200, timeout=20)
        assert wait_until_line(filed, r"^deployed svc/prod #1")["trigger"] == "start"
        local.commit({"svc/prod.yaml": "a: 2\n"})
        assert wait_until_line(filed, r"^deployed svc/prod #2")["trigger"] == "file"
    finally:
        filed.stop()


def test_text_format_timestamps_and_repeat_filter() -> None:
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("there",),
                                    "levelname": "INFO", "levelno": logging.INFO,
                                    "created": 1736937000.25})
    assert TextFormatter().format(record) == "2025-01-15T10:30:00.250Z INFO hello there"
    assert json.loads(JsonFormatter().format(record))["ts"] == "2025-01-15T10:30:00.250Z"
    f = RepeatFilter()

    def warn(msg: str, **extra: Any) -> bool:
        return f.filter(logging.makeLogRecord({"msg": msg, "levelno": logging.WARNING,
                                               "name": "gitconf.daemon", **extra}))

    assert warn("etcd at x is unreachable (Connection refused)")
    assert not warn("etcd at x is unreachable (failed to connect to all addresses)")
    assert warn("webhook rejected")
    assert not warn("webhook rejected")
    assert warn("svc/prod not applied", every=True) and warn("svc/prod not applied", every=True)
    held = f.end()
    assert sorted(h.count for h in held) == [1, 1]
    assert warn("webhook rejected")  # a new streak


class _Status:
    name = "UNAVAILABLE"


class _RpcError(Exception):
    """What a grpc error that escaped the store looks like."""

    def code(self) -> _Status:
        return _Status()

    def details(self) -> str:
        return "connection refused"

    def __str__(self) -> str:
        return '<_InactiveRpcError of RPC that terminated with:\n\tdebug_error_string = "…">'


def test_errors_are_one_line() -> None:
    assert one_line(_RpcError()) == "_RpcError: UNAVAILABLE: connection refused"
    assert one_line(EtcdUnavailable("etcd at x is unreachable (refused)")) == \
        "etcd at x is unreachable (refused)"  # gitconf's own errors: as they are
    assert one_line(KeyError("a\nb")) == "KeyError: 'a\\nb'"


# -- 5. metrics -----------------------------------------------------------------------------


def test_idle_cycles_are_timed_and_count_as_success(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    d = DaemonProc(tmp_path, str(repo.path), env, "--interval", "200ms").start()
    try:
        wait_until(lambda: d.metric('gitconf_reconciles_total{result="idle"}') >= 3)
        idle = 'gitconf_reconcile_duration_seconds_count{result="idle"}'
        wait_until(lambda: d.metric(idle) >= 3)
        assert d.metric('gitconf_reconcile_duration_seconds_count{result="success"}') >= 1
        first = d.metric("gitconf_last_success_timestamp_seconds")
        time.sleep(1.1)
        assert d.metric("gitconf_last_success_timestamp_seconds") > first  # idle ones too
        assert d.metric('gitconf_reconcile_duration_seconds_sum{result="idle"}') < \
            d.metric(idle) * 0.5  # idle cycles are cheap
    finally:
        d.stop()
