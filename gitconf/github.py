"""GitHub REST client for the follow-up pull requests of overrides (SPEC §5) and the Action.

Why a client of our own: gitconf needs nine endpoints, and it needs them to behave well when
GitHub does not: bounded retries on 5xx and rate limits (honouring `Retry-After` and
`x-ratelimit-reset`), one write at a time (GitHub's secondary rate limit punishes parallel
writes), and one short line per failure that says what to fix and never shows the token.

Every call returns a small frozen dataclass; GitHub's JSON never leaks past this module, so the
rest of gitconf does not depend on GitHub's field names. This is the only module of gitconf
that imports `requests`. Its tests run against tests/fakegithub.py, which checks every request
against GitHub's own OpenAPI description (tests/openapi/github-subset.json).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import GitHubError
from .fastclass import dataclass

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "gitconf"
STATUS_STATES = ("error", "failure", "pending", "success")
_STATUS_DESCRIPTION_MAX = 140  # GitHub answers 422 past this
_MAX_PAGES = 50  # 5,000 comments: a marker further away is not worth the requests
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class GitHubAuthError(GitHubError):
    """401: the token is missing, wrong, expired or revoked."""


class GitHubPermissionError(GitHubError):
    """403 that is not a rate limit: the token lacks a permission."""


class GitHubNotFound(GitHubError):
    """404: GitHub also says this when the token cannot see a private repository."""


class GitHubValidationError(GitHubError):
    """422: GitHub refused the request's content; `details` holds its `errors[].message`."""

    def __init__(self, message: str, details: tuple[str, ...] = ()):
        super().__init__(message)
        self.details = details


class GitHubRateLimited(GitHubError):
    """A rate limit was still in force after the last attempt."""


class GitHubUnavailable(GitHubError):
    """5xx or no connection after the last attempt."""


# status -> (exception class, message). ONE table: every failure reads the same way.
# Fields: {repo} owner/name, {action} what was asked ("create a pull request"), {permission}
# the permission that action needs, {subject} what a 404 is about, {status}, {detail} GitHub's
# own words (one line, token removed). 0 is the fallback, 500 stands for every 5xx.
_ERRORS: dict[int, tuple[type[GitHubError], str]] = {
    401: (GitHubAuthError, "GitHub rejected the token (401): check GITHUB_TOKEN"),
    403: (GitHubPermissionError,
          "GitHub refused to {action} in {repo} (403): the token needs the '{permission}' "
          "permission ({detail})"),
    404: (GitHubNotFound, "{subject} not found or the token cannot see it (404)"),
    422: (GitHubValidationError, "GitHub could not {action} in {repo}: validation failed "
          "(422): {detail}"),
    429: (GitHubRateLimited,
          "GitHub rate limit still exceeded after {attempts} attempts to {action} in {repo} "
          "({detail})"),
    500: (GitHubUnavailable,
          "GitHub answered {status} after {attempts} attempts to {action} in {repo} ({detail})"),
    0: (GitHubError, "GitHub answered {status} to the request to {action} in {repo} ({detail})"),
}


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str  # html_url: what a person opens
    state: str  # open | closed
    merged: bool
    head_ref: str
    head_sha: str
    base_ref: str
    title: str
    body: str = ""
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    url: str


@dataclass(frozen=True)
class CommitStatus:
    id: int
    state: str
    context: str
    description: str | None
    target_url: str | None


@dataclass(frozen=True)
class PullRequestEvent:
    """What the daemon needs from a `pull_request` webhook delivery."""

    action: str
    number: int
    merged: bool
    head_ref: str
    state: str
    base_ref: str = ""
    repo: str | None = None  # repository.full_name
    url: str = ""

    @property
    def outcome(self) -> str | None:
        """"merged" or "closed" for a pull request that was just closed, else None."""
        if self.action != "closed":
            return None
        return "merged" if self.merged else "closed"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: `attempts` in all, waits capped at `max_wait` seconds."""

    attempts: int = 4
    backoff: float = 1.0  # first backoff wait; doubles per attempt, with jitter
    max_wait: float = 60.0


@dataclass(frozen=True)
class _Call:
    """One API call's wording for errors: what was asked and what it needs."""

    action: str
    permission: str
    subject: str = ""


