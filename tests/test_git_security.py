"""Security of gitconf's Git access, against real repositories and a real smart-HTTP server:
symbolic links and special files are never read, credentials never reach git's argv, a config
file or a message, and unknown repositories fail at once with one clear line."""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitconf.errors import GitError
from gitconf.gitpush import push_with_rebuild
from gitconf.gitsource import GitSource, cache_name, redact, remote_of
from gitconf.trees import NOT_A_FILE, SYMLINK, FileTree, RefusedFile
from tests.helpers import GitRepo, git, make_repo

TOKEN = "s3cr3t-t0ken-4711"
REAL_GIT = shutil.which("git") or "git"


def within(seconds: float, fn: Callable[[], object]) -> object:
    """Run `fn` in a thread and fail (instead of hanging the suite) if it blocks: opening a
    FIFO for reading blocks until a writer comes."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked: a FIFO was opened"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


# -- symbolic links and special files on disk --------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.yaml").write_text("password: hunter2\n")
    return d


def test_symlinked_config_file_on_disk_is_refused_not_followed(tmp_path: Path,
                                                                outside: Path) -> None:
    root = tmp_path / "repo"
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "dev.yaml").write_text("a: 1\n")
    (root / "svc" / "prod.yaml").symlink_to(outside / "secret.yaml")
    (root / ".gitconf.yaml").symlink_to(outside / "secret.yaml")
    tree = FileTree(root)
    assert tree.paths() == ["svc/dev.yaml"]
    refused = {r.path: r for r in tree.refused()}
    assert set(refused) == {".gitconf.yaml", "svc/prod.yaml"}
    assert refused["svc/prod.yaml"].code == SYMLINK
    assert refused["svc/prod.yaml"].message == (
        "svc/prod.yaml is a symbolic link; gitconf reads only regular files")
    for path in ("svc/prod.yaml", ".gitconf.yaml"):
        with pytest.raises(RefusedFile) as err:
            list(tree.read([path]))
        assert err.value.entry.code == SYMLINK and "hunter2" not in str(err.value)
    assert list(tree.read(["svc/dev.yaml"])) == [("svc/dev.yaml", b"a: 1\n")]


def test_symlinked_and_dangling_directories_are_not_followed(tmp_path: Path,
                                                             outside: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "svc").symlink_to(outside, target_is_directory=True)
    (root / "gone").symlink_to(tmp_path / "nowhere")
    (root / "real").mkdir()
    (root / "real" / "prod.yaml").write_text("a: 1\n")
    (root / "real" / "up").symlink_to(root, target_is_directory=True)  # a loop, not walked
    tree = FileTree(root)
    assert tree.paths() == ["real/prod.yaml"]
    assert sorted((r.path, r.code) for r in tree.refused()) == [
        ("gone", SYMLINK), ("real/up", SYMLINK), ("svc", SYMLINK)]
    for path in ("svc/secret.yaml", "real/up/real/prod.yaml"):
        with pytest.raises(RefusedFile):
            list(tree.read([path]))


def test_fifos_and_sockets_are_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "svc").mkdir(parents=True)
    os.mkfifo(root / "svc" / "prod.yaml")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "svc" / "dev.yaml"))
        tree = FileTree(root)
        assert within(5, tree.paths) == []
        assert sorted((r.path, r.code) for r in tree.refused()) == [
            ("svc/dev.yaml", NOT_A_FILE), ("svc/prod.yaml", NOT_A_FILE)]
        messages = {r.path: r.message for r in tree.refused()}
        assert "svc/prod.yaml is a FIFO, not a regular file" in messages["svc/prod.yaml"]
        for path in ("svc/prod.yaml", "svc/dev.yaml"):
            with pytest.raises(RefusedFile) as err:
                within(5, lambda p=path: list(tree.read([p])))  # type: ignore[misc]
            assert err.value.entry.code == NOT_A_FILE
    finally:
        sock.close()


def test_paths_outside_the_tree_are_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for path in ("../outside/secret.yaml", "/etc/passwd", "a//b", "./x"):
        with pytest.raises(RefusedFile):
            list(FileTree(root).read([path]))


# -- symbolic links in a commit ------------------------------------------------------------------


@pytest.fixture
def linked_repo(tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "repo", {"svc/dev.yaml": "a: 1\n", "other/x.yaml": "b: 2\n"})
    (repo.path / "svc" / "prod.yaml").symlink_to("/etc/passwd")
    (repo.path / ".gitconf.yaml").symlink_to("svc/dev.yaml")
    (repo.path / "alias").symlink_to("other")
    repo.commit(message="links")
    return repo


def test_symlink_in_a_commit_is_refused_never_read_as_yaml(linked_repo: GitRepo) -> None:
    source = GitSource.open(str(linked_repo.path))
    tree = source.tree(source.resolve("HEAD"))
    assert tree.paths() == ["other/x.yaml", "svc/dev.yaml"]
    assert sorted((r.path, r.code) for r in tree.refused()) == [
        (".gitconf.yaml", SYMLINK), ("alias", SYMLINK), ("svc/prod.yaml", SYMLINK)]
    with pytest.raises(RefusedFile):
        list(tree.read(["svc/prod.yaml"]))
    with pytest.raises(KeyError):
        list(tree.read(["alias/x.yaml"]))  # not followed into the linked directory
    assert dict(tree.read(["svc/dev.yaml"])) == {"svc/dev.yaml": b"a: 1\n"}


@pytest.mark.parametrize("listed", [True, False])
def test_symlink_refused_in_worker_and_unlisted_reads(linked_repo: GitRepo, listed: bool) -> None:
    """A worker process gets the tree pickled without its listing; a tree whose layout was
    reused was never listed: neither reads a link's text as YAML."""
    source = GitSource.open(str(linked_repo.path))
    tree = source.tree(source.resolve("HEAD"))
    if listed:
        tree.paths()
    copy = pickle.loads(pickle.dumps(tree))
    with pytest.raises(RefusedFile):
        list(copy.read(["svc/dev.yaml", "svc/prod.yaml"]))
    assert dict(copy.read(["svc/dev.yaml"])) == {"svc/dev.yaml": b"a: 1\n"}


