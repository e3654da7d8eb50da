#!/usr/bin/env python3
"""The GitHub Action's helper: job summaries, step outputs, the sticky pull-request comment and
the commit status. Standalone on purpose (standard library only, no gitconf import): it runs on
the runner's Python, next to whatever gitconf version the Action installed.

    action_comment.py summary validate|diff|apply [REPORT] [--exit-code N]  markdown on stdout
    action_comment.py outputs diff|apply REPORT         changed=, units=, report= to GITHUB_OUTPUT
    action_comment.py comment BODY_FILE [--marker M]    create or update one sticky PR comment
    action_comment.py status STATE [--report REPORT] [--exit-code N] [--context C] [--sha SHA]

REPORT is the `--format json` output of that gitconf command (`-` or nothing: stdin). The
comment and the status need GITHUB_TOKEN; GITHUB_API_URL, GITHUB_REPOSITORY,
GITHUB_EVENT_PATH, GITHUB_SHA, GITHUB_SERVER_URL and GITHUB_RUN_ID come from the runner.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = "<!-- gitconf-diff -->"
MAX_ROWS = 50  # table rows per unit (and units per table): a summary, not a dump
MAX_CELL = 80  # characters of a value shown in a table cell
MAX_BODY = 60_000  # GitHub refuses comments over 65,536 characters

# ---------------------------------------------------------------------------------------------
# markdown


def cell(value: Any, limit: int = MAX_CELL) -> str:
    """One table cell: JSON for values, no line breaks, pipes escaped, long text cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # GitHub's tables take `\|` for a pipe, inside code spans too; a backtick would end the span
    return text.replace("|", "\\|").replace("`", "'")


def code(value: Any, limit: int = MAX_CELL) -> str:
    return f"`{cell(value, limit)}`"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def unit_name(item: dict[str, Any]) -> str:
    return f"{item.get('service', '?')}/{item.get('environment', '?')}"


def count(value: Any) -> int:
    """`added`/`changed`/`deleted` are lists of keys (or counts, should the CLI shorten them)."""
    return len(value) if isinstance(value, list) else int(value or 0)


def more(rows: list[Any], what: str) -> list[str]:
    return ["", f"… and {len(rows) - MAX_ROWS} more {what}"] if len(rows) > MAX_ROWS else []


def head(command: str, report: dict[str, Any]) -> str:
    commit = str(report.get("commit") or "")[:12]
    version = report.get("version")
    where = f" at `{cell(version)}`" if version else ""
    if commit and commit != version:
        where += f" (`{commit}`)"
    return f"### gitconf {command}{where}"


