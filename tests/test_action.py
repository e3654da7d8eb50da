"""The GitHub Action's script, run as Actions would run it: bash, each input in the environment
variable its step maps it to, GITHUB_* files in a temporary directory; the GitHub API is a small
local HTTP server that records what it is asked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import GitRepo, cli

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
STEP = ACTION["runs"]["steps"][-1]
SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Step:
    returncode: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]

    @property
    def log(self) -> str:
        return self.stdout + self.stderr


def step_env(inputs: Mapping[str, str]) -> dict[str, str]:
    """The step's `env:` with `${{ inputs.x }}` resolved from `inputs`, else the defaults."""
    unknown = set(inputs) - set(ACTION["inputs"])
    assert not unknown, f"not inputs of action.yml: {unknown}"
    out = {}
    for name, value in STEP["env"].items():
        m = re.fullmatch(r"\$\{\{ inputs\.([a-z0-9-]+) \}\}", value)
        assert m, f"{name} must be exactly one input"
        out[name] = inputs.get(m[1], str(ACTION["inputs"][m[1]].get("default", "")))
    return out


def run_step(tmp: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None,
             **inputs: str) -> Step:
    run_dir = tmp / "runner"
    run_dir.mkdir(exist_ok=True)
    summary, output = run_dir / "summary.md", run_dir / "output.txt"
    summary.write_text("")
    output.write_text("")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
    full_env = {**base, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "GITHUB_ACTION_PATH": str(ROOT), "RUNNER_TEMP": str(run_dir),
                "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
                **step_env({k.replace("_", "-"): v for k, v in inputs.items()}), **(env or {})}
    res = subprocess.run(["bash", "-c", STEP["run"]], cwd=cwd or tmp, env=full_env,
                         capture_output=True, text=True, timeout=120)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if line)
    return Step(res.returncode, res.stdout, res.stderr, summary.read_text(), outputs)


# ---------------------------------------------------------------------------------------------
# inputs reach gitconf as separate arguments


FakeCli = dict[str, Any]  # {"env": PATH first to it, "calls": () -> the argv of each call}


