"""The user's path through the CLI: selections that match nothing fail, summaries tell the
truth, tables are never cut, conventions (help, environment, flags, exit statuses, colour)
hold for every command, markdown output, Ctrl-C, and the demo's on-call tour."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitconf.etcdstore import EtcdStore
from gitconf.model import UnitId
from gitconf.records import Keys
from tests.helpers import GitRepo, cli, make_repo, process_running

COMMANDS = ["validate", "diff", "apply", "status", "history", "get", "rollback", "pin",
            "unpin", "override", "overrides", "overrides list", "overrides cancel", "demo"]


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# -- 1. selections that match nothing ---------------------------------------------------------

def test_a_selection_that_matches_nothing_fails(example_repo: GitRepo, env: dict,
                                                store: EtcdStore) -> None:
    r = str(example_repo.path)
    before = store.revision()
    cases = [(["apply", "--service", "nosuch"], "no unit matches --service nosuch"),
             (["apply", "-s", "payments", "-s", "nosuch"], "no unit matches --service nosuch"),
             (["diff", "--env", "qa"], "no unit matches --env qa"),
             (["diff", "--service", "payments", "--env", "qa"],
              "no unit matches --service payments --env qa")]
    for args, message in cases:
        res = cli(*args, "--repo", r, env=env)
        assert res.exit_code == 1, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "payments" in res.stderr  # the services there are, as a hint
    assert store.revision() == before
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    res = cli("status", "--repo", r, "--service", "nosuch", env=env)
    assert res.exit_code == 1 and "no unit matches --service nosuch" in res.stderr


def test_a_service_gone_from_git_but_deployed_can_still_be_selected(
        tmp_path: Path, env: dict, store: EtcdStore, keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 2\n"})
    assert cli("apply", "--repo", str(repo.path), env=env).exit_code == 0
    repo.commit({"b/prod.yaml": None}, message="retire b")
    res = cli("apply", "--repo", str(repo.path), "--service", "b", env=env)
    assert res.exit_code == 0, res.stderr
    assert "1 key deleted" in res.stdout  # deletions are counted as deletions
    assert store.get(keys.data_key(UnitId("b", "prod"), "y")) is None


def test_validate_of_a_directory_without_services_fails(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a config repository\n")
    res = cli("validate", str(tmp_path))
    assert res.exit_code == 1
    assert "no services found" in res.stdout
    doc = cli("validate", str(tmp_path), "-o", "json").json()
    assert doc["valid"] is False and doc["problems"][0]["code"] == "no-services"
    github = cli("validate", str(tmp_path), "-o", "github")
    assert github.exit_code == 1
    assert github.stdout.startswith("::error title=gitconf no-services::no services found")


# -- 2. summaries that tell the truth ---------------------------------------------------------

def test_pinned_unit_is_not_reported_as_nothing_to_do(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert cli("pin", "payments", "prod", "--repo", r, "-m", "launch", env=env).exit_code == 0
    res = cli("apply", "--repo", r, "--full", env=env)
    assert res.exit_code == 0
    assert "nothing to do" not in res.stdout
    assert lines(res.stdout)[-1] == "nothing applied: 1 unit pinned, 14 in sync"


def test_no_prune_lists_what_it_kept(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    text = (example_repo.path / "notifications/prod.yaml").read_text()
    example_repo.commit({"notifications/prod.yaml": text.replace("  rate_per_second: 14.5\n",
                                                                 "")})
    kept = ("notifications/prod: kept 1 key Git no longer has (--no-prune): "
            "email.rate_per_second")
    diff = cli("diff", "--repo", r, "--no-prune", env=env)
    assert diff.exit_code == 0 and kept in diff.stdout
    assert "- email.rate_per_second" not in diff.stdout  # not shown as a deletion
    doc = cli("diff", "--repo", r, "--no-prune", "-o", "json", env=env).json()
    assert doc["unpruned"] == [{"service": "notifications", "environment": "prod",
                                "keys": ["email.rate_per_second"]}]
    dry = cli("apply", "--repo", r, "--no-prune", "--dry-run", env=env)
    assert kept in dry.stdout
    res = cli("apply", "--repo", r, "--no-prune", env=env)
    assert res.exit_code == 0 and kept in res.stdout
    assert "1 unit keeping keys Git no longer has (--no-prune)" in lines(res.stdout)[-1]
    res = cli("apply", "--repo", r, "--no-prune", "-o", "json", env=env)
    assert res.json()["unpruned"][0]["keys"] == ["email.rate_per_second"]


def test_a_failed_unit_is_the_last_line(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 1\n"})
    repo.commit({"a/prod.yaml": "x: 2\n", "b/prod.yaml": "y: 2\ny: 3\n"})
    res = cli("apply", "--repo", str(repo.path), env=env)
    assert res.exit_code == 1
    assert lines(res.stdout)[-1] == "1 unit failed; others applied"
    dry = cli("apply", "--repo", str(repo.path), "--dry-run", env=env)
    assert lines(dry.stdout)[-1].startswith("dry run, nothing written: etcd matches")
    assert lines(dry.stdout)[-1].endswith("1 unit would fail")


def test_dry_run_says_so_on_every_summary(example_repo: GitRepo, env: dict,
                                          store: EtcdStore) -> None:
    r = str(example_repo.path)
    before = store.revision()
    res = cli("apply", "--repo", r, "--dry-run", env=env)
    assert lines(res.stdout)[-1] == ("dry run, nothing written: 15 units would change: "
                                     "+122 ~0 -0 keys")
    doc = cli("apply", "--repo", r, "--dry-run", "-o", "json", env=env).json()
    assert doc["dry_run"] is True and doc["totals"]["added"] == 122
    md = cli("apply", "--repo", r, "--dry-run", "-o", "markdown", env=env).stdout
    assert "**dry run, nothing written: 15 units would change" in md
    assert store.revision() == before
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    text = (example_repo.path / "payments/prod.yaml").read_text()
    example_repo.commit({"payments/prod.yaml": text.replace("pool_size: 50", "pool_size: 9")})
    roll = cli("rollback", "v1.0.0", "--repo", r, "-s", "payments", "--dry-run", env=env)
    assert lines(roll.stdout)[-1].startswith("dry run, nothing written: ")


def test_history_shows_rollbacks_overrides_and_drift_reverts(tmp_path: Path, env: dict,
                                                             store: EtcdStore,
                                                             keys: Keys) -> None:
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n",
                                      ".gitconf.yaml": "drift: revert\n"})
    c1 = repo.head()
    r = str(repo.path)
    repo.commit({"a/prod.yaml": "x: 2\n"})
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    store.put(keys.data_key(UnitId("a", "prod"), "x"), b"7")  # a hand write: drift
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    assert cli("rollback", c1, "--repo", r, "-s", "a", "--yes", env=env).exit_code == 0
    assert cli("unpin", "a", "prod", env=env).exit_code == 0
    assert cli("override", "a", "prod", "x", "5", "--reason", "test", "--repo", r,
               env=env).exit_code == 0
    res = cli("history", "a", "prod", env=env)
    assert res.exit_code == 0
    sources = [re.split(r"\s{2,}", ln)[3] for ln in lines(res.stdout)[1:]]
    override = cli("overrides", "-o", "json", env=env).json()["overrides"][0]["id"]
    assert sources == [f"override {override}", f"rollback to {c1[:12]}", "git (drift reverted)",
                       "git"]


def test_emoji_codes_in_text_output_stay_as_written(tmp_path: Path, env: dict) -> None:
    """A commit subject, a key and a value with `:fire:` in them are printed as written, on
    stdout and on stderr: rich would have drawn them as pictures."""
    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n"})
    r = str(repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    repo.commit({"a/prod.yaml": "x: 'a:fire:b'\n"}, message="fix :fire: alarm")
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    res = cli("history", "a", "prod", "--verbose", env=env)
    assert res.exit_code == 0
    assert "fix :fire: alarm" in res.stdout and '"a:fire:b"' in res.stdout
    assert "\N{FIRE}" not in res.stdout
    bad = cli("apply", "--repo", r, "--service", ":fire:", env=env)
    assert bad.exit_code != 0
    assert ":fire:" in bad.stderr and "\N{FIRE}" not in bad.stderr


# -- 3. tables, status filters, --stat ----------------------------------------------------------

def test_tables_are_not_cut_off_a_terminal(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    reason = "INC-1234: " + "the checkout service times out under load " * 4
    assert cli("pin", "payments", "prod", "-m", reason, "--repo", r, env=env).exit_code == 0
    res = cli("status", "--repo", r, env=env)
    (row,) = [ln for ln in res.stdout.splitlines() if ln.startswith("payments/prod")]
    assert row.rstrip().endswith(reason.rstrip())  # one line, whole


def test_status_filters_and_exit_code(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    assert cli("apply", "--repo", r, "-s", "payments", env=env).exit_code == 0
    res = cli("status", "--repo", r, "-s", "payments", "--exit-code", "-o", "json", env=env)
    assert res.exit_code == 0
    assert {u["environment"] for u in res.json()["units"]} == {"dev", "staging", "prod"}
    res = cli("status", "--repo", r, "--state", "out-of-sync", "--exit-code", env=env)
    assert res.exit_code == 1 and "12 out-of-sync" in res.stdout
    assert "payments" not in res.stdout
    res = cli("status", "--repo", r, "-e", "prod", "--state", "in-sync", env=env)
    assert lines(res.stdout)[-1] == "1 in-sync"


def test_diff_stat_and_totals(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    res = cli("diff", "--repo", r, "--stat", env=env)
    assert res.exit_code == 0
    assert "database.pool_size" not in res.stdout  # counts only
    assert re.search(r"payments/prod\s+12\s+0\s+0", res.stdout)
    assert lines(res.stdout)[-1] == "15 units differ: +122 ~0 -0 keys"
    doc = cli("diff", "--repo", r, "--stat", "-o", "json", env=env).json()
    assert doc["totals"] == {"units": 15, "added": 122, "changed": 0, "deleted": 0}
    unit = next(u for u in doc["units"] if u["service"] == "payments" and
                u["environment"] == "prod")
    assert unit == {"service": "payments", "environment": "prod", "added": 12, "changed": 0,
                    "deleted": 0}


def test_progress_bar_counts_units_and_keys() -> None:
    from gitconf.cli.cmd_deploy import Progress

    bar = Progress(2)
    for _ in range(3):  # a unit beyond the estimate stretches the total
        bar.unit()
    bar.written(40)
    task = bar.bar.tasks[0]
    assert (task.completed, task.total, task.fields["keys"]) == (3, 3, 40)


# -- 4. conventions -----------------------------------------------------------------------------

def test_every_command_has_examples_and_its_environment(env: dict) -> None:
    root = cli("--help", env={"COLUMNS": "200"})
    assert root.exit_code == 0 and "Examples:" in root.stdout
    for var in ("GITCONF_ETCD_ENDPOINTS", "GITCONF_ETCD_USER", "GITCONF_ETCD_PASSWORD",
                "GITCONF_ETCD_CACERT", "GITCONF_ETCD_CERT", "GITCONF_ETCD_KEY",
                "GITCONF_ETCD_TIMEOUT", "GITCONF_PREFIX", "GITCONF_REPO",
                "GITCONF_WEBHOOK_SECRET", "GITCONF_CACHE_DIR", "GITHUB_TOKEN", "GITHUB_API_URL",
                "GITHUB_ACTOR", "NO_COLOR"):
        assert var in root.stdout, var
    for command in COMMANDS:
        res = cli(*command.split(), "--help", env={"COLUMNS": "200"})
        assert res.exit_code == 0, command
        assert "Examples:" in res.stdout, command
        assert f"gitconf {command}" in res.stdout, command
    apply = cli("apply", "--help", env={"COLUMNS": "200"}).stdout
    for var in ("GITCONF_ETCD_PASSWORD", "GITCONF_ETCD_TIMEOUT", "GITHUB_TOKEN",
                "GITHUB_ACTOR", "GITCONF_CACHE_DIR"):
        assert var in apply, var
    assert "[default: 127.0.0.1:2379]" in apply and "[default: /config]" in apply


def test_connection_flags_before_the_command(example_repo: GitRepo, env: dict) -> None:
    r = str(example_repo.path)
    good, prefix = env["GITCONF_ETCD_ENDPOINTS"], env["GITCONF_PREFIX"]
    bad = {**env, "GITCONF_ETCD_ENDPOINTS": "127.0.0.1:1", "GITCONF_PREFIX": "/elsewhere"}
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    res = cli("--etcd", good, "--prefix", prefix, "status", "--repo", r, "-o", "json", env=bad)
    assert res.exit_code == 0, res.stderr
    assert {u["state"] for u in res.json()["units"]} == {"in-sync"}
    # the command's own flag wins over the one before it
    res = cli("--etcd", "127.0.0.1:1", "get", "payments", "prod", "--etcd", good, env=env)
    assert res.exit_code == 0 and "database.pool_size = 50" in res.stdout
    assert cli("--etcd", "127.0.0.1:1", "history", "payments", "prod", env=env).exit_code == 2


def test_unpin_and_declined_rollback_are_not_errors(example_repo: GitRepo, env: dict,
                                                    store: EtcdStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    r = str(example_repo.path)
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    res = cli("unpin", "payments", "prod", env=env)
    assert res.exit_code == 0 and "payments/prod is not pinned: nothing to do" in res.stdout
    assert cli("unpin", "payments", "prod", "-o", "json", env=env).json()["unpinned"] is None
    text = (example_repo.path / "payments/prod.yaml").read_text()
    example_repo.commit({"payments/prod.yaml": text.replace("pool_size: 50", "pool_size: 9")})
    assert cli("apply", "--repo", r, env=env).exit_code == 0
    monkeypatch.setattr("gitconf.cli.cmd_rollback.is_terminal", lambda: True)
    before = store.revision()
    res = cli("rollback", "v1.0.0", "--repo", r, "-s", "payments", env=env, input="n\n")
    assert res.exit_code == 0, res.stderr
    assert lines(res.stdout)[-1] == "rollback cancelled; nothing written"
    assert store.revision() == before


@pytest.mark.parametrize("args", [["apply", "--bogus"], ["diff", "--format", "xml"],
                                  ["status", "--state", "fine"], ["history", "a", "b", "-n", "0"],
                                  ["unpin"], ["nosuchcommand"], ["--etcd"],
                                  ["rollback"], ["validate", "-o", "yaml"]])
def test_usage_errors_exit_2(args: list[str], env: dict) -> None:
    assert cli(*args, env=env).exit_code == 2


def test_no_color_removes_every_escape(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc/prod.yaml").write_text("a: 1\na: 2\n")
    forced = {"FORCE_COLOR": "1"}
    assert "\x1b[" in cli("validate", str(tmp_path), env=forced).stdout  # styled when forced
    for args, extra in ((["--no-color", "validate", str(tmp_path)], {}),
                        (["validate", str(tmp_path)], {"NO_COLOR": ""}),
                        (["--no-color", "apply", "--bogus"], {})):
        res = cli(*args, env={**forced, **extra})
        assert "\x1b" not in res.stdout + res.stderr, args
    proc = subprocess.run([sys.executable, "-m", "gitconf", "status", "--help"],
                          env={**os.environ, "FORCE_COLOR": "1", "NO_COLOR": "1"},
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Examples:" in proc.stdout and "\x1b" not in proc.stdout


def _buffered(env: dict | None = None) -> dict[str, str]:
    """The environment with Python's output buffered, as for a user (this one may set
    PYTHONUNBUFFERED, which would hide an unflushed exit)."""
    out = {**os.environ, **(env or {})}
    out.pop("PYTHONUNBUFFERED", None)
    return out


def _process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitconf", *args], capture_output=True,
                          text=True, env=_buffered(env))


def test_the_process_ends_as_the_interpreter_would(tmp_path: Path, env: dict) -> None:
    """`gitconf` skips the interpreter's teardown (`cli.main._exit`): statuses, messages and
    every line of output are what a normal exit gives, on a pipe too."""
    assert _process("--version").returncode == 0
    usage = _process("apply", "--bogus")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc/prod.yaml").write_text("a: 1\na: 2\n")
    bad = _process("validate", str(tmp_path))
    assert bad.returncode == 1 and "2:1  duplicate-key" in bad.stdout
    repo = make_repo(tmp_path / "r", {f"s{i}/prod.yaml": "".join(f"k{k}: {k}\n"
                                                                 for k in range(300))
                                      for i in range(20)})
    for fmt in ("text", "json"):  # rich flushes each print; JSON is one buffered write
        piped = _process("diff", "--repo", str(repo.path), "-f", fmt, env=env)
        assert piped.returncode == 0, piped.stderr
        inproc = cli("diff", "--repo", str(repo.path), "-f", fmt, env=env).stdout
        assert piped.stdout == inproc and len(lines(piped.stdout)) > 6_000


def test_a_closed_pipe_ends_the_process_quietly(tmp_path: Path, env: dict) -> None:
    repo = make_repo(tmp_path / "r", {f"s{i}/prod.yaml": "".join(f"k{k}: {k}\n"
                                                                 for k in range(500))
                                      for i in range(40)})
    proc = subprocess.Popen([sys.executable, "-m", "gitconf", "diff", "--repo", str(repo.path)],
                            env=_buffered(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1, 120)
    assert "Traceback" not in err and "Exception ignored" not in err


def test_threads_and_atexit_handlers_still_finish(tmp_path: Path) -> None:
    """What a library leaves to the end of the process still happens: a non-daemon thread is
    waited for, and `atexit` handlers run, before the process exits."""
    done = tmp_path / "thread-done"
    script = (
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: sys.stderr.write('atexit ran\\n'))\n"
        f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(done)!r}, 'w'))).start()\n"
        "sys.argv = ['gitconf', '--version']\n"
        "from gitconf.cli.main import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=_buffered())
    assert proc.returncode == 0 and "atexit ran" in proc.stderr and proc.stdout.strip()
    assert done.exists()


# -- 5. markdown ------------------------------------------------------------------------------

def test_markdown_for_validate_diff_and_apply(example_repo: GitRepo, env: dict,
                                              tmp_path: Path) -> None:
    (tmp_path / "v/svc").mkdir(parents=True)
    (tmp_path / "v/svc/prod.yaml").write_text("a: 1\na: 2\n")
    md = cli("validate", str(tmp_path / "v"), "-o", "markdown")
    assert md.exit_code == 1 and md.stdout.startswith("### gitconf validate")
    assert "❌ invalid: 1 error, 0 warnings (1 files, 1 units, 1 keys)" in md.stdout
    assert "| `svc/prod.yaml:2:1` | `a` | `duplicate-key` |" in md.stdout
    r = str(example_repo.path)
    diff = cli("diff", "--repo", r, "-o", "markdown", env=env).stdout
    assert diff.startswith("### gitconf diff at `v1.0.0`")
    assert "| `payments/prod` | 12 | 0 | 0 |" in diff
    assert "| `database.password` | add |  | `***` |" in diff  # masked
    assert "prod-password-from-vault" not in diff
    assert "**15 units differ: +122 ~0 -0 keys**" in diff
    apply = cli("apply", "--repo", r, "-o", "markdown", env=env)
    assert apply.exit_code == 0
    assert "| `payments/prod` | #1 | `v1.0.0` | 12 | 0 | 0 |" in apply.stdout
    assert "**applied v1.0.0: 15 deploys, 122 keys written**" in apply.stdout


# -- 6. Ctrl-C --------------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_during_a_parallel_apply_ends_it_cleanly(tmp_path: Path, env: dict) -> None:
    files = {f"svc{i:03d}/{e}.yaml": "".join(f"key{k}: value-{i}-{k}\n" for k in range(30))
             for i in range(250) for e in ("dev", "prod")}
    repo = make_repo(tmp_path / "big", files)
    proc = subprocess.Popen([sys.executable, "-m", "gitconf", "apply", "--repo", str(repo.path)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        workers: set[int] = set()
        while time.monotonic() - started < 30 and proc.poll() is None:
            workers = {c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)}
            if workers:  # the parallel loader is running
                break
            time.sleep(0.05)
        assert workers, "the parallel loader never started"
        time.sleep(max(0.0, 0.5 - (time.monotonic() - started)) + 0.3)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert took < 5, stderr
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "leaked semaphore" not in stderr and "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 3  # the resource tracker leaves when its parent has gone
    while time.monotonic() < deadline and any(process_running(c) for c in children):
        time.sleep(0.05)
    left = {c: _cmdline(c) for c in children if process_running(c)}
    assert not left, (left, stderr)


# -- 7. the demo's on-call tour -----------------------------------------------------------------

def test_demo_shows_rollback_drift_and_override() -> None:
    started = time.monotonic()
    res = cli("demo")
    assert res.exit_code == 0, res.stdout[-3000:] + res.stderr
    assert time.monotonic() - started < 20
    out = res.stdout
    for expected in ("pinned 1 unit(s) to", "nothing applied: 1 unit pinned, 14 in sync",
                     "pinned to", "unpinned payments/prod",
                     "(drift: changed in etcd, not in Git)",
                     "drift in search/prod kept as override",
                     "open a pull request from gitconf/override/payments/prod to main by hand",
                     "held by override", "demo complete"):
        assert expected in out, expected
    assert json.dumps("riley@example.com") in out
