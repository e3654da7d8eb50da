"""A small, stateful GitHub REST API for tests, strict about what it is sent.

Why: a mock that answers whatever it is asked proves nothing about the real GitHub. This
server checks EVERY request against GitHub's own OpenAPI description (the vendored subset in
tests/openapi/github-subset.json, made by scripts/vendor-github-openapi): the operation must
exist, path and query parameters must match their schemas, and the JSON body must validate
against the operation's requestBody schema. A request that does not answers 400 and is
recorded in `violations`; tests assert `violations == []`. Its own answers are checked against
the response schemas too (types only: it does not invent every field GitHub sends).

    with FakeGitHub(token="t0k", repo="acme/config") as gh:
        client = GitHubClient("acme/config", token="t0k", api_url=gh.url)
        ...
        assert gh.violations == []

It keeps pull requests, labels, issue comments and commit statuses; tests change a pull
request's fate with `merge(n)` / `close(n)`, inject faults with `fail_next(...)` and
`fail_all(...)`, and read `requests_log`. Standard library HTTP server on 127.0.0.1, one thread.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "openapi" / "github-subset.json"
SPEC_URI = "urn:gitconf:github-openapi-subset"
API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"

# The fake's answers omit many fields GitHub sends: check the ones present, not `required`.
_LenientValidator = extend(Draft202012Validator, validators={"required": lambda *_: None})


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _openapi30_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` is `type: [T, "null"]` in JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_openapi30_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _openapi30_to_jsonschema(value) for key, value in node.items()}
    if out.pop("nullable", False) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _pointer(*parts: str) -> str:
    escaped = "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
    return SPEC_URI + "#" + quote("/" + escaped, safe="/~")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    regex: re.Pattern[str]
    parameters: tuple[dict[str, Any], ...]
    body_required: bool
    has_body: bool


class OpenApiChecker:
    """Matches requests to operations of the vendored spec and validates them."""

    def __init__(self, spec_path: Path = SPEC_PATH):
        self.spec: dict[str, Any] = _openapi30_to_jsonschema(json.loads(spec_path.read_text()))
        self._registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(self.spec, default_specification=DRAFT202012))
        self.operations = [self._compile(template, method, op)
                           for template, item in self.spec["paths"].items()
                           for method, op in item.items()]

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self._registry.resolver().lookup(SPEC_URI + node["$ref"]).contents
        return node

    def _compile(self, template: str, method: str, op: dict[str, Any]) -> Operation:
        params = tuple(self._deref(p) for p in op.get("parameters", ()))
        multi = {p["name"] for p in params if p.get("x-multi-segment")}

        def group(m: re.Match[str]) -> str:
            return f"(?P<{m.group(1)}>{'.+' if m.group(1) in multi else '[^/]+'})"

        regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", group, re.escape(template)) + "$")
        body = op.get("requestBody")
        return Operation(method.upper(), template, op["operationId"], regex, params,
                         bool(body and body.get("required")), body is not None)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            m = op.regex.match(path)
            if m and op.method == method:
                return op, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    def _validator(self, pointer: str, lenient: bool = False) -> Draft202012Validator:
        cls = _LenientValidator if lenient else Draft202012Validator
        validator: Draft202012Validator = cls({"$ref": pointer}, registry=self._registry)
        return validator

    def check_params(self, op: Operation, path_params: dict[str, str],
                     query: dict[str, str]) -> list[str]:
        problems: list[str] = []
        known = {p["name"] for p in op.parameters if p["in"] == "query"}
        problems += [f"unknown query parameter {name!r}" for name in query if name not in known]
        for param in op.parameters:
            where = {"path": path_params, "query": query}.get(param["in"], {})
            name = param["name"]
            if name not in where:
                if param.get("required"):
                    problems.append(f"missing required {param['in']} parameter {name!r}")
                continue
            value: Any = where[name]
            schema = param.get("schema", {})
            if schema.get("type") == "integer":
                value = int(value) if re.fullmatch(r"-?\d+", value) else value
            problems += [f"{param['in']} parameter {name!r}: {e.message}"
                         for e in Draft202012Validator(schema).iter_errors(value)]
        return problems

    def check_body(self, op: Operation, body: Any, present: bool) -> list[str]:
        if not op.has_body:
            return ["this operation takes no request body"] if present else []
        if not present:
            return ["missing required request body"] if op.body_required else []
        pointer = _pointer("paths", op.template, op.method.lower(), "requestBody", "content",
                           "application/json", "schema")
        return [f"body{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
                for e in self._validator(pointer).iter_errors(body)]

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        responses = self.spec["paths"][op.template][op.method.lower()]["responses"]
        if str(status) not in responses:
            return [f"status {status} is not documented for {op.operation_id}"]
        response = self._deref(responses[str(status)])
        if "application/json" not in response.get("content", {}):
            return []
        ref = responses[str(status)].get("$ref")
        pointer = (SPEC_URI + ref + "/content/application~1json/schema" if ref else _pointer(
            "paths", op.template, op.method.lower(), "responses", str(status), "content",
            "application/json", "schema"))
        return [f"response {status} {list(e.absolute_path)}: {e.message}"
                for e in self._validator(pointer, lenient=True).iter_errors(body)]


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]  # Authorization's value replaced by "<redacted>"


@dataclass
class FakePull:
    number: int
    head: str
    base: str
    title: str
    body: str
    state: str = "open"
    merged: bool = False
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    head_sha: str = ""
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    closed_at: str | None = None
    merged_at: str | None = None


@dataclass
class FakeComment:
    id: int
    issue: int
    body: str
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    body: Any
    times: int


_FAULT_BODIES: dict[int, dict[str, str]] = {
    401: {"message": "Bad credentials"},
    403: {"message": "Resource not accessible by integration"},
    404: {"message": "Not Found"},
    429: {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
}


class _Reply(Exception):
    """Raised inside a handler to answer at once (GitHub's errors)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found() -> _Reply:
    return _Reply(404, {"message": "Not Found", "documentation_url": DOCS})


def _validation_failed(*errors: dict[str, str]) -> _Reply:
    return _Reply(422, {"message": "Validation Failed", "errors": list(errors),
                        "documentation_url": DOCS})


class GitHubState:
    """Pull requests, labels, comments and statuses of the repositories, and the API on them."""

    def __init__(self, base_url: str, repos: list[str]):
        self.base_url = base_url
        self.repos = {r.lower(): r for r in repos}
        self.pulls: dict[int, FakePull] = {}
        self.comments: dict[int, FakeComment] = {}
        self.statuses: list[dict[str, Any]] = []
        self._next_number = 1
        self._next_id = 1000

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def repo(self, owner: str, name: str) -> str:
        full = self.repos.get(f"{owner}/{name}".lower())
        if full is None:
            raise _not_found()
        return full

    def pull(self, number: int) -> FakePull:
        if number not in self.pulls:
            raise _not_found()
        return self.pulls[number]

    def open_pull(self, head: str, base: str = "main", title: str = "t", body: str = "") -> int:
        number = self._next_number
        self._next_number += 1
        sha = hashlib.sha1(f"{head}:{number}".encode()).hexdigest()
        self.pulls[number] = FakePull(number, head, base, title, body, head_sha=sha)
        return number

    # -- JSON shaped like GitHub's -------------------------------------------------------

    def user_json(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": 1, "node_id": "U_1", "type": "User", "site_admin": False,
                "html_url": f"https://github.example/{login}"}

    def pull_json(self, repo: str, pr: FakePull) -> dict[str, Any]:
        owner = repo.split("/")[0]
        api = f"{self.base_url}/repos/{repo}/pulls/{pr.number}"
        return {
            "id": 500 + pr.number, "node_id": f"PR_{pr.number}", "number": pr.number,
            "url": api, "html_url": f"https://github.example/{repo}/pull/{pr.number}",
            "state": pr.state, "locked": False, "title": pr.title, "body": pr.body,
            "draft": pr.draft, "merged": pr.merged, "merged_at": pr.merged_at,
            "closed_at": pr.closed_at, "created_at": pr.created_at,
            "updated_at": pr.updated_at, "user": self.user_json("gitconf-bot"),
            "labels": [self.label_json(repo, n) for n in pr.labels],
            "head": {"ref": pr.head, "sha": pr.head_sha, "label": f"{owner}:{pr.head}"},
            "base": {"ref": pr.base, "sha": "0" * 40, "label": f"{owner}:{pr.base}"},
        }

    def label_json(self, repo: str, name: str) -> dict[str, Any]:
        return {"id": abs(hash(name)) % 10**6, "node_id": f"L_{name}", "name": name,
                "url": f"{self.base_url}/repos/{repo}/labels/{quote(name)}",
                "color": "ededed", "default": False, "description": ""}

    def comment_json(self, repo: str, c: FakeComment) -> dict[str, Any]:
        return {"id": c.id, "node_id": f"IC_{c.id}", "body": c.body,
                "url": f"{self.base_url}/repos/{repo}/issues/comments/{c.id}",
                "html_url": f"https://github.example/{repo}/pull/{c.issue}#issuecomment-{c.id}",
                "issue_url": f"{self.base_url}/repos/{repo}/issues/{c.issue}",
                "user": self.user_json("gitconf-bot"), "created_at": c.created_at,
                "updated_at": c.updated_at}

    # -- operations (by operationId) ------------------------------------------------------

    def handle(self, op_id: str, p: dict[str, str], q: dict[str, str],
               body: Any) -> tuple[int, Any, dict[str, str]]:
        repo = self.repo(p["owner"], p["repo"])
        handler = getattr(self, "op_" + op_id.replace("/", "_").replace("-", "_"))
        result: tuple[int, Any, dict[str, str]] = handler(repo, p, q, body or {})
        return result

    def op_pulls_list(self, repo: str, p: dict[str, str], q: dict[str, str],
                      body: Any) -> tuple[int, Any, dict[str, str]]:
        state, head, base = q.get("state", "open"), q.get("head"), q.get("base")
        found = [pr for pr in sorted(self.pulls.values(), key=lambda x: -x.number)
                 if state in ("all", pr.state)]
        if head and ":" in head:  # GitHub ignores a bare branch name: so does this fake
            owner, _, branch = head.partition(":")
            found = [pr for pr in found
                     if pr.head == branch and owner.lower() == repo.split("/")[0].lower()]
        if base:
            found = [pr for pr in found if pr.base == base]
        return 200, [self.pull_json(repo, pr) for pr in found], {}

    def op_pulls_create(self, repo: str, p: dict[str, str], q: dict[str, str],
                        body: Any) -> tuple[int, Any, dict[str, str]]:
        owner, _, branch = body["head"].rpartition(":")
        if owner and owner.lower() != repo.split("/")[0].lower():
            raise _validation_failed({"resource": "PullRequest", "field": "head",
                                      "code": "invalid"})
        if not body.get("title"):
            raise _validation_failed({"resource": "PullRequest", "field": "title",
                                      "code": "missing_field"})
        for pr in self.pulls.values():
            if pr.state == "open" and pr.head == branch and pr.base == body["base"]:
                raise _validation_failed({
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for "
                               f"{repo.split('/')[0]}:{branch}."})
        number = self.open_pull(branch, body["base"], body["title"], body.get("body") or "")
        self.pulls[number].draft = bool(body.get("draft"))
        return 201, self.pull_json(repo, self.pulls[number]), {}

    def op_pulls_get(self, repo: str, p: dict[str, str], q: dict[str, str],
                     body: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, self.pull_json(repo, self.pull(int(p["pull_number"]))), {}

    def op_pulls_update(self, repo: str, p: dict[str, str], q: dict[str, str],
                        body: Any) -> tuple[int, Any, dict[str, str]]:
        pr = self.pull(int(p["pull_number"]))
        if body.get("state") == "open" and pr.merged:
            raise _validation_failed({"resource": "PullRequest", "field": "state",
                                      "code": "invalid", "message": "state cannot be changed. "
                                      "The pull request cannot be reopened."})
        for key in ("title", "body", "base", "state"):
            if key in body:
                setattr(pr, key, body[key])
        pr.closed_at = _now() if pr.state == "closed" else None
        pr.updated_at = _now()
        return 200, self.pull_json(repo, pr), {}

    def op_issues_add_labels(self, repo: str, p: dict[str, str], q: dict[str, str],
                             body: Any) -> tuple[int, Any, dict[str, str]]:
        pr = self.pull(int(p["issue_number"]))
        for item in body.get("labels", []):
            name = item if isinstance(item, str) else item["name"]
            if name not in pr.labels:
                pr.labels.append(name)
        return 200, [self.label_json(repo, n) for n in pr.labels], {}

    def op_issues_list_comments(self, repo: str, p: dict[str, str], q: dict[str, str],
                                body: Any) -> tuple[int, Any, dict[str, str]]:
        number = int(p["issue_number"])
        self.pull(number)
        every = [c for c in self.comments.values() if c.issue == number]
        per_page, page = int(q.get("per_page", 30)), int(q.get("page", 1))
        chunk = every[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(every):
            nxt = (f"{self.base_url}/repos/{repo}/issues/{number}/comments"
                   f"?per_page={per_page}&page={page + 1}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        return 200, [self.comment_json(repo, c) for c in chunk], headers

    def op_issues_create_comment(self, repo: str, p: dict[str, str], q: dict[str, str],
                                 body: Any) -> tuple[int, Any, dict[str, str]]:
        number = int(p["issue_number"])
        self.pull(number)
        comment = FakeComment(self._id(), number, body["body"])
        self.comments[comment.id] = comment
        return 201, self.comment_json(repo, comment), {}

    def op_issues_update_comment(self, repo: str, p: dict[str, str], q: dict[str, str],
                                 body: Any) -> tuple[int, Any, dict[str, str]]:
        comment = self.comments.get(int(p["comment_id"]))
        if comment is None:
            raise _not_found()
        comment.body, comment.updated_at = body["body"], _now()
        return 200, self.comment_json(repo, comment), {}

    def op_repos_create_commit_status(self, repo: str, p: dict[str, str], q: dict[str, str],
                                      body: Any) -> tuple[int, Any, dict[str, str]]:
        sha = p["sha"]
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _validation_failed({"resource": "Status", "code": "custom",
                                      "message": f"No commit found for SHA: {sha}"})
        status = {"id": self._id(), "node_id": "SC_1", "sha": sha, "state": body["state"],
                  "context": body.get("context", "default"),
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "url": f"{self.base_url}/repos/{repo}/statuses/{sha}",
                  "creator": self.user_json("gitconf-bot"), "created_at": _now(),
                  "updated_at": _now()}
        self.statuses.append(status)
        return 201, status, {}


class FakeGitHub:
    """The server: HTTP in a thread, the spec checks, the faults, and the test-facing API."""

    def __init__(self, token: str = "t0k", repo: str = "acme/config", *, prefix: str = "",
                 spec_path: Path = SPEC_PATH):
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.checker = OpenApiChecker(spec_path)
        self.violations: list[str] = []
        self.requests_log: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._fail_all: tuple[int, Any] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"
        self.state = GitHubState(self.url, [repo])
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeGitHub:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)  # short poll: quick shutdown
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    # -- what tests use ------------------------------------------------------------------

    @property
    def pulls(self) -> dict[int, FakePull]:
        return self.state.pulls

    @property
    def comments(self) -> list[FakeComment]:
        return list(self.state.comments.values())

    @property
    def statuses(self) -> list[dict[str, Any]]:
        return self.state.statuses

    def add_repo(self, repo: str) -> None:
        self.state.repos[repo.lower()] = repo

    def open_pull(self, head: str, base: str = "main", title: str = "t", body: str = "") -> int:
        """A pull request opened behind the client's back (by a person, say)."""
        with self._lock:
            return self.state.open_pull(head, base, title, body)

    def add_comment(self, number: int, body: str) -> int:
        with self._lock:
            comment = FakeComment(self.state._id(), number, body)
            self.state.comments[comment.id] = comment
            return comment.id

    def merge(self, number: int) -> None:
        with self._lock:
            pr = self.state.pulls[number]
            pr.state, pr.merged, pr.merged_at, pr.closed_at = "closed", True, _now(), _now()

    def close(self, number: int) -> None:
        with self._lock:
            pr = self.state.pulls[number]
            pr.state, pr.closed_at = "closed", _now()

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None,
                  body: Any = None) -> None:
        """Answer the next `times` valid requests with `status` (502, 429, 403 rate limit...)."""
        default = _FAULT_BODIES.get(status, {"message": f"fault {status}"})
        self._faults.append(_Fault(status, dict(headers or {}),
                                   default if body is None else body, times))

    def fail_all(self, status: int | None, body: Any = None) -> None:
        """Answer every request with `status` (401, 403, 404) until `fail_all(None)`."""
        self._fail_all = None if status is None else (
            status, body if body is not None else _FAULT_BODIES.get(status, {"message": "x"}))

    def requests_to(self, method: str, suffix: str = "") -> list[LoggedRequest]:
        return [r for r in self.requests_log if r.method == method and r.path.endswith(suffix)]

    # -- serving -------------------------------------------------------------------------

    def serve(self, method: str, raw_path: str, headers: dict[str, str],
              raw_body: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            try:
                return self._serve(method, raw_path, headers, raw_body)
            except _Reply as reply:
                return reply.status, reply.body, reply.headers

    def _serve(self, method: str, raw_path: str, headers: dict[str, str],
               raw_body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body, present, body_problem = self._parse_body(headers, raw_body)
        self._log(method, parts.path, query, body, headers)
        path = parts.path
        if body_problem:
            self._violate(f"{method} {path}: {body_problem}")
        if not path.startswith(self.prefix + "/"):
            self._violate(f"{method} {path}: not under the API prefix {self.prefix!r}")
        matched = self.checker.match(method, path[len(self.prefix):])
        if matched is None:
            self._violate(f"{method} {path}: no such operation in GitHub's OpenAPI description")
        op, path_params = matched
        self._check_headers(method, path, headers)
        problems = (self.checker.check_params(op, path_params, query)
                    + self.checker.check_body(op, body, present))
        if problems:
            self._violate(f"{method} {path} ({op.operation_id}): " + "; ".join(problems))
        self._gatekeep(headers)
        status, answer, extra = self.state.handle(op.operation_id, path_params, query, body)
        for problem in self.checker.check_response(op, status, answer):
            self.violations.append(f"fake answered badly to {op.operation_id}: {problem}")
        return status, answer, extra

    @staticmethod
    def _parse_body(headers: dict[str, str], raw: bytes) -> tuple[Any, bool, str | None]:
        """(body, whether one was sent, what is wrong with it)."""
        if not raw:
            return None, False, None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return raw.decode(errors="replace"), True, f"request body is not JSON: {exc}"
        if not headers.get("content-type", "").startswith("application/json"):
            return body, True, f"JSON body sent as {headers.get('content-type')!r}"
        return body, True, None

    def _log(self, method: str, path: str, query: dict[str, str], body: Any,
             headers: dict[str, str]) -> None:
        shown = {k: ("<redacted>" if k == "authorization" else v) for k, v in headers.items()}
        self.requests_log.append(LoggedRequest(method, path, query, body, shown))

    def _violate(self, problem: str) -> NoReturn:
        self.violations.append(problem)
        raise _Reply(400, {"message": problem, "documentation_url": DOCS})

    def _check_headers(self, method: str, path: str, headers: dict[str, str]) -> None:
        wrong = []
        if headers.get("accept") != "application/vnd.github+json":
            wrong.append(f"Accept {headers.get('accept')!r}")
        if headers.get("x-github-api-version") != API_VERSION:
            wrong.append(f"X-GitHub-Api-Version {headers.get('x-github-api-version')!r}")
        if not headers.get("user-agent"):
            wrong.append("no User-Agent (GitHub refuses those)")
        if wrong:
            self._violate(f"{method} {path}: bad headers: " + ", ".join(wrong))

    def _gatekeep(self, headers: dict[str, str]) -> None:
        """Token, then the switches and faults tests set."""
        if headers.get("authorization") != f"Bearer {self.token}":
            raise _Reply(401, {"message": "Bad credentials", "documentation_url": DOCS})
        if self._fail_all is not None:
            raise _Reply(self._fail_all[0], self._fail_all[1])
        if self._faults:
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            raise _Reply(fault.status, fault.body, fault.headers)


def _make_handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = fake.serve(self.command, self.path, headers, raw)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def iter_paths(gh: FakeGitHub) -> Iterator[str]:
    """`METHOD path?query` of each request, for readable assertions."""
    for r in gh.requests_log:
        q = "&".join(f"{k}={v}" for k, v in r.query.items())
        yield f"{r.method} {r.path}" + (f"?{q}" if q else "")