class _BearerAuth(requests.auth.AuthBase):
    """Sets the token per request: keeps it out of `session.headers` and stops `~/.netrc`
    from replacing it (requests only consults netrc when no auth is given)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def _one_line(text: str, secrets: Iterable[str], limit: int = 300) -> str:
    """GitHub's text made safe for an error line: no token, no newline, bounded length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_detail(resp: requests.Response) -> tuple[str, tuple[str, ...]]:
    """GitHub's `message` and each `errors[]` entry as text (never the request body)."""
    try:
        data = resp.json()
    except ValueError:
        return (resp.reason or f"HTTP {resp.status_code}"), ()
    if not isinstance(data, dict):
        return f"HTTP {resp.status_code}", ()
    details: list[str] = []
    for item in data.get("errors") or ():
        if isinstance(item, str):
            details.append(item)
        elif isinstance(item, dict):
            text = item.get("message") or " ".join(
                str(item[k]) for k in ("resource", "field", "code") if item.get(k))
            if text:
                details.append(str(text))
    return str(data.get("message") or resp.reason or f"HTTP {resp.status_code}"), tuple(details)


def _is_rate_limited(resp: requests.Response) -> bool:
    if resp.status_code == 429:
        return True
    if resp.status_code != 403:
        return False
    if resp.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in resp.headers:
        return True
    return "rate limit" in _error_detail(resp)[0].lower()