def skipped_failed(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for kind, icon in (("failed", "❌"), ("skipped", "⏭️")):
        items = [i for i in report.get(kind) or [] if isinstance(i, dict)]
        if items:
            out += ["", f"**{icon} {len(items)} {kind}**", ""]
            out += table(["unit", "reason"], ([code(unit_name(i)), cell(i.get("reason", ""))]
                                              for i in items[:MAX_ROWS]))
            out += more(items, "units")
    return out


def problems_md(problems: list[dict[str, Any]]) -> list[str]:
    rows = ([code(f"{p.get('file', '')}:{p.get('line', 0)}:{p.get('column', 0)}"),
             code(p.get("key")) if p.get("key") else "", code(p.get("code", "")),
             cell(p.get("message", ""), 300)] for p in problems[:MAX_ROWS])
    return [*table(["where", "key", "code", "message"], rows), *more(problems, "problems")]


def validate_md(report: dict[str, Any]) -> list[str]:
    problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    files, keys = report.get("files", 0), report.get("keys", 0)
    if report.get("valid") and not problems:
        return ["### gitconf validate", "", f"✅ valid: {files} files, {keys} keys"]
    errors = sum(p.get("severity", "error") == "error" for p in problems)
    verdict = "❌ invalid" if not report.get("valid") else "⚠️ valid, with warnings"
    return ["### gitconf validate", "",
            f"{verdict}: {errors} error(s), {len(problems) - errors} warning(s) "
            f"in {files} files, {keys} keys", "", *problems_md(problems)]


def diff_md(report: dict[str, Any]) -> list[str]:
    units = [u for u in report.get("units") or [] if isinstance(u, dict) and u.get("changes")]
    out = [head("diff", report), ""]
    if not units:
        out.append("✅ no changes: etcd matches Git")
    else:
        changes = [c for u in units for c in u["changes"]]
        ops = {op: sum(c.get("op") == op for c in changes) for op in ("add", "change", "delete")}
        out.append(f"**{len(units)} unit(s) change**: +{ops['add']} ~{ops['change']} "
                   f"-{ops['delete']} keys")
        out += ["", *table(["unit", "added", "changed", "deleted"], (
            [code(unit_name(u))] + [str(sum(c.get("op") == op for c in u["changes"]))
                                    for op in ("add", "change", "delete")]
            for u in units[:MAX_ROWS])), *more(units, "units")]
        for u in units[:MAX_ROWS]:
            rows = ([code(c.get("key", "")), c.get("op", "") + (" (drift)" if c.get("drift")
                                                                else ""),
                     code(c.get("old")) if c.get("op") != "add" else "",
                     code(c.get("new")) if c.get("op") != "delete" else ""]
                    for c in u["changes"][:MAX_ROWS])
            out += ["", f"<details><summary><code>{html.escape(unit_name(u))}</code>: "
                        f"{len(u['changes'])} key(s)</summary>", "",
                    *table(["key", "op", "old", "new"], rows), *more(u["changes"], "keys"),
                    "", "</details>"]
    problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    out += skipped_failed(report)
    if problems:
        out += ["", f"**{len(problems)} problem(s)**", "", *problems_md(problems)]
    return out


def apply_md(report: dict[str, Any]) -> list[str]:
    deploys = [d for d in report.get("deploys") or [] if isinstance(d, dict)]
    out = [head("apply" + (" (dry run)" if report.get("dry_run") else ""), report), ""]
    if deploys:
        keys = sum(count(d.get(k)) for d in deploys for k in ("added", "changed", "deleted"))
        out += [f"🚀 **{len(deploys)} deploy(s)**, {keys} key(s) written", "",
                *table(["unit", "deploy", "version", "added", "changed", "deleted"], (
                    [code(unit_name(d)), f"#{d.get('deploy', '?')}", code(d.get("version", "")),
                     *(str(count(d.get(k))) for k in ("added", "changed", "deleted"))]
                    for d in deploys[:MAX_ROWS])), *more(deploys, "deploys")]
    elif not report.get("failed"):
        out.append("✅ nothing to do: etcd matches Git")
    problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    out += skipped_failed(report)
    if problems:
        out += ["", f"**{len(problems)} problem(s)**", "", *problems_md(problems)]
    return out


RENDER = {"validate": validate_md, "diff": diff_md, "apply": apply_md}


def read_report(source: str | None) -> dict[str, Any] | None:
    """The command's JSON, or None when it printed none (usage or connection error)."""
    try:
        text = sys.stdin.read() if source in (None, "-") else Path(str(source)).read_text()
        doc = json.loads(text)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def summary(command: str, report: dict[str, Any] | None, exit_code: int) -> str:
    if report is None:
        return (f"### gitconf {command}\n\n❌ gitconf {command} failed (exit {exit_code}) "
                "before producing a report: see the job log.\n")
    lines = RENDER[command](report)
    if exit_code and command != "validate":
        lines += ["", f"❌ gitconf {command} exited with status {exit_code}."]
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_BODY:
        text = text[:MAX_BODY] + "\n\n… (cut: see the job log)\n"
    return text


# ---------------------------------------------------------------------------------------------
# step outputs


def outputs(command: str, report: dict[str, Any] | None, path: str) -> dict[str, str]:
    if report is None:
        return {"report": path}
    if command == "apply":
        units = [unit_name(d) for d in report.get("deploys") or [] if isinstance(d, dict)]
    else:
        units = [unit_name(u) for u in report.get("units") or []
                 if isinstance(u, dict) and u.get("changes")]
    return {"changed": "true" if units else "false",
            "units": json.dumps(sorted(set(units)), separators=(",", ":")), "report": path}


def write_outputs(values: dict[str, str]) -> None:
    target = os.environ.get("GITHUB_OUTPUT")
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


# ---------------------------------------------------------------------------------------------
# GitHub REST API


class GitHub:
    def __init__(self, token: str, api: str | None = None, tries: int = 4) -> None:
        self.token = token
        self.api = (api or os.environ.get("GITHUB_API_URL") or "https://api.github.com")
        self.api = self.api.rstrip("/")
        self.tries = tries

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "gitconf-action",
            **({"Content-Type": "application/json"} if data is not None else {})})
        for attempt in range(1, self.tries + 1):
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as e:
                limited = e.code == 429 or (e.code == 403 and e.headers.get(
                    "x-ratelimit-remaining") == "0")
                if attempt == self.tries or not (e.code >= 500 or limited):
                    detail = e.read().decode(errors="replace")[:300]
                    raise SystemExit(f"gitconf action: {method} {path}: HTTP {e.code} {detail}"
                                     ) from None
                time.sleep(retry_delay(e.headers.get("Retry-After"),
                                       e.headers.get("x-ratelimit-reset"), attempt))
            except urllib.error.URLError as e:
                if attempt == self.tries:
                    raise SystemExit(f"gitconf action: {method} {path}: {e.reason}") from None
                time.sleep(retry_delay(None, None, attempt))
        raise AssertionError("unreachable")


