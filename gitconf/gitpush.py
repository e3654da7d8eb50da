"""Pushing gitconf's own branches: the follow-up branch of an emergency override (SPEC §5).

The work happens in a scratch repository in a temporary directory, never in the user's
checkout: a bare repository that borrows the source's objects (`objects/info/alternates`, so
little is downloaded), fetches the remote's branch tip, and builds commits with plumbing
(`hash-object`, a private index, `commit-tree`): no checkout, no hook, no filter, no signing
prompt, nothing read from the user's identity. Like every git process of gitconf, these run
through `gitsource.run_git`, and the credential travels as there (environment only).

    def build(scratch: Scratch) -> str | None:
        text = scratch.read("svc/prod.yaml")
        scratch.write("svc/prod.yaml", edit(text))
        return scratch.commit("Override ...", "Ann", "ann@example.com",
                              {"Gitconf-Override": override_id})

    push_with_rebuild(source, "main", "gitconf/override/svc/prod", build)

The branch is based on the remote's `<branch>` when it exists (a second override adds a commit
on top, and commits someone else pushed there are kept), else on `<base_branch>`. Pushes never
force: when the branch moved meanwhile, `push` raises `PushRejected`, and `push_with_rebuild`
fetches the new tip and calls `build` again on top of it.

The committer is gitconf (`GITCONF_COMMITTER_NAME`/`GITCONF_COMMITTER_EMAIL`, default
`gitconf <gitconf@localhost>`); the author is the person who overrode.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from .errors import GitError
from .gitsource import URL_RE, GitResult, GitSource, Remote, remote_of, run_git

DEFAULT_COMMITTER = ("gitconf", "gitconf@localhost")
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: ")


class PushRejected(GitError):
    """The remote branch moved since it was fetched (a non-fast-forward push was refused):
    fetch again, re-apply the edit on top, push again."""


def committer_identity() -> tuple[str, str]:
    return (os.environ.get("GITCONF_COMMITTER_NAME") or DEFAULT_COMMITTER[0],
            os.environ.get("GITCONF_COMMITTER_EMAIL") or DEFAULT_COMMITTER[1])


def default_remote(source: GitSource) -> Remote:
    """Where a source's branches are pushed: the URL it was cloned from; for a local repository
    its `origin` remote; without one, the local repository itself."""
    if source.remote is not None:
        return source.remote
    res = run_git(["config", "--get", "remote.origin.url"], git_dir=source.git_dir, ok=(0, 1))
    url = res.text.strip()
    if not url:
        return Remote(str(source.git_dir), str(source.work_tree or source.git_dir))
    if not URL_RE.match(url) and not os.path.isabs(url):  # relative to the repository
        url = os.path.normpath(os.path.join(source.work_tree or source.git_dir, url))
    return remote_of(url)


def _scratch_config(committer: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("user.name", committer[0]), ("user.email", committer[1]),
            ("commit.gpgSign", "false"), ("push.gpgSign", "false"), ("core.fsmonitor", "false"),
            ("core.autocrlf", "false"), ("gc.auto", "0"), ("maintenance.auto", "false"),
            ("fetch.recurseSubmodules", "false"), ("push.recurseSubmodules", "no"))


class Scratch:
    """A scratch repository in a temporary directory holding one branch being built."""

    def __init__(self, source: GitSource, base_branch: str, branch: str,
                 remote: Remote | None = None, committer: tuple[str, str] | None = None):
        for name in (base_branch, branch):
            _check_branch(name)
        self.remote = remote or default_remote(source)
        if self.remote.url.startswith("-"):
            raise GitError(f"{self.remote.shown}: not a remote")
        self.base_branch, self.branch = base_branch, branch
        self.committer = committer or committer_identity()
        self._config = _scratch_config(self.committer)
        self._pending: dict[str, tuple[str, bytes]] = {}  # path -> (mode, contents)
        self.tip = ""  # the commit the next one is made on
        self.remote_tip: str | None = None  # the remote branch's tip when fetched
        self.dir = Path(tempfile.mkdtemp(prefix="gitconf-scratch-"))
        self.git_dir = self.dir / "repo.git"
        try:
            self._init(source)
            self.reset()
        except BaseException:
            self.close()
            raise

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _init(self, source: GitSource) -> None:
        run_git(["init", "--bare", "--quiet", "--template=", str(self.git_dir)],
                config=self._config)
        objects = run_git(["rev-parse", "--git-path", "objects"], git_dir=source.git_dir)
        borrowed = os.path.abspath(objects.text.strip())  # git answers relative to our cwd
        (self.git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
        (self.git_dir / "objects" / "info" / "alternates").write_text(f"{borrowed}\n")
        self._git(["config", "remote.origin.url", self.remote.url])

    def reset(self) -> None:
        """Fetch the remote again and start over from its tip: `branch` when it exists there,
        else `base_branch`. Edits not committed, and commits not pushed, are dropped."""
        heads = self._remote_heads()
        if self.branch not in heads and self.base_branch not in heads:
            raise GitError(f"branch {self.base_branch!r} not found in {self.remote.shown}")
        wanted = [b for b in dict.fromkeys((self.base_branch, self.branch)) if b in heads]
        self._git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "origin",
                   *(f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in wanted)],
                  network=True, what=f"fetching from {self.remote.shown}")
        self.remote_tip = heads.get(self.branch)
        self.tip = self.remote_tip or heads[self.base_branch]
        self._pending.clear()

    def _remote_heads(self) -> dict[str, str]:
        out = self._git(["ls-remote", "--heads", "origin", f"refs/heads/{self.base_branch}",
                         f"refs/heads/{self.branch}"], network=True,
                        what=f"reading the branches of {self.remote.shown}").text
        heads = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref in (f"refs/heads/{self.base_branch}", f"refs/heads/{self.branch}"):
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    @property
    def existing(self) -> bool:
        """Whether the branch existed on the remote when fetched (else it is based on base)."""
        return self.remote_tip is not None

    # -- files ----------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The file at the current tip (with this scratch's edits); None if there is none."""
        _check_path(path)
        if path in self._pending:
            return self._pending[path][1]
        entry = self._entry(path)
        if entry is None:
            return None
        return self._git(["cat-file", "blob", entry[1]]).stdout

    def write(self, path: str, data: bytes) -> None:
        """Replace (or add) a regular file; committed by the next `commit`."""
        _check_path(path)
        entry = self._entry(path) if path not in self._pending else (self._pending[path][0], "")
        self._pending[path] = (entry[0] if entry else "100644", data)

    def _entry(self, path: str) -> tuple[str, str] | None:
        """(mode, sha) of a regular file at the tip; GitError for anything else there."""
        out = self._git(["ls-tree", "-z", "--full-tree", "--end-of-options", self.tip, "--",
                         path], env={"GIT_LITERAL_PATHSPECS": "1"}).text
        for item in out.split("\0"):
            meta, _, name = item.partition("\t")
            if name != path:
                continue
            mode, kind, sha = meta.split(" ")
            if kind != "blob" or not mode.startswith("100"):
                what = "a symbolic link" if mode == "120000" else f"not a regular file ({kind})"
                raise GitError(f"{path} is {what} on {self.branch}; gitconf edits only "
                               "regular files")
            return mode, sha
        return None

    # -- commits --------------------------------------------------------------------------

    def commit(self, message: str, author_name: str, author_email: str,
               trailers: Mapping[str, str] | None = None) -> str | None:
        """Commit the edits on top of the tip: author the person, committer gitconf, each
        trailer added to the message. None (and no commit) when the edits change nothing."""
        for value in (author_name, author_email):
            if not value.strip() or any(c in value for c in "<>\n\0"):
                raise GitError(f"{value!r} cannot be a commit author")
        text = with_trailers(message, trailers or {})
        if not self._pending:
            return None
        index = {"GIT_INDEX_FILE": str(self.dir / "index")}
        lines = []
        for path, (mode, data) in self._pending.items():
            sha = self._git(["hash-object", "-w", "--stdin"], input=data).text.strip()
            lines.append(f"{mode} {sha}\t{path}\0")
        self._git(["read-tree", "--end-of-options", self.tip], env=index)
        self._git(["update-index", "-z", "--index-info"], env=index,
                  input="".join(lines).encode("utf-8", "surrogateescape"))
        tree = self._git(["write-tree"], env=index).text.strip()
        self._pending.clear()
        if tree == self._git(["rev-parse", f"{self.tip}^{{tree}}"]).text.strip():
            return None
        people = {"GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
                  "GIT_COMMITTER_NAME": self.committer[0],
                  "GIT_COMMITTER_EMAIL": self.committer[1]}
        sha = self._git(["commit-tree", "--no-gpg-sign", tree, "-p", self.tip], env=people,
                        input=text.encode()).text.strip()
        self._git(["update-ref", f"refs/heads/{self.branch}", sha])
        self.tip = sha
        return sha

    def push(self, branch: str | None = None) -> None:
        """`git push origin <tip>:refs/heads/<branch>`, never forced. `PushRejected` when the
        branch moved on the remote since it was fetched."""
        branch = branch or self.branch
        _check_branch(branch)
        if branch == self.branch and self.tip == self.remote_tip:
            return  # nothing new
        what = f"pushing {branch} to {self.remote.shown}"
        res = self._git(["push", "--porcelain", "--no-verify", "origin",
                         f"{self.tip}:refs/heads/{branch}"],
                        network=True, what=what, ok=(0, 1))
        if res.returncode == 0:
            if branch == self.branch:
                self.remote_tip = self.tip
            return
        for line in res.text.splitlines():
            if not line.startswith("!"):
                continue
            if "[remote rejected]" in line:
                reason = line.rpartition("[remote rejected]")[2].strip()
                if _lost_a_race(reason):
                    raise PushRejected(f"{what} was rejected: another push updated the branch "
                                       f"at the same moment {reason}")
                raise GitError(f"{what} failed: the remote refused it {reason}")
            if "[rejected]" in line:
                raise PushRejected(f"{what} was rejected: the branch moved on the remote "
                                   f"{line.rpartition('[rejected]')[2].strip()}")
        raise GitError(f"{what} failed: {res.stderr.strip() or 'exit 1'}")

    def _git(self, args: list[str], *, input: bytes | None = None,
             env: Mapping[str, str] | None = None, network: bool = False,
             what: str | None = None, ok: tuple[int, ...] = (0,)) -> GitResult:
        return run_git(args, git_dir=self.git_dir, input=input, env=env, config=self._config,
                       credential=self.remote.credential if network else None, what=what, ok=ok)