def _retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` in seconds, given as seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class _Transport:
    """HTTP with retries, the write lock and the error table; knows nothing of pulls."""

    def __init__(self, api_url: str, token: str, repo: str, session: requests.Session | None,
                 retry: RetryPolicy, sleep: Callable[[float], None], clock: Callable[[], float],
                 timeout: tuple[float, float], rng: random.Random | None):
        self.api_url = api_url
        self.repo = repo
        self.retry = retry
        self._token = token
        self._session = session or requests.Session()
        self._auth = _BearerAuth(token)
        self._sleep = sleep
        self._clock = clock
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._write_lock = threading.Lock()
        self._headers = {"Accept": "application/vnd.github+json",
                         "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT}

    def request(self, method: str, path: str, call: _Call, *,
                params: Mapping[str, str | int] | None = None,
                json: Any = None) -> requests.Response:
        """One API call, retried; raises from the table unless GitHub answered 2xx."""
        url = path if path.startswith(self.api_url + "/") else self.api_url + path
        guard: AbstractContextManager[Any] = (
            nullcontext() if method == "GET" else self._write_lock)
        with guard:  # one write at a time per client: GitHub's secondary rate limit
            resp = self._with_retries(method, url, call, params, json)
        if resp.status_code >= 400:
            raise self._error(resp, call)
        return resp

    def _with_retries(self, method: str, url: str, call: _Call,
                      params: Mapping[str, str | int] | None, json: Any) -> requests.Response:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = self._session.request(
                    method, url, params=params, json=json, headers=self._headers,
                    auth=self._auth, timeout=self._timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                # a read timeout on a POST may have done the write: repeat only what is safe
                unsafe = isinstance(exc, requests.ReadTimeout) and method == "POST"
                if attempt == self.retry.attempts or unsafe:
                    raise GitHubUnavailable(
                        f"cannot reach GitHub at {self.api_url} to {call.action} in {self.repo} "
                        f"({type(exc).__name__}, {attempt} attempt(s))") from None
                self._sleep(self._backoff(attempt))
                continue
            wait = self._retry_wait(resp, attempt)
            if wait is None or attempt == self.retry.attempts:
                return resp
            self._sleep(wait)
        raise AssertionError("unreachable: attempts >= 1")

    def _retry_wait(self, resp: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the answer is final."""
        if resp.status_code < 500 and not _is_rate_limited(resp):
            return None
        now = self._clock()
        after = _retry_after(resp.headers.get("retry-after"), now)
        if after is not None:
            return min(after, self.retry.max_wait)
        reset = resp.headers.get("x-ratelimit-reset")
        if reset and resp.headers.get("x-ratelimit-remaining") == "0":
            try:
                return min(max(1.0, float(reset) - now), self.retry.max_wait)
            except ValueError:
                pass
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential, with jitter so that parallel clients do not retry in step."""
        delay = min(self.retry.backoff * 2 ** (attempt - 1), self.retry.max_wait)
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _error(self, resp: requests.Response, call: _Call) -> GitHubError:
        status = resp.status_code
        key = 429 if _is_rate_limited(resp) else status
        cls, template = _ERRORS.get(key) or _ERRORS.get(status // 100 * 100) or _ERRORS[0]
        message, details = _error_detail(resp)
        detail = "; ".join((message, *details)) if details else message
        reset = resp.headers.get("x-ratelimit-reset", "")
        if key == 429 and reset.isdigit():
            detail += "; the limit resets at " + time.strftime("%H:%M:%S UTC",
                                                               time.gmtime(int(reset)))
        secrets = (self._token,)
        text = template.format(
            repo=self.repo, action=call.action, permission=call.permission, status=status,
            subject=call.subject or f"repository {self.repo}", attempts=self.retry.attempts,
            detail=_one_line(detail, secrets))
        text = _one_line(text, secrets, limit=600)
        if cls is GitHubValidationError:
            return GitHubValidationError(text, tuple(_one_line(d, secrets) for d in details))
        return cls(text)


def _pull(data: Any) -> PullRequest:
    """GitHub's pull request JSON -> PullRequest; a wrong shape is GitHub's error, said so."""
    try:
        return PullRequest(
            number=int(data["number"]), url=str(data["html_url"]), state=str(data["state"]),
            merged=bool(data.get("merged") or data.get("merged_at")),
            head_ref=str(data["head"]["ref"]), head_sha=str(data["head"]["sha"]),
            base_ref=str(data["base"]["ref"]), title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            labels=tuple(str(lb["name"]) for lb in data.get("labels") or ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise GitHubError(f"unexpected pull request JSON from GitHub (missing {exc})") from None


def _comment(data: Any) -> Comment:
    try:
        return Comment(id=int(data["id"]), body=str(data.get("body") or ""),
                       url=str(data.get("html_url") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise GitHubError(f"unexpected comment JSON from GitHub (missing {exc})") from None


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise GitHubError(
            f"GitHub answered {resp.status_code} with a body that is not JSON") from None


def _check_api_url(api_url: str) -> str:
    """Normalised API base URL; plain http only to this machine (the token travels in it)."""
    url = api_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.username or parts.password:  # never echoed: it would be a credential
        raise GitHubError("GITHUB_API_URL must not contain credentials: use GITHUB_TOKEN")
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    if secure and parts.hostname:
        return url
    raise GitHubError(f"GITHUB_API_URL must be an https:// URL, got {url!r}")


class GitHubClient:
    """The pull-request, comment and status calls gitconf makes, on one repository."""

    def __init__(self, repo: str, token: str | None = None, api_url: str | None = None, *,
                 session: requests.Session | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 timeout: tuple[float, float] = (10.0, 30.0),
                 rng: random.Random | None = None):
        if not _REPO_RE.match(repo or ""):
            raise GitHubError(f"GitHub repository must be owner/name, got {repo!r}")
        token = token if token is not None else os.environ.get("GITHUB_TOKEN", "")
        if not token:
            raise GitHubAuthError("no GitHub token: set GITHUB_TOKEN")
        self.repo = repo
        self.owner = repo.split("/", 1)[0]
        self.api_url = _check_api_url(
            api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)
        self._http = _Transport(self.api_url, token, repo, session, retry or RetryPolicy(),
                                sleep, clock, timeout, rng)
        self._base = f"/repos/{repo}"

    def __repr__(self) -> str:
        return f"GitHubClient(repo={self.repo!r}, api_url={self.api_url!r})"

    # -- pull requests -------------------------------------------------------------------

    def find_open_pull(self, head_branch: str) -> PullRequest | None:
        """The open pull request from `head_branch` of this repository, if any.

        `head` is always sent as owner:branch: GitHub silently ignores a bare branch name and
        lists every open pull request. The answer is filtered again here for the same reason.
        """
        owner, _, branch = head_branch.rpartition(":")
        head = f"{owner or self.owner}:{branch}"
        resp = self._http.request(
            "GET", f"{self._base}/pulls", _Call("list pull requests", "pull_requests: read"),
            params={"head": head, "state": "open", "per_page": 100})
        for item in _json(resp) or ():
            pull = _pull(item)
            if pull.head_ref == branch and pull.state == "open":
                return pull
        return None

    def get_pull(self, number: int) -> PullRequest:
        resp = self._http.request("GET", f"{self._base}/pulls/{int(number)}", self._pr_call(
            "read a pull request", "pull_requests: read", number))
        return _pull(_json(resp))

    def create_pull(self, head: str, base: str, title: str, body: str,
                    draft: bool = False) -> PullRequest:
        """Open a pull request; if one is already open for `head` (422), update that one."""
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        try:
            resp = self._http.request("POST", f"{self._base}/pulls", _Call(
                "create a pull request", "pull_requests: write"), json=payload)
        except GitHubValidationError as exc:
            if not any("already exists" in d for d in exc.details):
                raise
            existing = self.find_open_pull(head)
            if existing is None:
                raise
            return self.update_pull(existing.number, title=title, body=body)
        return _pull(_json(resp))

    def update_pull(self, number: int, title: str | None = None, body: str | None = None,
                    state: str | None = None) -> PullRequest:
        """PATCH what is given; `state="closed"` closes the pull request."""
        payload = {k: v for k, v in (("title", title), ("body", body), ("state", state))
                   if v is not None}
        resp = self._http.request("PATCH", f"{self._base}/pulls/{int(number)}", self._pr_call(
            "update a pull request", "pull_requests: write", number), json=payload)
        return _pull(_json(resp))

    def close_pull(self, number: int) -> PullRequest:
        return self.update_pull(number, state="closed")

    def ensure_pull(self, head: str, base: str, title: str, body: str,
                    labels: Iterable[str] = ()) -> PullRequest:
        """The one pull request for `head`: updated if open, else created; then labelled.

        This is what callers use: a second override of a unit must never open a second pull
        request, and an unchanged pull request is not written to again.
        """
        pull = self.find_open_pull(head)
        if pull is None:
            pull = self.create_pull(head, base, title, body)
        elif (pull.title, pull.body) != (title, body):
            pull = self.update_pull(pull.number, title=title, body=body)
        missing = [lb for lb in dict.fromkeys(labels) if lb not in pull.labels]
        if missing:
            now = self.add_labels(pull.number, missing)
            pull = replace(pull, labels=now)
        return pull

    # -- issues: labels and comments (a pull request is an issue) ------------------------

    def add_labels(self, number: int, labels: Iterable[str]) -> tuple[str, ...]:
        """Add labels (POST /pulls takes none); returns every label now on the issue."""
        names = list(dict.fromkeys(labels))
        if not names:
            return ()
        resp = self._http.request(
            "POST", f"{self._base}/issues/{int(number)}/labels",
            self._pr_call("add labels", "issues: write", number), json={"labels": names})
        return tuple(str(item.get("name", "")) for item in _json(resp) or ()
                     if isinstance(item, dict))

    def comment(self, number: int, body: str) -> Comment:
        resp = self._http.request(
            "POST", f"{self._base}/issues/{int(number)}/comments",
            self._pr_call("comment", "issues: write", number), json={"body": body})
        return _comment(_json(resp))

    def comments(self, number: int) -> Iterator[Comment]:
        """Every comment of the issue or pull request, oldest first, page after page."""
        call = self._pr_call("list comments", "issues: read", number)
        path: str | None = f"{self._base}/issues/{int(number)}/comments"
        params: dict[str, str | int] | None = {"per_page": 100}
        for _ in range(_MAX_PAGES):
            if path is None:
                return
            resp = self._http.request("GET", path, call, params=params)
            yield from (_comment(item) for item in _json(resp) or ())
            nxt = resp.links.get("next", {}).get("url")
            # only follow links to the same API: the token goes with the request
            path = nxt if nxt and nxt.startswith(self.api_url + "/") else None
            params = None  # the next link carries the query

    def find_comment_with_marker(self, number: int, marker: str) -> Comment | None:
        return next((c for c in self.comments(number) if marker in c.body), None)

    def update_comment(self, comment_id: int, body: str) -> Comment:
        resp = self._http.request(
            "PATCH", f"{self._base}/issues/comments/{int(comment_id)}",
            _Call("update a comment", "issues: write", f"comment {comment_id} of {self.repo}"),
            json={"body": body})
        return _comment(_json(resp))

    def upsert_comment(self, number: int, marker: str, body: str) -> Comment:
        """One sticky comment per marker: edited in place, so a pull request is not flooded."""
        text = body if marker in body else f"{marker}\n{body}"
        found = self.find_comment_with_marker(number, marker)
        if found is None:
            return self.comment(number, text)
        if found.body == text:
            return found
        return self.update_comment(found.id, text)

    # -- commit statuses ---------------------------------------------------------------

    def set_commit_status(self, sha: str, state: str, context: str,
                          description: str | None = None,
                          target_url: str | None = None) -> CommitStatus:
        if state not in STATUS_STATES:
            raise GitHubError(f"commit status state must be one of {STATUS_STATES}, got {state!r}")
        if description and len(description) > _STATUS_DESCRIPTION_MAX:
            description = description[: _STATUS_DESCRIPTION_MAX - 3] + "..."
        payload: dict[str, str] = {"state": state, "context": context}
        if description is not None:
            payload["description"] = description
        if target_url is not None:
            payload["target_url"] = target_url
        resp = self._http.request("POST", f"{self._base}/statuses/{sha}", _Call(
            "set a commit status", "statuses: write", f"commit {sha} of {self.repo}"),
            json=payload)
        data = _json(resp)
        try:
            return CommitStatus(id=int(data["id"]), state=str(data["state"]),
                                context=str(data.get("context") or context),
                                description=data.get("description"),
                                target_url=data.get("target_url"))
        except (KeyError, TypeError, ValueError) as exc:
            raise GitHubError(f"unexpected status JSON from GitHub (missing {exc})") from None

    def _pr_call(self, action: str, permission: str, number: int) -> _Call:
        return _Call(action, permission, f"pull request #{number} or repository {self.repo}")


# -- finding the repository --------------------------------------------------------------

def web_host(api_url: str) -> str | None:
    """The host people and `git` use for the API at `api_url`.

    api.github.com -> github.com; GitHub Enterprise Server https://HOST/api/v3 -> HOST;
    GitHub Enterprise Cloud with data residency https://api.SUB.ghe.com -> SUB.ghe.com.
    """
    parts = urlsplit(api_url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if host == "api.github.com":
        return "github.com"
    if host.startswith("api.") and parts.path.rstrip("/") == "":
        return host[4:]
    return host


def api_host_matches(api_url: str, remote_host: str) -> bool:
    """Whether a remote on `remote_host` belongs to the GitHub that `api_url` serves."""
    host = remote_host.lower()
    if host in ("github.com", "www.github.com", "ssh.github.com"):
        host = "github.com"
    return host == web_host(api_url)


_SCP_RE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>[^\s]+)$")


def repo_from_remote(url: str, api_url: str | None = None) -> str | None:
    """`owner/name` of a remote on GitHub (or on the Enterprise host of `api_url`), else None.

    Takes https (with or without credentials), ssh:// and scp-like `git@host:o/r.git` forms.
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git", "git+ssh", "ssh+git"):
            return None
        host, path = parts.hostname or "", parts.path
    else:
        m = _SCP_RE.match(url)
        if not m:
            return None
        host, path = m.group("host"), m.group("path")
    if not api_host_matches(api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL, host):
        return None
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return path if _REPO_RE.match(path) else None


def from_env(repo: str, api_url: str | None = None, **kwargs: Any) -> GitHubClient | None:
    """A client from GITHUB_TOKEN / GITHUB_API_URL, or None without a token (no PR then)."""
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        return None
    return GitHubClient(repo, token=token, api_url=api_url, **kwargs)


# -- webhooks ----------------------------------------------------------------------------

def parse_pull_request_event(payload: Mapping[str, Any]) -> PullRequestEvent | None:
    """The parts of a `pull_request` webhook delivery the daemon acts on; None if malformed."""
    pr = payload.get("pull_request") if isinstance(payload, Mapping) else None
    action = payload.get("action") if isinstance(payload, Mapping) else None
    if not isinstance(pr, Mapping) or not isinstance(action, str):
        return None
    try:
        head, base = pr["head"], pr.get("base") or {}
        repo = (payload.get("repository") or {}).get("full_name")
        return PullRequestEvent(
            action=action, number=int(payload.get("number") or pr["number"]),
            merged=bool(pr.get("merged") or pr.get("merged_at")), head_ref=str(head["ref"]),
            state=str(pr.get("state") or ""), base_ref=str(base.get("ref") or ""),
            repo=str(repo) if repo else None, url=str(pr.get("html_url") or ""))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
