"""gitconf.github against tests/fakegithub.py, which checks each request against GitHub's
OpenAPI description: every test ends with no violation (the `gh` fixture asserts it)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gitconf.errors import GitHubError
from gitconf.github import (
    GitHubAuthError,
    GitHubClient,
    GitHubNotFound,
    GitHubPermissionError,
    GitHubRateLimited,
    GitHubUnavailable,
    GitHubValidationError,
    PullRequest,
    PullRequestEvent,
    RetryPolicy,
    api_host_matches,
    from_env,
    parse_pull_request_event,
    repo_from_remote,
    web_host,
)
from tests.fakegithub import FakeGitHub, iter_paths

TOKEN = "ghp_t0kSECRET1234567890"
REPO = "acme/config"
HEAD = "gitconf/override/payments/prod"
NOW = 1_700_000_000.0


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN, repo=REPO) as server:
        yield server
        assert server.violations == []


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(url: str, sleeps: list[float], token: str = TOKEN, repo: str = REPO,
                **kwargs: Any) -> GitHubClient:
    return GitHubClient(repo, token=token, api_url=url, sleep=sleeps.append,
                        clock=lambda: NOW, rng=random.Random(7), **kwargs)


@pytest.fixture
def client(gh: FakeGitHub, sleeps: list[float]) -> GitHubClient:
    return make_client(gh.url, sleeps)


def assert_clean(exc: BaseException, *absent: str) -> str:
    """An error line: one line, never the token (nor anything else given)."""
    text = str(exc)
    assert "\n" not in text
    for secret in (TOKEN, *absent):
        assert secret not in text
    return text


# -- pull requests ---------------------------------------------------------------------

def test_find_open_pull_sends_owner_colon_branch(gh: FakeGitHub, client: GitHubClient) -> None:
    assert client.find_open_pull(HEAD) is None
    number = gh.open_pull(HEAD, title="fix")
    found = client.find_open_pull(HEAD)
    assert found is not None and found.number == number and found.head_ref == HEAD
    queries = [r.query for r in gh.requests_to("GET", "/pulls")]
    assert queries == [{"head": f"acme:{HEAD}", "state": "open", "per_page": "100"}] * 2


def test_find_open_pull_ignores_other_heads_and_closed(gh: FakeGitHub,
                                                      client: GitHubClient) -> None:
    gh.open_pull("someone-elses-branch")
    gh.close(gh.open_pull(HEAD))
    assert client.find_open_pull(HEAD) is None
    assert client.find_open_pull(f"acme:{HEAD}") is None


def test_fake_lists_every_pull_for_a_bare_head_like_github(gh: FakeGitHub) -> None:
    """Why the client always sends owner:branch: GitHub ignores `head=branch`."""
    gh.open_pull("a")
    gh.open_pull("b")
    resp = requests.get(f"{gh.url}/repos/{REPO}/pulls", params={"head": "a"}, headers={
        "Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "test"}, timeout=5)
    assert len(resp.json()) == 2


def test_create_get_update_close(gh: FakeGitHub, client: GitHubClient) -> None:
    pr = client.create_pull(HEAD, "main", "Override payments/prod", "why", draft=True)
    assert isinstance(pr, PullRequest)
    assert (pr.number, pr.state, pr.merged, pr.head_ref, pr.base_ref) == (1, "open", False,
                                                                         HEAD, "main")
    assert pr.url.endswith("/acme/config/pull/1") and len(pr.head_sha) == 40
    assert gh.requests_to("POST", "/pulls")[0].json == {
        "title": "Override payments/prod", "head": HEAD, "base": "main", "body": "why",
        "draft": True}
    assert client.get_pull(1) == pr
    assert client.update_pull(1, title="new").title == "new"
    assert gh.requests_to("PATCH")[-1].json == {"title": "new"}
    closed = client.close_pull(1)
    assert (closed.state, closed.merged) == ("closed", False)
    assert gh.requests_to("PATCH")[-1].json == {"state": "closed"}


def test_get_pull_reports_merged(gh: FakeGitHub, client: GitHubClient) -> None:
    number = gh.open_pull(HEAD)
    gh.merge(number)
    pr = client.get_pull(number)
    assert (pr.state, pr.merged) == ("closed", True)


def test_create_pull_that_already_exists_updates_it(gh: FakeGitHub,
                                                   client: GitHubClient) -> None:
    number = gh.open_pull(HEAD, title="old", body="old body")
    pr = client.create_pull(HEAD, "main", "new", "new body")
    assert (pr.number, pr.title, pr.body) == (number, "new", "new body")
    assert len(gh.pulls) == 1
    assert [p.split("?")[0] for p in iter_paths(gh)] == [
        "POST /repos/acme/config/pulls", "GET /repos/acme/config/pulls",
        f"PATCH /repos/acme/config/pulls/{number}"]


def test_ensure_pull_creates_then_updates_never_a_second(gh: FakeGitHub,
                                                         client: GitHubClient) -> None:
    first = client.ensure_pull(HEAD, "main", "Override", "one", ["gitconf", "override"])
    assert first.labels == ("gitconf", "override")
    assert gh.requests_to("POST", "/labels")[0].json == {"labels": ["gitconf", "override"]}
    second = client.ensure_pull(HEAD, "main", "Override", "one\ntwo", ["gitconf", "override"])
    assert second.number == first.number and second.body == "one\ntwo"
    assert len(gh.pulls) == 1
    assert len(gh.requests_to("POST", "/pulls")) == 1
    assert len(gh.requests_to("POST", "/labels")) == 1  # labels already there
    client.ensure_pull(HEAD, "main", "Override", "one\ntwo", ["gitconf", "override"])
    assert len(gh.requests_to("PATCH")) == 1  # unchanged: not written again


def test_ensure_pull_after_a_merge_opens_a_new_one(gh: FakeGitHub,
                                                   client: GitHubClient) -> None:
    first = client.ensure_pull(HEAD, "main", "Override", "one")
    gh.merge(first.number)
    second = client.ensure_pull(HEAD, "main", "Override", "two")
    assert second.number != first.number and second.state == "open"
    assert not gh.requests_to("POST", "/labels")


def test_add_labels(gh: FakeGitHub, client: GitHubClient) -> None:
    number = gh.open_pull(HEAD)
    assert client.add_labels(number, ["a", "b", "a"]) == ("a", "b")
    assert client.add_labels(number, ["c"]) == ("a", "b", "c")
    assert client.add_labels(number, []) == ()
    assert [r.json for r in gh.requests_to("POST", "/labels")] == [
        {"labels": ["a", "b"]}, {"labels": ["c"]}]


# -- comments and statuses -------------------------------------------------------------

def test_comment_and_sticky_comment(gh: FakeGitHub, client: GitHubClient) -> None:
    number = gh.open_pull(HEAD)
    plain = client.comment(number, "closed: TTL passed")
    assert plain.body == "closed: TTL passed" and plain.id > 0
    marker = "<!-- gitconf:plan -->"
    assert client.find_comment_with_marker(number, marker) is None
    made = client.upsert_comment(number, marker, "plan v1")
    assert made.body == f"{marker}\nplan v1"
    edited = client.upsert_comment(number, marker, "plan v2")
    assert edited.id == made.id and edited.body == f"{marker}\nplan v2"
    again = client.upsert_comment(number, marker, "plan v2")
    assert again == edited
    assert len(gh.requests_to("POST", "/comments")) == 2
    assert len(gh.requests_to("PATCH", f"/comments/{made.id}")) == 1
    assert len(gh.comments) == 2


def test_comments_follow_pagination_on_the_same_host(gh: FakeGitHub,
                                                     client: GitHubClient) -> None:
    number = gh.open_pull(HEAD)
    for i in range(130):
        gh.add_comment(number, f"comment {i}" + (" <!-- m -->" if i == 120 else ""))
    found = client.find_comment_with_marker(number, "<!-- m -->")
    assert found is not None and found.body.startswith("comment 120")
    assert [r.query for r in gh.requests_to("GET", "/comments")] == [
        {"per_page": "100"}, {"per_page": "100", "page": "2"}]


def test_set_commit_status(gh: FakeGitHub, client: GitHubClient) -> None:
    sha = "ab" * 20
    status = client.set_commit_status(sha, "failure", "gitconf/plan", "x" * 200,
                                      "https://ci.example/run/1")
    assert (status.state, status.context, status.target_url) == (
        "failure", "gitconf/plan", "https://ci.example/run/1")
    assert status.description is not None and len(status.description) == 140
    plain = client.set_commit_status(sha, "success", "gitconf/plan")
    assert plain.description is None
    assert gh.requests_to("POST", f"/statuses/{sha}")[1].json == {
        "state": "success", "context": "gitconf/plan"}
    with pytest.raises(GitHubError, match="state must be one of"):
        client.set_commit_status(sha, "done", "gitconf/plan")
    assert len(gh.statuses) == 2


def test_headers_sent(gh: FakeGitHub, client: GitHubClient) -> None:
    client.find_open_pull(HEAD)
    headers = gh.requests_log[0].headers
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"] == "gitconf"
    assert headers["authorization"] == "<redacted>"  # the fake checked it, then hid it
    assert TOKEN not in repr(client)


# -- retries ---------------------------------------------------------------------------

def test_retries_502_with_backoff(gh: FakeGitHub, client: GitHubClient,
                                  sleeps: list[float]) -> None:
    gh.fail_next(502, times=2)
    assert client.find_open_pull(HEAD) is None
    assert len(gh.requests_log) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # 1 s, 2 s, with jitter


def test_retries_429_honouring_retry_after(gh: FakeGitHub, client: GitHubClient,
                                           sleeps: list[float]) -> None:
    gh.fail_next(429, headers={"Retry-After": "7"})
    assert client.create_pull(HEAD, "main", "t", "b").number == 1
    assert sleeps == [7.0]
    assert len(gh.pulls) == 1


def test_retries_403_rate_limit_until_reset(gh: FakeGitHub, client: GitHubClient,
                                            sleeps: list[float]) -> None:
    gh.fail_next(403, headers={"x-ratelimit-remaining": "0",
                               "x-ratelimit-reset": str(int(NOW) + 12)},
                 body={"message": "API rate limit exceeded for installation ID 1."})
    client.find_open_pull(HEAD)
    assert sleeps == [12.0]


def test_waits_are_capped(gh: FakeGitHub, client: GitHubClient, sleeps: list[float]) -> None:
    gh.fail_next(403, headers={"x-ratelimit-remaining": "0",
                               "x-ratelimit-reset": str(int(NOW) + 3600)})
    gh.fail_next(429, headers={"Retry-After": "900"})
    client.find_open_pull(HEAD)
    assert sleeps == [60.0, 60.0]


def test_secondary_rate_limit_message_is_retried(gh: FakeGitHub, client: GitHubClient,
                                                 sleeps: list[float]) -> None:
    gh.fail_next(403, body={"message": "You have exceeded a secondary rate limit."})
    client.find_open_pull(HEAD)
    assert len(sleeps) == 1 and len(gh.requests_log) == 2


def test_attempts_are_bounded_5xx(gh: FakeGitHub, client: GitHubClient,
                                  sleeps: list[float]) -> None:
    gh.fail_next(503, times=10)
    with pytest.raises(GitHubUnavailable) as info:
        client.find_open_pull(HEAD)
    assert len(gh.requests_log) == 4 and len(sleeps) == 3
    text = assert_clean(info.value)
    assert "503 after 4 attempts to list pull requests in acme/config" in text


def test_attempts_are_bounded_rate_limit(gh: FakeGitHub, sleeps: list[float]) -> None:
    client = make_client(gh.url, sleeps, retry=RetryPolicy(attempts=2))
    gh.fail_next(429, times=2, headers={"Retry-After": "1"})
    with pytest.raises(GitHubRateLimited, match="rate limit still exceeded after 2 attempts"):
        client.create_pull(HEAD, "main", "t", "b")
    assert sleeps == [1.0] and not gh.pulls
    gh.fail_next(403, times=2, headers={"x-ratelimit-remaining": "0",
                                        "x-ratelimit-reset": "1700003600"})
    with pytest.raises(GitHubRateLimited) as info:
        client.get_pull(1)
    assert assert_clean(info.value).endswith("the limit resets at 23:13:20 UTC)")


def test_connection_errors_are_retried_then_reported(sleeps: list[float]) -> None:
    with FakeGitHub(token=TOKEN) as dead:
        url = dead.url  # the port is free again once the server has stopped
    client = make_client(url, sleeps, retry=RetryPolicy(attempts=3))
    with pytest.raises(GitHubUnavailable) as info:
        client.get_pull(1)
    assert len(sleeps) == 2
    assert "cannot reach GitHub at http://127.0.0.1:" in assert_clean(info.value)


class _TimeoutSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        assert kwargs["timeout"], "every request has a timeout"
        raise requests.ReadTimeout("read timed out")


def test_read_timeout_repeats_only_safe_requests(sleeps: list[float]) -> None:
    session = _TimeoutSession()
    client = make_client("https://api.github.com", sleeps, session=session)
    with pytest.raises(GitHubUnavailable):
        client.comment(1, "hello")  # a POST that may have landed: not repeated
    assert session.calls == 1
    with pytest.raises(GitHubUnavailable):
        client.get_pull(1)
    assert session.calls == 1 + 4


def test_one_write_at_a_time(gh: FakeGitHub) -> None:
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    class Counting(requests.Session):
        def request(self, method: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.02)
            try:
                return super().request(method, *args, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

    client = make_client(gh.url, [], session=Counting())
    number = gh.open_pull(HEAD)
    threads = [threading.Thread(target=client.comment, args=(number, f"c{i}")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1 and len(gh.comments) == 6


# -- errors ----------------------------------------------------------------------------

def test_401_wrong_token(gh: FakeGitHub, sleeps: list[float]) -> None:
    client = make_client(gh.url, sleeps, token="ghp_WRONGtoken999")
    with pytest.raises(GitHubAuthError) as info:
        client.find_open_pull(HEAD)
    text = assert_clean(info.value, "ghp_WRONGtoken999")
    assert text == "GitHub rejected the token (401): check GITHUB_TOKEN"
    assert info.value.exit_code == 2 and sleeps == []


@pytest.mark.parametrize(("call", "permission"), [
    (lambda c: c.create_pull(HEAD, "main", "t", "b"), "pull_requests: write"),
    (lambda c: c.update_pull(1, state="closed"), "pull_requests: write"),
    (lambda c: c.add_labels(1, ["x"]), "issues: write"),
    (lambda c: c.comment(1, "x"), "issues: write"),
    (lambda c: c.set_commit_status("ab" * 20, "success", "ctx"), "statuses: write"),
])
def test_403_names_the_permission(gh: FakeGitHub, client: GitHubClient, call: Any,
                                  permission: str) -> None:
    gh.fail_all(403, {"message": f"Resource not accessible by integration ({TOKEN})"})
    with pytest.raises(GitHubPermissionError) as info:
        call(client)
    text = assert_clean(info.value)
    assert f"the token needs the '{permission}' permission" in text
    assert "Resource not accessible by integration" in text and "(***)" in text


def test_404_unknown_repository(gh: FakeGitHub, sleeps: list[float]) -> None:
    client = make_client(gh.url, sleeps, repo="acme/nope")
    with pytest.raises(GitHubNotFound) as info:
        client.find_open_pull(HEAD)
    assert assert_clean(info.value) == (
        "repository acme/nope not found or the token cannot see it (404)")
    with pytest.raises(GitHubNotFound, match=r"pull request #9 or repository acme/config"):
        make_client(gh.url, sleeps).get_pull(9)


def test_422_carries_githubs_messages_not_the_body(gh: FakeGitHub,
                                                   client: GitHubClient) -> None:
    with pytest.raises(GitHubValidationError) as info:
        client.create_pull(HEAD, "main", "", "body with s3cr3t-VALUE in it")
    text = assert_clean(info.value, "s3cr3t-VALUE")
    assert text.startswith("GitHub could not create a pull request in acme/config: "
                           "validation failed (422): Validation Failed; ")
    assert info.value.details == ("PullRequest title missing_field",)
    gh.fail_next(422, body={"message": "Validation Failed", "errors": [
        {"message": "No commits between main and x"}]})
    with pytest.raises(GitHubValidationError, match="No commits between main and x"):
        client.create_pull("x", "main", "t", "b")


def test_other_statuses_use_the_fallback(gh: FakeGitHub, client: GitHubClient) -> None:
    gh.fail_next(409, body={"message": "Conflict\nwith newline"})
    with pytest.raises(GitHubError) as info:
        client.update_pull(1, title="t")
    assert type(info.value) is GitHubError
    assert assert_clean(info.value) == (
        "GitHub answered 409 to the request to update a pull request in acme/config "
        "(Conflict with newline)")


def test_constructor_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(GitHubAuthError, match="set GITHUB_TOKEN"):
        GitHubClient(REPO)
    with pytest.raises(GitHubError, match="owner/name"):
        GitHubClient("just-a-name", token=TOKEN)
    with pytest.raises(GitHubError, match="https"):
        GitHubClient(REPO, token=TOKEN, api_url="http://ghe.example.com/api/v3")
    with pytest.raises(GitHubError, match="must not contain credentials") as info:
        GitHubClient(REPO, token=TOKEN, api_url="https://x:hunter2@ghe.example.com/api/v3")
    assert "hunter2" not in str(info.value)
    assert GitHubClient(REPO, token=TOKEN).api_url == "https://api.github.com"


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    assert from_env(REPO) is None
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    client = from_env(REPO)
    assert client is not None and client.api_url == "https://ghe.example.com/api/v3"
    assert client.repo == REPO


# -- GitHub Enterprise -----------------------------------------------------------------

def test_enterprise_api_prefix(sleeps: list[float]) -> None:
    with FakeGitHub(token=TOKEN, repo=REPO, prefix="/api/v3") as ghe:
        client = make_client(ghe.url, sleeps)
        pr = client.ensure_pull(HEAD, "main", "t", "b", ["gitconf"])
        assert pr.number == 1
        assert len(ghe.requests_log) == 3
        assert all(r.path.startswith("/api/v3/repos/acme/config/") for r in ghe.requests_log)
        assert ghe.violations == []


@pytest.mark.parametrize(("url", "api_url", "expected"), [
    ("https://github.com/acme/config", None, "acme/config"),
    ("https://github.com/acme/config.git", None, "acme/config"),
    ("https://github.com/acme/config/", None, "acme/config"),
    ("https://x-access-token:ghs_abc@github.com/acme/config.git", None, "acme/config"),
    ("git@github.com:acme/config.git", None, "acme/config"),
    ("git@github.com:acme/config", None, "acme/config"),
    ("ssh://git@github.com/acme/config.git", None, "acme/config"),
    ("ssh://git@ssh.github.com:443/acme/config.git", None, "acme/config"),
    ("HTTPS://GitHub.com/Acme/Config.git", None, "Acme/Config"),
    ("https://ghe.example.com/acme/config.git", "https://ghe.example.com/api/v3",
     "acme/config"),
    ("git@ghe.example.com:acme/config.git", "https://ghe.example.com/api/v3", "acme/config"),
    ("https://ghe.example.com/acme/config.git", None, None),
    ("https://github.com/acme/config.git", "https://ghe.example.com/api/v3", None),
    ("https://acme.ghe.com/acme/config.git", "https://api.acme.ghe.com", "acme/config"),
    ("https://gitlab.com/acme/config.git", None, None),
    ("git@bitbucket.org:acme/config.git", None, None),
    ("https://github.com/acme", None, None),
    ("https://github.com/acme/config/tree/main", None, None),
    ("/srv/git/config.git", None, None),
    ("file:///srv/git/config.git", None, None),
    ("", None, None),
])
def test_repo_from_remote(monkeypatch: pytest.MonkeyPatch, url: str, api_url: str | None,
                          expected: str | None) -> None:
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    assert repo_from_remote(url, api_url) == expected


def test_hosts() -> None:
    assert web_host("https://api.github.com") == "github.com"
    assert web_host("https://ghe.example.com/api/v3") == "ghe.example.com"
    assert api_host_matches("https://api.github.com/", "GitHub.com")
    assert not api_host_matches("https://ghe.example.com/api/v3", "github.com")


# -- webhooks --------------------------------------------------------------------------

def _event(action: str, merged: bool, state: str = "closed") -> dict[str, Any]:
    return {"action": action, "number": 7, "repository": {"full_name": REPO},
            "pull_request": {"number": 7, "state": state, "merged": merged,
                             "html_url": "https://github.com/acme/config/pull/7",
                             "head": {"ref": HEAD, "sha": "ab" * 20},
                             "base": {"ref": "main"}}}


def test_parse_pull_request_event() -> None:
    merged = parse_pull_request_event(_event("closed", True))
    assert merged == PullRequestEvent("closed", 7, True, HEAD, "closed", "main", REPO,
                                      "https://github.com/acme/config/pull/7")
    assert merged.outcome == "merged"
    closed = parse_pull_request_event(_event("closed", False))
    assert closed is not None and closed.outcome == "closed" and not closed.merged
    opened = parse_pull_request_event(_event("opened", False, "open"))
    assert opened is not None and opened.outcome is None


@pytest.mark.parametrize("payload", [
    {}, {"action": "closed"}, {"pull_request": {}}, {"action": "closed", "pull_request": {}},
    {"action": "closed", "pull_request": {"number": "x", "head": {"ref": "b"}}},
    {"action": "closed", "pull_request": {"number": 1, "head": "not-a-dict"}},
    {"zen": "Keep it logically awesome.", "hook_id": 1},
])
def test_parse_pull_request_event_rejects_other_payloads(payload: dict[str, Any]) -> None:
    assert parse_pull_request_event(payload) is None


# -- the fake bites --------------------------------------------------------------------

def _raw(gh: FakeGitHub, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "test",
               **kwargs.pop("headers", {})}
    return requests.request(method, gh.url + path, headers=headers, timeout=5, **kwargs)


def test_fake_rejects_requests_github_would_refuse() -> None:
    with FakeGitHub(token=TOKEN, repo=REPO) as gh:
        no_head = _raw(gh, "POST", f"/repos/{REPO}/pulls", json={"base": "main", "title": "t"})
        assert no_head.status_code == 400 and "'head' is a required property" in gh.violations[0]
        assert not gh.pulls
        assert _raw(gh, "POST", f"/repos/{REPO}/pulls", json={
            "head": "x", "base": "main", "draft": "yes"}).status_code == 400
        assert "body['draft']: 'yes' is not of type 'boolean'" in gh.violations[1]
        assert _raw(gh, "GET", f"/repos/{REPO}/pulls", params={"state": "merged"}).status_code \
            == 400
        assert _raw(gh, "GET", f"/repos/{REPO}/pulls/abc").status_code == 400
        assert _raw(gh, "POST", f"/repos/{REPO}/pulls/1/labels", json={}).status_code == 400
        assert _raw(gh, "GET", f"/repos/{REPO}/pulls", params={"heads": "x"}).status_code == 400
        assert _raw(gh, "GET", f"/repos/{REPO}/pulls",
                    headers={"X-GitHub-Api-Version": "2020-01-01"}).status_code == 400
        assert _raw(gh, "POST", f"/repos/{REPO}/issues/1/labels",
                    json={"labels": []}).status_code == 400  # minItems 1
        assert len(gh.violations) == 8
        assert _raw(gh, "GET", f"/repos/{REPO}/pulls",
                    headers={"Authorization": "Bearer nope"}).status_code == 401
        assert len(gh.violations) == 8  # a wrong token is GitHub's 401, not a violation


def test_a_webhook_during_a_question_to_github_is_not_overwritten_by_its_answer(
        gh: FakeGitHub, sleeps: list[float]) -> None:
    """The daemon asks GitHub about a pull request on its loop while a `pull_request` webhook
    arrives on the HTTP thread: the answer may predate the change the webhook announces, so
    it must not be cached past the webhook's `forget()` (it was, and the override then stayed
    open for the cache's minute)."""
    from gitconf.followup import PullRequests
    from gitconf.records import OverrideKey, OverrideRecord, PullRequestRef

    number = gh.open_pull(HEAD)
    prs = PullRequests(None, None, None, min_interval=60.0)  # type: ignore[arg-type]

    class WebhookMidway(GitHubClient):
        def get_pull(self, n: int) -> PullRequest:
            answer = super().get_pull(n)  # asked while still open ...
            gh.close(n)  # ... then closed on GitHub, and the webhook says so
            prs.forget()
            return answer

    prs._client = WebhookMidway(REPO, token=TOKEN, api_url=gh.url, sleep=sleeps.append,
                                clock=lambda: NOW, rng=random.Random(7))
    record = OverrideRecord("ovr-1", "payments", "prod", "override", "open",
                            (OverrideKey("a", 1, 2),), "ann", "INC-1", "now",
                            pull_request=PullRequestRef(HEAD, number, "u"))
    assert prs.state(record).state == "open"  # type: ignore[union-attr]
    prs._client = make_client(gh.url, sleeps)
    assert prs.state(record).state == "closed"  # type: ignore[union-attr]  # asked afresh