def test_submodules_are_skipped_silently(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"svc/prod.yaml": "a: 1\n"})
    git(repo.path, "update-index", "--add", "--cacheinfo", f"160000,{repo.head()},vendored")
    git(repo.path, "commit", "-q", "-m", "submodule")
    source = GitSource.open(str(repo.path))
    tree = source.tree(source.resolve("HEAD"))
    assert tree.paths() == ["svc/prod.yaml"] and tree.refused() == []


# -- unknown repositories ------------------------------------------------------------------------


def test_unknown_paths_fail_fast_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "plain").mkdir()
    for spec, said in ((str(tmp_path / "no" / "such"), "no such repository"),
                       (str(tmp_path / "file"), "not a Git repository (a file, not a directory)"),
                       (str(tmp_path / "plain"), "not a Git repository")):
        with pytest.raises(GitError) as err:
            GitSource.open(spec)
        assert err.value.exit_code == 2
        assert str(err.value) == f"{spec}: {said}"


def test_unknown_branch_is_none(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"svc/prod.yaml": "a: 1\n"})
    source = GitSource.open(str(repo.path))
    assert source.branch_head("main") == repo.head()
    assert source.branch_head("no-such-branch") is None
    assert source.branch_head("--output=/tmp/x") is None


# -- redaction -----------------------------------------------------------------------------------


def test_redact_removes_userinfo_from_any_url_in_text() -> None:
    text = ("fatal: unable to access 'https://bob:tok@en@example.com/r.git/': 403\n"
            "also http://TOKEN@host:8080/x and ssh://git@host/r and git@github.com:o/r.git")
    assert redact(text) == (
        "fatal: unable to access 'https://***@example.com/r.git/': 403\n"
        "also http://***@host:8080/x and ssh://***@host/r and git@github.com:o/r.git")
    assert redact("https://example.com/r.git") == "https://example.com/r.git"
    assert redact("token abc and abc again", secrets=["abc"]) == "token *** and *** again"