@pytest.fixture
def fake_gitconf(tmp_path: Path) -> Iterator[FakeCli]:
    """A `gitconf` first on PATH that records its argv and prints the report it is given."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    (bin_dir / "gitconf").write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.stdout.write(os.environ.get('FAKE_REPORT', '{}'))\n"
        "sys.exit(int(os.environ.get('FAKE_RC', '0')))\n")
    (bin_dir / "gitconf").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                   f"{os.environ['PATH']}"}
    yield {"env": env, "calls": lambda: [json.loads(line) for line in
                                         calls.read_text().splitlines()]}


def test_args_are_one_per_line_with_spaces_intact(tmp_path: Path, fake_gitconf: FakeCli) -> None:
    report = json.dumps({"commit": SHA, "version": "v1", "deploys": [], "skipped": [],
                         "failed": []})
    res = run_step(tmp_path, env={**fake_gitconf["env"], "FAKE_REPORT": report,
                                  "GITHUB_ACTOR": "octo cat"},
                   command="apply", path="config repo", service="payments, search\ncheckout",
                   environment="prod", ref="v1.0.0",
                   args="--actor\n  release bot  \n\n--no-prune\n*\n$(touch pwned)\n")
    assert res.returncode == 0, res.log
    [argv] = fake_gitconf["calls"]()
    assert argv == ["apply", "--repo", "config repo",
                    "--service", "payments", "--service", "search", "--service", "checkout",
                    "--env", "prod", "--ref", "v1.0.0", "--actor", "octo cat",
                    "--actor", "release bot", "--no-prune", "*", "$(touch pwned)",
                    "--format", "json"]
    assert not (tmp_path / "pwned").exists()


def test_validate_passes_args_and_runs_twice_for_the_summary(tmp_path: Path,
                                                             fake_gitconf: FakeCli) -> None:
    res = run_step(tmp_path, env=fake_gitconf["env"], command="validate", path="my config",
                   args="--flag with space")
    assert res.returncode == 0, res.log
    assert fake_gitconf["calls"]() == [
        ["validate", "my config", "--format", "github", "--flag with space"],
        ["validate", "my config", "--format", "markdown", "--flag with space"]]


def test_pip_cache_key_step(tmp_path: Path) -> None:
    [step] = [s for s in ACTION["runs"]["steps"] if s.get("id") == "pip-cache"]
    output = tmp_path / "output.txt"
    env = {**os.environ, "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_OUTPUT": str(output),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", step["run"]], env=env, check=True, timeout=60)
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert Path(values["dir"]).is_absolute() and re.fullmatch(r"[0-9a-f]{16}", values["hash"])


# ---------------------------------------------------------------------------------------------
# validate: annotations and a job summary


def test_validate_step_annotates_fails_and_summarises(tmp_path: Path) -> None:
    (tmp_path / "config" / "svc").mkdir(parents=True)
    (tmp_path / "config" / "svc" / "prod.yaml").write_text("a: 1\na: 2\n")
    res = run_step(tmp_path, command="validate", path="config")
    assert res.returncode == 1
    assert ("::error file=config/svc/prod.yaml,line=2,col=1,title=gitconf duplicate-key::"
            in res.stdout)
    assert "### gitconf validate" in res.summary
    assert "| where | key | code | message |" in res.summary
    assert re.search(r"\| `svc/prod.yaml:2:1` \| `a` \| `duplicate-key` \| duplicate key",
                     res.summary), res.summary


def test_validate_step_passes_on_the_example(tmp_path: Path) -> None:
    res = run_step(tmp_path, cwd=ROOT, command="validate", path="examples/config-repo")
    assert res.returncode == 0, res.log
    assert "✅ valid: " in res.summary


def test_validate_text_format(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "prod.yaml").write_text("a: [\n")
    res = run_step(tmp_path, command="validate", format="text")
    assert res.returncode == 1
    assert "::error" not in res.stdout
    assert "❌ invalid" in res.summary


def test_unknown_command_is_an_error(tmp_path: Path) -> None:
    res = run_step(tmp_path, command="deploy")
    assert res.returncode == 2 and "unknown command 'deploy'" in res.stdout


def test_unknown_command_cannot_inject_workflow_commands(tmp_path: Path) -> None:
    res = run_step(tmp_path, command="x\n::add-mask::y")
    assert res.returncode == 2
    assert not any(line.startswith("::add-mask") for line in res.stdout.splitlines())


# ---------------------------------------------------------------------------------------------
# diff and apply against a real etcd: job summary and GITHUB_OUTPUT


def test_diff_and_apply_write_outputs_and_summaries(tmp_path: Path, example_repo: GitRepo,
                                                   env: dict[str, str]) -> None:
    repo = str(example_repo.path)
    diff = run_step(tmp_path, env=env, command="diff", path=repo)
    assert diff.returncode == 0, diff.log
    assert diff.outputs["changed"] == "true"
    units = json.loads(diff.outputs["units"])
    assert len(units) == 15 and "payments/prod" in units
    assert json.loads(Path(diff.outputs["report"]).read_text())["units"]
    assert "### gitconf diff at `v1.0.0`" in diff.summary
    assert "**15 unit(s) change**" in diff.summary
    assert "<details><summary><code>payments/prod</code>" in diff.summary
    assert "### gitconf diff" in diff.stdout  # the log shows the summary too

    apply = run_step(tmp_path, env=env, command="apply", path=repo, service="payments")
    assert apply.returncode == 0, apply.log
    assert apply.outputs["changed"] == "true"
    assert json.loads(apply.outputs["units"]) == ["payments/dev", "payments/prod",
                                                  "payments/staging"]
    assert "🚀 **3 deploy(s)**" in apply.summary
    assert re.search(r"\| `payments/prod` \| #1 \| `v1.0.0` \| \d+ \| 0 \| 0 \|", apply.summary)
    got = cli("get", "payments", "prod", "database.pool_size", "--format", "json", env=env)
    assert got.json()["metadata"]["deployed_by"] == env["GITHUB_ACTOR"]

    again = run_step(tmp_path, env=env, command="apply", path=repo, service="payments")
    assert again.returncode == 0, again.log
    assert again.outputs["changed"] == "false" and again.outputs["units"] == "[]"
    assert "nothing to do" in again.summary

    rest = run_step(tmp_path, env=env, command="diff", path=repo, environment="prod")
    assert json.loads(rest.outputs["units"]) == sorted(
        u for u in units if u.endswith("/prod") and not u.startswith("payments/"))


def test_diff_without_etcd_fails_with_a_summary(tmp_path: Path, example_repo: GitRepo) -> None:
    res = run_step(tmp_path, env={"GITCONF_ETCD_ENDPOINTS": "127.0.0.1:9"}, command="diff",
                   path=str(example_repo.path))
    assert res.returncode == 2, res.log
    assert "failed (exit 2) before producing a report" in res.summary
    assert "changed" not in res.outputs and res.outputs["report"]


# ---------------------------------------------------------------------------------------------
# the sticky comment and the commit status, against a local stand-in for the GitHub API


@dataclass
class FakeGitHub:
    url: str = ""
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer 502 to that many requests first

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.fail_first:
            self.fail_first -= 1
            return 502, {"message": "bad gateway"}
        m = re.fullmatch(r"/repos/o/r/issues/7/comments(?:\?per_page=(\d+)&page=(\d+))?", path)
        if m and method == "GET":
            per, page = int(m[1] or 30), int(m[2] or 1)
            return 200, self.comments[(page - 1) * per: page * per]
        if m and method == "POST":
            comment = {"id": 1000 + len(self.comments), "body": body["body"]}
            self.comments.append(comment)
            return 201, comment
        m = re.fullmatch(r"/repos/o/r/issues/comments/(\d+)", path)
        if m and method == "PATCH":
            [comment] = [c for c in self.comments if c["id"] == int(m[1])]
            comment["body"] = body["body"]
            return 200, comment
        m = re.fullmatch(r"/repos/o/r/statuses/([0-9a-f]{40})", path)
        if m and method == "POST":
            self.statuses.append({"sha": m[1], **body})
            return 201, body
        return 404, {"message": "Not Found"}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.requests.append((self.command, self.path, dict(self.headers), body))
            code, answer = fake.handle(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def github_env(tmp: Path, fake: FakeGitHub, event: dict[str, Any]) -> dict[str, str]:
    (tmp / "event.json").write_text(json.dumps(event))
    return {"GITHUB_API_URL": fake.url, "GITHUB_REPOSITORY": "o/r",
            "GITHUB_EVENT_PATH": str(tmp / "event.json"), "GITHUB_SHA": SHA,
            "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": "42",
            "GITHUB_ACTOR": "octocat"}


def test_diff_keeps_one_sticky_comment(tmp_path: Path, github: FakeGitHub,
                                       example_repo: GitRepo, env: dict[str, str]) -> None:
    gh_env = {**env, **github_env(tmp_path, github, {"pull_request": {"number": 7}})}
    github.comments.append({"id": 1, "body": "LGTM"})
    first = run_step(tmp_path, env=gh_env, command="diff", path=str(example_repo.path),
                     comment="true", github_token="t0ken")
    assert first.returncode == 0, first.log
    assert "comment created" in first.stdout
    [(_, _, headers, _), *_] = github.requests
    assert headers["Authorization"] == "Bearer t0ken"
    assert [r[0] for r in github.requests] == ["GET", "POST"]
    [_, sticky] = github.comments
    first_body = sticky["body"]
    assert sticky["body"].startswith("<!-- gitconf-diff -->\n### gitconf diff")
    assert "15 unit(s) change" in sticky["body"]

    prod = (example_repo.path / "payments" / "prod.yaml").read_text()
    example_repo.commit({"payments/prod.yaml": prod.replace("pool_size: 50", "pool_size: 51")},
                        message="one more connection")
    github.requests.clear()
    second = run_step(tmp_path, env=gh_env, command="diff", path=str(example_repo.path),
                      comment="true", github_token="t0ken")
    assert second.returncode == 0, second.log
    assert "comment updated" in second.stdout
    assert [(r[0], r[1]) for r in github.requests] == [
        ("GET", "/repos/o/r/issues/7/comments?per_page=100&page=1"),
        ("PATCH", f"/repos/o/r/issues/comments/{sticky['id']}")]
    assert len(github.comments) == 2 and github.comments[1]["id"] == sticky["id"]
    assert github.comments[1]["body"].count("<!-- gitconf-diff -->") == 1
    assert github.comments[1]["body"] != first_body
    assert "`51`" in github.comments[1]["body"]


def test_sticky_comment_found_on_a_later_page_and_retried_on_5xx(tmp_path: Path,
                                                                 github: FakeGitHub) -> None:
    github.comments.extend({"id": i, "body": f"comment {i}"} for i in range(1, 101))
    github.comments.append({"id": 101, "body": "<!-- gitconf-diff -->\nold plan"})
    github.fail_first = 1
    body = tmp_path / "body.md"
    body.write_text("### gitconf diff\n\nnew plan\n")
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "action_comment.py"), "comment", str(body)],
        env={**os.environ, **github_env(tmp_path, github, {"number": 7}),
             "GITHUB_TOKEN": "t"}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert [(r[0], r[1].split("?")[-1]) for r in github.requests] == [
        ("GET", "per_page=100&page=1"), ("GET", "per_page=100&page=1"),
        ("GET", "per_page=100&page=2"), ("PATCH", "/repos/o/r/issues/comments/101")]
    assert github.comments[-1]["body"] == "<!-- gitconf-diff -->\n### gitconf diff\n\nnew plan\n"


def test_no_comment_outside_pull_requests_or_without_token(tmp_path: Path, github: FakeGitHub,
                                                           fake_gitconf: FakeCli) -> None:
    report = json.dumps({"units": []})
    push = {**fake_gitconf["env"], **github_env(tmp_path, github, {"ref": "refs/heads/main"}),
            "FAKE_REPORT": report}
    res = run_step(tmp_path, env=push, command="diff", comment="true", github_token="t")
    assert res.returncode == 0, res.log
    assert "not a pull request" in res.stderr and github.requests == []
    res = run_step(tmp_path, env=push, command="diff", comment="true")
    assert res.returncode == 0 and "needs github-token" in res.stdout
    assert github.requests == []


def test_apply_sets_the_commit_status(tmp_path: Path, github: FakeGitHub,
                                      example_repo: GitRepo, env: dict[str, str]) -> None:
    gh_env = {**env, **github_env(tmp_path, github, {"ref": "refs/heads/main"})}
    res = run_step(tmp_path, env=gh_env, command="apply", path=str(example_repo.path),
                   github_token="t0ken")
    assert res.returncode == 0, res.log
    [status] = github.statuses
    assert status == {"sha": example_repo.head(), "state": "success", "context": "gitconf/apply",
                      "description": "v1.0.0: 15 deploy(s)",
                      "target_url": "https://github.example/o/r/actions/runs/42"}
    no_status = run_step(tmp_path, env=gh_env, command="apply", path=str(example_repo.path),
                         github_token="t0ken", status="false")
    assert no_status.returncode == 0 and len(github.statuses) == 1
    # each deploy records who and which run deployed it
    got = cli("get", "payments", "prod", "database.pool_size", "--format", "json", env=gh_env)
    assert got.json()["metadata"]["deployed_by"] == \
        "octocat (https://github.example/o/r/actions/runs/42)"


def test_failed_apply_sets_a_failure_status(tmp_path: Path, github: FakeGitHub,
                                            fake_gitconf: FakeCli) -> None:
    report = json.dumps({"commit": SHA, "version": "v2", "deploys": [], "skipped": [],
                         "failed": [{"service": "svc", "environment": "prod",
                                     "reason": "invalid"}]})
    res = run_step(tmp_path, env={**fake_gitconf["env"], "FAKE_REPORT": report, "FAKE_RC": "1",
                                  **github_env(tmp_path, github, {})},
                   command="apply", github_token="t")
    assert res.returncode == 1
    assert github.statuses[0]["state"] == "failure"
    assert github.statuses[0]["description"] == "v2: 0 deploy(s), 1 unit(s) failed"
    assert "**❌ 1 failed**" in res.summary and "| `svc/prod` | invalid |" in res.summary
    assert res.outputs["changed"] == "false"


def test_api_errors_warn_but_do_not_fail_the_step(tmp_path: Path, fake_gitconf: FakeCli) -> None:
    report = json.dumps({"commit": SHA, "deploys": [], "skipped": [], "failed": []})
    res = run_step(tmp_path, env={**fake_gitconf["env"], "FAKE_REPORT": report,
                                  "GITHUB_API_URL": "http://127.0.0.1:9", "GITHUB_REPOSITORY":
                                  "o/r", "GITHUB_SHA": SHA},
                   command="apply", github_token="t")
    assert res.returncode == 0, res.log
    assert "::warning title=gitconf::could not set the commit status" in res.stdout