def retry_delay(retry_after: str | None, reset: str | None, attempt: int) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 60.0)
    if reset and reset.isdigit():
        return max(0.0, min(float(reset) - time.time(), 60.0))
    return min(0.5 * 2.0 ** (attempt - 1), 8.0)


def repository() -> str:
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    if "/" not in repo:
        raise SystemExit("gitconf action: GITHUB_REPOSITORY is not set")
    return repo


def pull_request_number() -> int | None:
    path = os.environ.get("GITHUB_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return None
    for holder in (event.get("pull_request"), event.get("issue"), event):
        if isinstance(holder, dict) and isinstance(holder.get("number"), int):
            return int(holder["number"])
    return None


def sticky_comment(gh: GitHub, repo: str, number: int, body: str, marker: str) -> str:
    """Update the comment carrying `marker` (the first, should there be several), else create it.
    Returns "created" or "updated"."""
    if marker not in body:
        body = f"{marker}\n{body}"
    page = 1
    while True:
        comments = gh.call("GET", f"/repos/{repo}/issues/{number}/comments"
                                  f"?per_page=100&page={page}") or []
        for c in comments:
            if marker in (c.get("body") or ""):
                gh.call("PATCH", f"/repos/{repo}/issues/comments/{c['id']}", {"body": body})
                return "updated"
        if len(comments) < 100:
            break
        page += 1
    gh.call("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
    return "created"


def status_description(report: dict[str, Any] | None, exit_code: int) -> str:
    if report is None:
        return f"gitconf apply failed (exit {exit_code}) before producing a report"
    deploys, failed = len(report.get("deploys") or []), len(report.get("failed") or [])
    text = f"{report.get('version') or 'applied'}: {deploys} deploy(s)"
    if failed:
        text += f", {failed} unit(s) failed"
    if exit_code and not failed:
        text += f", exit {exit_code}"
    return text


def run_url() -> str | None:
    server, repo, run = (os.environ.get(k) for k in
                         ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo and run else None


# ---------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="action_comment.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("command", choices=sorted(RENDER))
    s.add_argument("report", nargs="?")
    s.add_argument("--exit-code", type=int, default=0)
    o = sub.add_parser("outputs")
    o.add_argument("command", choices=["diff", "apply"])
    o.add_argument("report")
    c = sub.add_parser("comment")
    c.add_argument("body_file")
    c.add_argument("--marker", default=MARKER)
    st = sub.add_parser("status")
    st.add_argument("state", choices=["success", "failure", "error", "pending"])
    st.add_argument("--context", default="gitconf/apply")
    st.add_argument("--description", default="")
    st.add_argument("--sha", default="")
    st.add_argument("--report", help="apply's JSON: its commit and a description")
    st.add_argument("--exit-code", type=int, default=0)
    a = p.parse_args(argv)

    if a.cmd == "summary":
        sys.stdout.write(summary(a.command, read_report(a.report), a.exit_code))
        return 0
    if a.cmd == "outputs":
        write_outputs(outputs(a.command, read_report(a.report), a.report))
        return 0

    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        print("gitconf action: no github-token: nothing posted", file=sys.stderr)
        return 0
    gh = GitHub(token)
    if a.cmd == "comment":
        number = pull_request_number()
        if number is None:
            print("gitconf action: not a pull request event: no comment", file=sys.stderr)
            return 0
        body = Path(a.body_file).read_text(encoding="utf-8")
        done = sticky_comment(gh, repository(), number, body, a.marker)
        print(f"gitconf action: pull request #{number}: comment {done}")
        return 0
    report = read_report(a.report) if a.report else None
    sha = a.sha or str((report or {}).get("commit") or "") or os.environ.get("GITHUB_SHA", "")
    if len(sha) < 40:
        raise SystemExit("gitconf action: no commit to set a status on (GITHUB_SHA)")
    description = a.description or status_description(report, a.exit_code)
    status: dict[str, Any] = {"state": a.state, "context": a.context,
                              "description": description[:140]}
    if url := run_url():
        status["target_url"] = url
    gh.call("POST", f"/repos/{repository()}/statuses/{sha}", status)
    print(f"gitconf action: status {a.context}={a.state} on {sha[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