def test_remote_splits_the_credential_out_of_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GITCONF_GIT_TOKEN", "GITHUB_TOKEN", "GITHUB_SERVER_URL"):
        monkeypatch.delenv(var, raising=False)
    r = remote_of("https://user:p%40ss@example.com:8443/r.git")
    assert r.url == "https://example.com:8443/r.git"
    assert r.shown == "https://***@example.com:8443/r.git"
    assert r.credential is not None and r.credential.password == "p@ss"
    assert "p@ss" not in repr(r)
    assert remote_of("https://example.com/r.git").credential is None
    assert remote_of("ssh://git:pw@host/r.git").url == "ssh://git@host/r.git"
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_x")
    assert remote_of("https://example.com/r.git").credential is None  # not GitHub: not sent
    gh = remote_of("https://github.com/o/r.git").credential
    assert gh is not None and (gh.username, gh.password) == ("x-access-token", "ghs_x")
    monkeypatch.setenv("GITCONF_GIT_TOKEN", "glpat")
    any_host = remote_of("https://example.com/r.git").credential
    assert any_host is not None and any_host.password == "glpat"
    assert cache_name("https://u:one@example.com/r.git") == cache_name("https://example.com/r.git")


# -- credentials over smart HTTP -----------------------------------------------------------------


@dataclass
class GitHttp:
    """`git http-backend` behind http.server, on 127.0.0.1, requiring Basic auth."""

    root: Path
    port: int = 0
    user: str = "deploy"
    password: str = TOKEN
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def url(self, name: str, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{name}"


def _handler(srv: GitHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            auth = self.headers.get("Authorization")
            srv.seen.append((self.command, self.path, auth))
            if auth != "Basic " + base64.b64encode(f"{srv.user}:{srv.password}".encode()).decode():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(srv.root),
                   "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                   "REQUEST_METHOD": self.command, "REMOTE_USER": srv.user,
                   "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(body)),
                   "CONTENT_TYPE": self.headers.get("Content-Type") or "",
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding") or "",
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol") or ""}
            out = subprocess.run([REAL_GIT, "http-backend"], input=body, env=env,
                                 capture_output=True).stdout
            ends = [i for i in (out.find(b"\r\n\r\n"), out.find(b"\n\n")) if i >= 0]
            cut = min(ends) if ends else len(out)
            head = out[:cut]
            payload = out[cut:].removeprefix(b"\r\n\r\n").removeprefix(b"\n\n")
            status = 200
            headers = []
            for line in head.decode().splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[GitHttp]:
    srv = GitHttp(tmp_path / "served")
    srv.root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    srv.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that records the argv of every git gitconf starts, then runs the
    real one."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.log"
    wrapper = bindir / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{REAL_GIT}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("GITCONF_GIT_TOKEN", "GITHUB_TOKEN", "no_proxy", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return log


def _served_repo(srv: GitHttp, tmp_path: Path) -> GitRepo:
    repo = make_repo(tmp_path / "work", {"svc/prod.yaml": "a: 1\n"})
    git(srv.root, "clone", "-q", "--bare", str(repo.path), "r.git")
    return repo


def _no_token_on_disk(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_token_in_url_goes_to_git_by_environment_only(git_http: GitHttp, argv_log: Path,
                                                      tmp_path: Path) -> None:
    repo = _served_repo(git_http, tmp_path)
    cache = tmp_path / "cache"
    source = GitSource.open(git_http.url("r.git", f"deploy:{TOKEN}"), cache_dir=cache)
    assert source.resolve("main") == repo.head()
    assert source.describe() == f"http://***@127.0.0.1:{git_http.port}/r.git"
    assert source.url == git_http.url("r.git")
    assert [p.name for p in cache.iterdir()] == [
        hashlib.sha256(git_http.url("r.git").encode()).hexdigest()[:24]]
    repo.commit({"svc/prod.yaml": "a: 2\n"})
    git(repo.path, "push", "-q", str(git_http.root / "r.git"), "main")
    source.fetch()
    assert source.branch_head("main") == repo.head()
    assert "url = " + git_http.url("r.git") in (source.git_dir / "config").read_text()
    _no_token_on_disk(cache)
    logged = argv_log.read_text()
    assert "clone --mirror" in logged and "fetch" in logged and TOKEN not in logged
    auths = {a for _, _, a in git_http.seen if a}
    assert auths == {"Basic " + base64.b64encode(f"deploy:{TOKEN}".encode()).decode()}
    assert all("deploy" not in p and TOKEN not in p for _, p, _ in git_http.seen)


def test_errors_never_show_the_token(git_http: GitHttp, argv_log: Path, tmp_path: Path) -> None:
    _served_repo(git_http, tmp_path)
    cache = tmp_path / "cache"
    for url in (git_http.url("r.git", f"deploy:wrong-{TOKEN}"),  # refused by the server
                git_http.url("missing.git", f"deploy:{TOKEN}"),  # no such repository
                f"http://deploy:{TOKEN}@127.0.0.1:1/r.git"):  # nothing listens
        with pytest.raises(GitError) as err:
            GitSource.open(url, cache_dir=cache)
        message = str(err.value)
        assert TOKEN not in message and "***@" in message and "\n" not in message, message
        assert message.startswith("cloning http://***@127.0.0.1:")
    source = GitSource.open(git_http.url("r.git", f"deploy:{TOKEN}"), cache_dir=cache)
    shutil.rmtree(git_http.root / "r.git")
    with pytest.raises(GitError) as err:
        source.fetch()
    assert TOKEN not in str(err.value) and str(err.value).startswith("fetching http://***@")
    assert TOKEN not in argv_log.read_text()
    _no_token_on_disk(cache)


def test_token_from_the_environment(git_http: GitHttp, argv_log: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _served_repo(git_http, tmp_path)
    monkeypatch.setenv("GITCONF_GIT_TOKEN", TOKEN)
    monkeypatch.setenv("GITCONF_GIT_USERNAME", "deploy")
    source = GitSource.open(git_http.url("r.git"), cache_dir=tmp_path / "cache")
    assert source.resolve("main") == repo.head()
    assert source.describe() == git_http.url("r.git")
    assert TOKEN not in argv_log.read_text()


def test_token_as_the_user_name(git_http: GitHttp, argv_log: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`https://TOKEN@host/...`: the token is sent as the user name with an empty password."""
    repo = _served_repo(git_http, tmp_path)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    git_http.user, git_http.password = TOKEN, ""
    source = GitSource.open(git_http.url("r.git", TOKEN), cache_dir=tmp_path / "cache")
    assert source.resolve("main") == repo.head()
    assert source.describe() == f"http://***@127.0.0.1:{git_http.port}/r.git"
    assert TOKEN not in argv_log.read_text()
    _no_token_on_disk(tmp_path / "cache")


def test_cache_of_older_versions_holding_the_token_is_removed(git_http: GitHttp,
                                                              argv_log: Path,
                                                              tmp_path: Path) -> None:
    _served_repo(git_http, tmp_path)
    url = git_http.url("r.git", f"deploy:{TOKEN}")
    cache = tmp_path / "cache"
    legacy = cache / hashlib.sha256(url.encode()).hexdigest()[:24]
    legacy.mkdir(parents=True)
    (legacy / "config").write_text(f'[remote "origin"]\n\turl = {url}\n')
    GitSource.open(url, cache_dir=cache)
    assert not legacy.exists()
    _no_token_on_disk(cache)


def test_push_with_token_in_url_keeps_it_out_of_argv_and_config(
        git_http: GitHttp, argv_log: Path, tmp_path: Path) -> None:
    repo = _served_repo(git_http, tmp_path)
    source = GitSource.open(git_http.url("r.git", f"deploy:{TOKEN}"), cache_dir=tmp_path / "c")
    scratch_dirs: list[Path] = []

    def build(scratch):  # type: ignore[no-untyped-def]
        scratch_dirs.append(scratch.dir)
        _no_token_on_disk(scratch.dir)
        scratch.write("svc/prod.yaml", b"a: 3\n")
        return scratch.commit("Override a", "Ann", "ann@example.com", {"Gitconf-Override": "1"})

    sha = push_with_rebuild(source, "main", "gitconf/override/svc/prod", build)
    assert sha is not None
    served = git(git_http.root / "r.git", "rev-parse", "refs/heads/gitconf/override/svc/prod")
    assert served == sha
    assert git(git_http.root / "r.git", "rev-parse", f"{sha}^") == repo.head()
    assert TOKEN not in argv_log.read_text() and "push" in argv_log.read_text()
    assert scratch_dirs and not scratch_dirs[0].exists()  # the scratch is removed