def prepare_branch(source: GitSource, base_branch: str, branch: str,
                   remote: str | Remote | None = None,
                   committer: tuple[str, str] | None = None) -> Scratch:
    """A scratch repository at the remote's `branch` (or `base_branch` when `branch` does not
    exist there yet). `remote` defaults to `default_remote(source)`; a URL may carry a
    credential (it goes to git by environment only). Use it as a context manager."""
    if isinstance(remote, str):
        remote = remote_of(remote)
    return Scratch(source, base_branch, branch, remote, committer)


# What a remote answers when another push to the same branch won the race inside receive-pack
# (two pushes at once: the ref's lock, or its old value changed under it). Retried like a
# non-fast-forward; a protected branch or a hook's refusal is not.
_RACE_REASONS = ("failed to update ref", "cannot lock ref", "failed to lock",
                 "incorrect old value", "reference already exists")


def _lost_a_race(reason: str) -> bool:
    return any(r in reason.lower() for r in _RACE_REASONS)


def push_with_rebuild(source: GitSource, base_branch: str, branch: str,
                      build: Callable[[Scratch], str | None],
                      remote: str | Remote | None = None,
                      committer: tuple[str, str] | None = None, attempts: int = 3) -> str | None:
    """Prepare, `build` (edit and commit; it returns the commit, or None when there is nothing
    to change), push; when the push is rejected because the branch moved, fetch its new tip
    and build again on top, up to `attempts` times. Returns the pushed commit (None: nothing
    to push). `PushRejected` when every attempt lost the race."""
    with prepare_branch(source, base_branch, branch, remote, committer) as scratch:
        for attempt in range(1, attempts + 1):
            sha = build(scratch)
            if sha is None:
                return None
            try:
                scratch.push()
                return sha
            except PushRejected:
                if attempt >= attempts:
                    raise
                scratch.reset()
    return None


def with_trailers(message: str, trailers: Mapping[str, str]) -> str:
    """`message` with `Key: value` trailers appended to its trailer block (a last paragraph
    made of trailers), else as a new paragraph. Written here rather than by `git
    interpret-trailers`, which would run `trailer.<key>.cmd` commands of the user's config."""
    lines = [f"{k}: {v}" for k, v in trailers.items()]
    for key, value in trailers.items():
        if not _TRAILER_KEY.match(key) or not value.strip() or any(c in value for c in "\r\n\0"):
            raise GitError(f"{key}: {value!r} cannot be a commit trailer")
    text = message.strip("\n")
    if not lines:
        return text + "\n"
    last = text.rsplit("\n\n", 1)[-1].splitlines() if "\n\n" in text else []
    if last and all(_TRAILER_LINE.match(ln) for ln in last):
        return f"{text}\n" + "\n".join(lines) + "\n"
    return f"{text}\n\n" + "\n".join(lines) + "\n"


def _check_branch(name: str) -> None:
    if name.startswith("-") or run_git(["check-ref-format", f"refs/heads/{name}"],
                                       ok=range(256)).returncode != 0:
        raise GitError(f"{name!r} is not a valid branch name")


def _check_path(path: str) -> None:
    parts = path.split("/")
    if (any(p in ("", ".", "..") or p.lower() == ".git" for p in parts)
            or any(c in path for c in "\0\n")):
        raise GitError(f"{path!r} is not a path inside the repository")
