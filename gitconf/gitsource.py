"""Git through the `git` binary: resolve refs, list a commit's tree, read blobs in one
`cat-file --batch`, changed paths between commits, commit metadata, and a fetch cache for URLs.

Plain subprocesses are the fastest way here (DEPENDENCY-FACTS.md: ls-tree + one cat-file batch
reads 30,000 files in ~0.3 s, GitPython takes 1-4 s) and hold no state a daemon could leak.

Every `git` process of gitconf starts here: `run_git` (one command, output captured, like
pre-commit's `cmd_output_b`) or `start_git` (a streaming process, for `cat-file --batch`). Both
build the command and environment the same way:
- `GIT_TERMINAL_PROMPT=0` (fail rather than wait for a password), `LC_ALL=C` (messages that
  can be parsed), stdin closed unless input is given;
- `core.hooksPath=/dev/null`: no hook of the user (global or repository) runs in gitconf's own
  operations;
- inherited `GIT_*` variables that redirect git (`GIT_DIR`, `GIT_INDEX_FILE`, ... as set inside a
  hook) are dropped; those that configure transport (`GIT_SSH_COMMAND`, `GIT_SSL_CAINFO`,
  `GIT_CONFIG_*`, ...) are kept;
- a failure raises `GitError` with the first meaningful line of git's stderr, credentials
  redacted.

Credentials never reach a URL that git sees, an argv (visible in `ps`), a config file or a
message. For an http(s) remote, gitconf takes, in this order:
1. the user-info of the URL given (`https://user:TOKEN@host/r.git`; with a user name alone,
   `https://TOKEN@host/...` or `https://alice@host/...`, the user's own credential helpers are
   asked first for that user, then the name is sent with an empty password, which GitHub
   accepts for a token);
2. `GITCONF_GIT_TOKEN`, with the user name `GITCONF_GIT_USERNAME` (default `x-access-token`,
   which GitHub accepts for any token);
3. `GITHUB_TOKEN`, only for `github.com` and the host of `GITHUB_SERVER_URL`.
git receives the URL without user-info, and the credential through a credential helper set in
the environment (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`, scoped to the remote's scheme and host,
replacing the user's helpers for that host when a secret is given) that prints two environment
variables of the git process (`GITCONF_CRED_USERNAME`, `GITCONF_CRED_PASSWORD`): so the secret
is sent only when that server asks for it, never to another host a redirect names. ssh URLs
keep their user name (ssh needs it; it is no secret) and lose any password. The cache
directory of a URL is named by the hash of the URL without user-info (a cache that an older
version named by the full URL, with the token in its config, is deleted). `redact()` removes
user-info from any URL in a text (for logs).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import GitError, UnknownRef
from .fastclass import dataclass
from .trees import Refused, RefusedFile, special_entry, symlink_entry

URL_RE = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
_EMAIL_RE = re.compile(r"<([^<>]+)>")
_USERINFO_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")
GIT_TIMEOUT = 600.0

# -- redaction and credentials ------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the user-info of every URL in it replaced by `***` (`https://***@host/r.git`),
    and each of `secrets` too."""
    text = _USERINFO_RE.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# git runs a helper starting with `!` as a shell snippet with the operation (`get`, `store`,
# `erase`) appended; only `get` answers. The values stay in the environment of the git process.
_HELPER = ("!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' "
           "\"$GITCONF_CRED_USERNAME\" \"$GITCONF_CRED_PASSWORD\"; }; f")


@dataclass(frozen=True)
class Credential:
    """A user name and secret for one `scheme://host[:port]`, handed to git by environment.
    With a password (or a token from the environment) gitconf's helper is the only one asked
    for that host; a URL with a user name alone (`https://alice@host/`, `https://TOKEN@host/`)
    lets the user's own helpers answer first, with that user name, and ours last (empty
    password: GitHub takes a token as the user name)."""

    scope: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    exclusive: bool = True

    def config(self) -> list[tuple[str, str]]:
        key = f"credential.{self.scope}.helper"
        reset = [(key, "")] if self.exclusive else []  # an empty value drops earlier helpers
        return [*reset, (key, _HELPER)]

    def env(self) -> dict[str, str]:
        return {"GITCONF_CRED_USERNAME": self.username, "GITCONF_CRED_PASSWORD": self.password}

    def secrets(self) -> tuple[str, ...]:
        # the user name is a secret too when it may carry the token (`https://TOKEN@host/`)
        return (self.password,) if self.password else (self.username,)


@dataclass(frozen=True)
class Remote:
    """A remote as git sees it (`url`: no password, no token), as people see it (`shown`), and
    the credential to use with it."""

    url: str
    shown: str
    credential: Credential | None = None


def remote_of(url: str) -> Remote:
    """Split the credential out of a remote URL or path (see the module docstring)."""
    try:
        parts = urlsplit(url) if "://" in url else None
    except ValueError:  # a malformed URL: git will say what is wrong with it
        parts = None
    if parts is None or not parts.scheme:
        return Remote(url, redact(url))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    scheme = parts.scheme.lower()
    if scheme in ("ssh", "git+ssh", "ssh+git"):
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if at and user else hostport
        return Remote(urlunsplit(parts._replace(netloc=netloc)), redact(url))
    stripped = urlunsplit(parts._replace(netloc=hostport))
    if scheme not in ("http", "https"):
        return Remote(stripped, redact(url))
    scope = f"{scheme}://{hostport}"
    cred: Credential | None = None
    if at:
        user, _, password = userinfo.partition(":")
        cred = Credential(scope, unquote(user), unquote(password), exclusive=bool(password))
    else:
        cred = _env_credential(scope, parts.hostname or "")
    if cred is not None and any(c in s for s in (cred.username, cred.password) for c in "\r\n\0"):
        raise GitError(f"{redact(url)}: the credential contains a line break")
    return Remote(stripped, redact(url), cred)


def _env_credential(scope: str, host: str) -> Credential | None:
    token = os.environ.get("GITCONF_GIT_TOKEN")
    if token:
        return Credential(scope, os.environ.get("GITCONF_GIT_USERNAME") or "x-access-token", token)
    token = os.environ.get("GITHUB_TOKEN")
    server = urlsplit(os.environ.get("GITHUB_SERVER_URL") or "https://github.com").hostname
    if token and host.lower() in {"github.com", (server or "").lower()}:
        return Credential(scope, "x-access-token", token)
    return None


# -- the one way to run git ---------------------------------------------------------------------

# inherited GIT_* variables kept: they configure transport or config, not which repository
_KEEP_GIT_ENV = frozenset({
    "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH", "GIT_SSL_NO_VERIFY", "GIT_SSL_CERT", "GIT_SSL_KEY",
    "GIT_HTTP_PROXY_AUTHMETHOD", "GIT_PROXY_SSL_CAINFO", "GIT_ALLOW_PROTOCOL", "GIT_ASKPASS",
    "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_HTTP_USER_AGENT", "GIT_PROTOCOL_FROM_USER",
})
BASE_CONFIG = (("core.hooksPath", os.devnull),)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str  # decoded and redacted

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def git_env(extra: Mapping[str, str] | None = None,
            credential: Credential | None = None) -> dict[str, str]:
    """The environment of every git process: see the module docstring."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k in _KEEP_GIT_ENV
           or k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    if credential is not None:
        try:
            n = int(env.get("GIT_CONFIG_COUNT") or 0)
        except ValueError:
            n = 0
        for i, (key, value) in enumerate(credential.config(), start=n):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        env["GIT_CONFIG_COUNT"] = str(n + len(credential.config()))
        env.update(credential.env())
    return env


def git_command(args: Sequence[str], git_dir: Path | str | None = None,
                config: Iterable[tuple[str, str]] = ()) -> list[str]:
    cmd = ["git"]
    for key, value in (*BASE_CONFIG, *config):
        cmd += ["-c", f"{key}={value}"]
    if git_dir is not None:
        cmd.append(f"--git-dir={git_dir}")
    return [*cmd, *args]


def run_git(args: Sequence[str], *, cwd: Path | str | None = None,
            git_dir: Path | str | None = None, input: bytes | None = None,
            env: Mapping[str, str] | None = None, config: Iterable[tuple[str, str]] = (),
            credential: Credential | None = None, what: str | None = None,
            ok: Collection[int] = (0,), timeout: float = GIT_TIMEOUT) -> GitResult:
    """Run one git command and return its output; `GitError` (first meaningful stderr line,
    credentials redacted) when its exit status is not in `ok`."""
    cmd = git_command(args, git_dir, config)
    what = what or f"git {args[0]}"
    secrets = credential.secrets() if credential else ()
    try:
        res = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, timeout=timeout,
                             env=git_env(env, credential),
                             stdin=subprocess.DEVNULL if input is None else None)
    except subprocess.TimeoutExpired:
        raise GitError(f"{what} timed out after {timeout:.0f}s") from None
    except OSError as exc:
        raise _spawn_error(exc, cwd, what) from None
    return _checked(res.returncode, res.stdout, res.stderr, what, ok, secrets)


class PendingGit:
    """A `run_git` of a local repository (no input, no credential) started now and collected
    by `result()`, so that the caller waits for something else in between (the daemon reads
    etcd while `git show` runs). Either `result()` or `cancel()` must be called: both reap
    the process."""

    def __init__(self, args: Sequence[str], git_dir: Path | str | None,
                 timeout: float = GIT_TIMEOUT):
        self.what, self.timeout = f"git {args[0]}", timeout
        try:
            self.proc = subprocess.Popen(git_command(args, git_dir), env=git_env(),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as exc:
            raise _spawn_error(exc, None, self.what) from None

    def result(self) -> GitResult:
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise GitError(f"{self.what} timed out after {self.timeout:.0f}s") from None
        except BaseException:
            self.cancel()
            raise
        return _checked(self.proc.returncode, out, err, self.what, (0,))

    def cancel(self) -> None:
        """Kill and reap the process, as `run_git` does on a timeout (its output is not
        waited for)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _checked(returncode: int, stdout: bytes, stderr_b: bytes, what: str, ok: Collection[int],
             secrets: Iterable[str] = ()) -> GitResult:
    stderr = redact(stderr_b.decode("utf-8", "replace"), secrets)
    if returncode not in ok:
        raise GitError(f"{what} failed: {first_line(stderr) or f'exit {returncode}'}")
    return GitResult(returncode, stdout, stderr)


class GitStream:
    """A running git process with pipes to stdin and stdout (stderr kept in a file, so that it
    can neither fill up nor mix in), built like `run_git`'s."""

    def __init__(self, args: Sequence[str], git_dir: Path | str | None, what: str):
        self.what = what
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        try:
            self.proc = subprocess.Popen(git_command(args, git_dir), env=git_env(),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._err)
        except OSError as exc:
            self._err.close()
            raise _spawn_error(exc, None, what) from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def error(self, detail: str) -> GitError:
        """Stop the process and describe what went wrong, with git's own words if it has any."""
        self._stop()
        self._err.seek(0)
        said = first_line(redact(self._err.read().decode("utf-8", "replace")))
        self._err.close()
        return GitError(f"{self.what} failed: {said or detail}")

    def close(self) -> None:
        self._stop()
        self._err.close()

    def _stop(self) -> None:
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_git(args: Sequence[str], git_dir: Path | str | None = None,
              what: str | None = None) -> GitStream:
    """Start a streaming git process (same command line and environment rules as `run_git`)."""
    return GitStream(args, git_dir, what or f"git {args[0]}")


GitObject = tuple[bytes, bytes, bytes]  # (id, type, content); the type is b"blob", b"tree", ...
KEPT_NAMES = 256  # files a read sends through a kept reader at most (more: a process of its own)


def read_object(stream: GitStream, name: str) -> GitObject | None:
    """One answer of `cat-file --batch`: the object's id, type and content, or None when the
    repository has no such object. `GitError` for anything else (a process that died)."""
    line = stream.stdout.readline()
    if line.endswith((b" missing\n", b" ambiguous\n")):  # `<name> missing`: names may hold
        return None  # spaces
    header = line.split()
    if len(header) != 3 or not header[2].isdigit():
        raise GitError(f"unexpected answer for {name}: {header!r}")
    size = int(header[2])
    data = stream.stdout.read(size)
    if len(data) != size or stream.stdout.read(1) != b"\n":
        raise GitError(f"short answer for {name}")
    return header[0], header[1], data


def _parts(names: Sequence[str], most: int = 16 * 1024) -> Iterator[Sequence[str]]:
    """`names` in runs of at most `most` bytes: a run is written whole before its answers
    are read, so it must fit the pipe's buffer (64 KiB on Linux) while git, blocked on
    writing an answer nobody reads yet, reads no more of it."""
    start, size = 0, 0
    for i, name in enumerate(names):
        if i > start and size + len(name) + 1 > most:
            yield names[start:i]
            start, size = i, 0
        size += len(name) + 1
    if start < len(names):
        yield names[start:]


class KeptReader:
    """One `git cat-file --batch` kept running for a long-lived process (the daemon), which
    reads a few objects every cycle: a process started per read costs ~2 ms before it reads
    anything. It reads objects only, never refs: a running git keeps what it has read of the
    refs (after `git gc` packs them it answered with the old head, measured with git 2.39),
    while an object id names the same content for ever and git looks for an object it does
    not find in the packs it knows in the packs added since.

    The process is started at the first read and asked under a lock: one request at a time,
    written in runs that fit a pipe's buffer, each run's answers read before the next run is
    written, so the two pipes cannot fill up against each other. It is started again when
    the pack directory changed (a repack deleted packs it keeps open, holding their disk
    space) and after any failure (a killed process, an answer that cannot be parsed): the
    request is asked once more of a new process, whose failure is the caller's `GitError`.
    `close()` stops it."""

    def __init__(self, git_dir: Path):
        self.git_dir = git_dir
        self._stream: GitStream | None = None
        self._packs = -1  # the pack directory's mtime when the process started
        self._lock = threading.Lock()

    def read(self, names: Sequence[str]) -> list[GitObject | None]:
        """Each object's id, type and content, None for one the repository does not have."""
        if any("\n" in n for n in names):
            raise ValueError("an object name with a line break")
        with self._lock:
            packs = self._pack_stamp()
            if self._stream is not None and packs != self._packs:
                self._close()
            fresh = self._stream is None
            try:
                return self._ask(names, packs)
            except GitError:
                if fresh:
                    raise
            return self._ask(names, packs)  # the old process died: once more, a new one

    def close(self) -> None:
        with self._lock:
            self._close()

    def _ask(self, names: Sequence[str], packs: int) -> list[GitObject | None]:
        if self._stream is None:
            self._stream = start_git(["cat-file", "--batch"], self.git_dir,
                                     what="reading objects")
            self._packs = packs
        stream = self._stream
        out: list[GitObject | None] = []
        try:
            for part in _parts(names):
                stream.stdin.write(b"".join(n.encode("utf-8", "surrogateescape") + b"\n"
                                            for n in part))
                stream.stdin.flush()
                out += [read_object(stream, n) for n in part]
        except (OSError, ValueError, GitError) as exc:
            self._stream = None
            raise stream.error(f"no answer ({exc})") from None
        return out

    def _pack_stamp(self) -> int:
        try:
            return os.stat(self.git_dir / "objects" / "pack").st_mtime_ns
        except OSError:
            return 0

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def first_line(stderr: str) -> str:
    """The line of git's stderr that says what went wrong: the first `fatal:`/`error:` line,
    else the first that is not a hint or progress, without its prefix."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        for prefix in ("fatal: ", "error: "):
            if ln.startswith(prefix):
                return ln[len(prefix):]
    skip = ("hint:", "Cloning into", "warning:", "To ", "From ")
    return next((ln for ln in lines if not ln.startswith(skip)), lines[0] if lines else "")


def _spawn_error(exc: OSError, cwd: Path | str | None, what: str) -> GitError:
    if shutil.which("git") is None:
        return GitError("git is not installed (it must be on PATH)")
    if cwd is not None and not os.path.isdir(cwd):
        return GitError(f"{what} failed: {cwd}: no such directory")
    return GitError(f"{what} failed: {exc.strerror or exc}")


# -- values -------------------------------------------------------------------------------------


def cache_root() -> Path:
    """gitconf's cache: `$GITCONF_CACHE_DIR`, else `$XDG_CACHE_HOME/gitconf`."""
    base = os.environ.get("GITCONF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gitconf")
    return Path(base)


def version_order(name: str) -> tuple[tuple[int, int | str], ...]:
    """Git's version sort (`v:refname`, like glibc's strverscmp): runs of digits compare as
    numbers, anything else character by character, so v1.10 comes after v1.9."""
    return tuple((0x30, int(run)) if run[0] in "0123456789" else (ord(run[0]), run)
                 for run in _RUNS.findall(name))


_RUNS = re.compile(r"[0-9]+|[^0-9]+")


def default_cache_dir() -> Path:
    return cache_root() / "repos"


def cache_name(url: str) -> str:
    """The cache directory of a URL: named by the URL without user-info, so neither a token
    nor a change of token shows in (or changes) the name."""
    return hashlib.sha256(remote_of(url).url.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author_name: str
    author_email: str
    author_time: str  # ISO 8601 UTC, e.g. 2025-01-15T10:30:00Z
    approved_by: str | None
    subject: str
    version: str  # highest tag pointing at the commit, else the 12-character sha


def email_of(value: str) -> str:
    """`Name <email>` -> `email`; a bare address stays as it is."""
    m = _EMAIL_RE.search(value)
    return (m.group(1) if m else value).strip()


def iso_utc(epoch: int | float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- a repository -------------------------------------------------------------------------------

_NETWORK = frozenset({"fetch", "clone", "ls-remote", "push", "pull"})
_TREE_MODE = "040000"  # a directory in a raw diff


class GitSource:
    """One repository: a working tree, a bare repository, or a cached clone of a URL.
    `url` is the remote URL without credentials (None for a local repository)."""

    def __init__(self, git_dir: Path, work_tree: Path | None, url: str | None = None,
                 remote: Remote | None = None):
        self.git_dir = git_dir
        self.work_tree = work_tree
        self.remote = remote or (remote_of(url) if url else None)
        self.url = self.remote.url if self.remote else None
        self._diffs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._commits: set[str] = set()  # full shas known to name commits here
        # commit -> {directory: its tree's id}, for the directories a commit changed (from
        # its info): a file there is found without git walking the root tree again
        self._trees: dict[str, dict[str, str]] = {}
        self.reader: KeptReader | None = None  # `keep_reading()`: the daemon's cat-file

    def __getstate__(self) -> dict[str, object]:
        """Sent to worker processes, which only read: without the credential, and without
        the kept reader (a process of this one)."""
        state = dict(self.__dict__)
        if self.remote is not None:
            state["remote"] = replace(self.remote, credential=None)
        state["reader"] = None
        return state

    def keep_reading(self) -> None:
        """Read a few objects at a time through one kept `cat-file` process (`KeptReader`)
        from now on, instead of one process per read: for a long-lived process that reads a
        little every cycle (the daemon). A one-shot command does not: it would start the
        process anyway, and then have one more to stop. `close()` stops it."""
        if self.reader is None:
            self.reader = KeptReader(self.git_dir)

    def close(self) -> None:
        """Stop the kept reader, if any (reading again starts a new one)."""
        if self.reader is not None:
            self.reader.close()

    def __enter__(self) -> GitSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trees_of(self, commit: str) -> Mapping[str, str]:
        """The ids of the directory trees of `commit` known without asking git."""
        return self._trees.get(commit, {})

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, spec: str, cache_dir: Path | None = None, fetch: bool = True) -> GitSource:
        if URL_RE.match(spec):
            return cls._open_url(spec, cache_dir or default_cache_dir(), fetch)
        path = Path(spec)
        if not path.exists():
            raise GitError(f"{spec}: no such repository")
        if not path.is_dir():
            raise GitError(f"{spec}: not a Git repository (a file, not a directory)")
        res = run_git(["rev-parse", "--absolute-git-dir", "--is-bare-repository"], cwd=path,
                      ok=range(256))
        if res.returncode != 0:
            said = first_line(res.stderr)
            if not said or "not a git repository" in said.lower():
                said = "not a Git repository"
            raise GitError(f"{spec}: {said}")
        git_dir, bare = res.text.splitlines()[:2]
        work_tree = None
        if bare != "true":
            work_tree = Path(run_git(["rev-parse", "--show-toplevel"], cwd=path).text.strip())
        return cls(Path(git_dir), work_tree)

    @classmethod
    def _open_url(cls, url: str, cache_dir: Path, fetch: bool) -> GitSource:
        remote = remote_of(url)
        name = cache_name(url)
        legacy = hashlib.sha256(url.encode()).hexdigest()[:24]
        if legacy != name and (cache_dir / legacy).is_dir():
            shutil.rmtree(cache_dir / legacy, ignore_errors=True)  # older caches kept the token
        target = cache_dir / name
        source = cls(target, None, remote=remote)
        if not (target / "HEAD").exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_dir))
            try:
                run_git(["clone", "--mirror", "--quiet", "--template=", "--", remote.url,
                         str(tmp)], cwd=cache_dir, credential=remote.credential,
                        what=f"cloning {remote.shown}")
                try:
                    os.replace(tmp, target)
                except OSError:
                    if not (target / "HEAD").exists():  # else another process cloned it first
                        raise GitError(f"cannot create the cache {target}") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        elif fetch:
            source.fetch()
        return source

    def fetch(self) -> None:
        """Update a cached clone (no-op for a local repository, which is read in place)."""
        if self.remote is not None:
            self.run(["fetch", "--prune", "--quiet", "origin"],
                     what=f"fetching {self.remote.shown}")

    # -- plumbing -------------------------------------------------------------------------

    def run(self, args: list[str], what: str | None = None, input: bytes | None = None) -> str:
        cred = self.remote.credential if self.remote and args and args[0] in _NETWORK else None
        return run_git(args, git_dir=self.git_dir, what=what, input=input,
                       credential=cred).text

    def resolve(self, ref: str) -> str:
        if ref in self._commits:  # a full sha already resolved here: commits are immutable
            return ref
        if ref.startswith("-"):
            raise UnknownRef(f"{ref!r} is not a commit")
        try:
            sha = self.run(["rev-parse", "--verify", "--quiet", "--end-of-options",
                            f"{ref}^{{commit}}"]).strip()
        except GitError:
            raise UnknownRef(f"{ref!r} is not a commit in {self.describe()}") from None
        self._commits.add(sha)
        return sha

    def describe(self) -> str:
        if self.remote is not None:
            return self.remote.shown
        return str(self.work_tree or self.git_dir)

    def tree(self, commit: str) -> GitTree:
        return GitTree(self, commit)

    def changed_paths(self, a: str, b: str) -> list[str]:
        """Paths that differ between two commits (both sides of a rename)."""
        return [p for _, p in self.changed_status(a, b)]

    def changed_status(self, a: str, b: str) -> list[tuple[str, str]]:
        """(status, path) of each path that differs: A added, M modified, D deleted, T type.
        The last few answers are kept: a pass asks about the same two commits twice (which
        units changed, and whether the layout did)."""
        key = (a, b)
        if key not in self._diffs:
            self._remember_diff(key, self.run(["diff", "--name-status", "-z", "--no-renames",
                                               "--end-of-options", a, b, "--"]))
        return self._diffs[key]

    def _remember_diff(self, key: tuple[str, str], name_status: str) -> None:
        parts = [p for p in name_status.split("\0") if p]
        self._remember_changes(key, list(zip(parts[0::2], parts[1::2], strict=True)))

    def _remember_changes(self, key: tuple[str, str], changes: list[tuple[str, str]]) -> None:
        if len(self._diffs) >= 8:
            self._diffs.pop(next(iter(self._diffs)))
        self._diffs[key] = changes

    def _remember_raw(self, parent: str, commit: str, raw: str) -> None:
        """A commit's `--raw -t -z` diff from its parent: the changed paths as `git diff
        --name-status` lists them (files, links and submodules), and the new tree id of each
        directory it changed (`trees_of`), so that reading a file there needs no walk
        through the root tree (2 ms at 10,000 services, every time)."""
        parts = [p for p in raw.split("\0") if p]
        changes: list[tuple[str, str]] = []
        trees: dict[str, str] = {}
        for meta, path in zip(parts[0::2], parts[1::2], strict=True):
            old_mode, new_mode, _, new_id, status = meta.lstrip(":").split(" ")
            if new_mode == _TREE_MODE:
                if status in ("A", "M"):
                    trees[path] = new_id
            elif old_mode != _TREE_MODE:
                changes.append((status, path))
        self._remember_changes((parent, commit), changes)
        if len(self._trees) >= 8:
            self._trees.pop(next(iter(self._trees)))
        self._trees[commit] = trees

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether `a` is an ancestor of `b`; False too when either is unknown here."""
        res = run_git(["merge-base", "--is-ancestor", "--end-of-options", a, b],
                      git_dir=self.git_dir, ok=range(256))
        return res.returncode == 0

    def commit_info(self, sha: str, since: str | None = None) -> CommitInfo:
        """Who and what a commit is, and its version: its highest tag by version order (git's
        `--sort=-v:refname`), else its short id. One `git show`: the tags come as its
        decorations. With `since` (the commit applied last), the same process also lists the
        paths the commit changed: when `since` is its only parent (a one-commit push, the
        daemon's usual cycle), that is `changed_status(since, sha)`, and no `git diff` runs;
        the trees of the directories it changed come with them (`trees_of`)."""
        return self.start_commit_info(sha, since)()

    def start_commit_info(self, sha: str, since: str | None = None,
                          ) -> Callable[[], CommitInfo]:
        """`commit_info` started now, answered when the returned function is called (the
        daemon reads etcd meanwhile: a `git show` takes 7 ms at 10,000 services, most of it
        diffing two 10,000-entry root trees). Call it, even after an error elsewhere: it
        reaps the process."""
        fmt = "%x00".join(["%H", "%P", "%an", "%ae", "%at",
                           "%(trailers:key=Approved-by,valueonly,separator=%x1f)",
                           "%(trailers:key=Reviewed-by,valueonly,separator=%x1f)", "%D",
                           "%s"]) + "%x00"
        diff = ["--raw", "-t", "-z", "--no-abbrev", "--no-renames", "--diff-merges=off"] \
            if since else ["-s"]
        pending = PendingGit(["show", *diff, f"--format={fmt}", "--decorate-refs=refs/tags/",
                              "--end-of-options", sha, "--"], self.git_dir)
        return lambda: self._commit_of(pending.result().text, since)

    def _commit_of(self, out: str, since: str | None) -> CommitInfo:
        full, parents, name, email, at, approved, reviewed, refs, subject, rest = \
            out.split("\0", 9)
        if since and parents == since:  # the raw diff follows the header's NUL
            self._remember_raw(since, full, rest.lstrip("\0\n"))
        trailer = (approved or reviewed).split("\x1f")[0].strip()
        tag = max((r[5:] for r in refs.split(", ") if r.startswith("tag: ")),
                  key=lambda t: (version_order(t), t), default=None)
        return CommitInfo(
            sha=full,
            author_name=name,
            author_email=email,
            author_time=iso_utc(int(at)),
            approved_by=email_of(trailer) if trailer else None,
            subject=subject,
            version=tag or full[:12],
        )

    def uncommitted(self) -> list[str]:
        """Config files of a working tree with changes not in HEAD (none for a bare repo)."""
        if self.work_tree is None:
            return []
        out = run_git(["status", "--porcelain", "-z", "--no-renames", "--",
                       "*.yaml", "*.yml", "*.json"], cwd=self.work_tree).text
        return sorted(entry[3:] for entry in out.split("\0") if len(entry) > 3)

    def current_branch(self) -> str | None:
        """The branch HEAD points at (a mirror of a URL: the remote's default branch); None for
        a detached HEAD."""
        res = run_git(["symbolic-ref", "--short", "-q", "HEAD"], git_dir=self.git_dir,
                      ok=range(256))
        name = res.text.strip() if res.returncode == 0 else ""
        return name or None

    def branch_head(self, branch: str) -> str | None:
        """The commit at the tip of `branch` (a local branch, else origin's); None if there is
        no such branch here."""
        for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
            res = run_git(["rev-parse", "--verify", "--quiet", "--end-of-options",
                           f"{ref}^{{commit}}"], git_dir=self.git_dir, ok=range(256))
            if res.returncode == 0 and res.text.strip():
                sha = res.text.strip()
                self._commits.add(sha)  # verified a commit: `resolve` need not ask again
                return sha
        return None


class GitTree:
    """A commit's regular files, read without a checkout. Symbolic links (mode 120000) are
    listed by `refused()` and never read; submodules (160000) are skipped."""

    def __init__(self, source: GitSource, commit: str):
        self.source = source
        self.commit = commit
        self._blobs: dict[str, str] | None = None
        self._refused: list[Refused] | None = None
        self._part = False  # a restricted tree: its listing is small and travels with it

    def __getstate__(self) -> dict[str, object]:
        """Sent to a worker process: the whole listing is not (a restricted tree's few blob
        ids are); what it refused is (it is short), so the worker refuses the same paths."""
        state = dict(self.__dict__)
        if not self._part:
            state["_blobs"] = None
        return state

    def restricted(self, paths: Iterable[str]) -> GitTree:
        """The same commit, knowing only `paths`, by blob id: a worker that reads its share of
        the files asks `cat-file` for object ids, where `commit:path` would make git resolve
        every path through the root tree again (33.7 s against 0.20 s for 30,000 files under
        a 10,000-entry root)."""
        blobs = self.blobs()
        part = GitTree(self.source, self.commit)
        part._blobs = {p: blobs[p] for p in paths if p in blobs}
        part._refused = list(self._refused or [])
        part._part = True
        return part

    def blobs(self) -> dict[str, str]:
        if self._blobs is None:
            out = self.source.run(["ls-tree", "-r", "-z", "--full-tree", "--end-of-options",
                                   self.commit])
            self._blobs, self._refused = _parse_ls_tree(out)
        return self._blobs

    def paths(self) -> list[str]:
        return sorted(self.blobs())

    def refused(self) -> list[Refused]:
        if self._refused is None:
            self.blobs()
        assert self._refused is not None
        return list(self._refused)

    def read(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """All contents through one `git cat-file --batch` (the source's kept one for a few
        files, `GitSource.keep_reading`); a thread feeds the object names so that neither
        pipe can fill up and deadlock. `RefusedFile` (before anything is read) for a path
        that is not a regular file, `KeyError` for one the commit does not have."""
        wanted = list(paths)
        if not wanted:
            return
        reader = self.source.reader
        if reader is not None and len(wanted) <= KEPT_NAMES \
                and not any("\n" in p for p in wanted):
            kept = self._read_kept(reader, wanted)
            if kept is not None:
                yield from kept
                return
        stream = start_git(["cat-file", "--batch"], self.source.git_dir,
                           what=f"reading {self.commit[:12]}")
        stdin, stdout = stream.stdin, stream.stdout
        try:
            names = self._names_in_stream(stream, wanted) or self._object_names(wanted)
        except BaseException:
            stream.close()
            raise

        def feed() -> None:
            try:
                for name in names:
                    stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
                stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            for p in wanted:
                header = stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise stream.error(f"unexpected answer for {p}: {header!r}")
                data = stdout.read(int(header[2]))
                stdout.read(1)  # the newline after each object
                yield p, data
        finally:
            writer.join(timeout=5)
            stream.close()

    def _read_kept(self, reader: KeptReader, wanted: list[str],
                   ) -> list[tuple[str, bytes]] | None:
        """A few files through the kept reader: their directories' trees (by id when the
        commit's info gave them), then their blobs by id, all read before the first is
        handed out (the reader serves one request at a time). None: too many directories
        for this (the one-shot way lists what it needs)."""
        if self._blobs is not None or self._refused is not None:
            ids = self._object_names(wanted)
        else:
            dirs = sorted({p.rpartition("/")[0] for p in wanted})
            if len(dirs) > _FEW_DIRS:
                return None
            ids = self._blob_ids(wanted, dirs, reader.read(self._dir_names(dirs)))
        out = []
        for p, got in zip(wanted, reader.read(ids), strict=True):
            if got is None or got[1] != b"blob":
                raise GitError(f"reading {self.commit[:12]} failed: unexpected answer for {p}")
            out.append((p, got[2]))
        return out

    def _dir_names(self, dirs: list[str]) -> list[str]:
        """How to name each directory's tree to `cat-file`: by id when known, else as a path
        in the commit (git walks the root tree for each)."""
        known = self.source.trees_of(self.commit)
        return [known.get(d) or (f"{self.commit}:{d}" if d else f"{self.commit}^{{tree}}")
                for d in dirs]

    @staticmethod
    def _blob_ids(wanted: list[str], dirs: list[str],
                  trees: list[GitObject | None]) -> list[str]:
        """The blob ids of `wanted` from their directories' tree objects (None: no such
        directory). The entries' modes refuse links and special files exactly as `ls-tree`
        does; a path with no blob there is a `KeyError`."""
        listing = []
        for d, got in zip(dirs, trees, strict=True):
            if got is not None and got[1] == b"tree":
                listing += _tree_entries(got[2], f"{d}/" if d else "", len(got[0]) // 2)
        blobs, refused = _parse_ls_tree("\0".join(listing))
        _refuse(wanted, refused)
        return [blobs[p] for p in wanted]

    def _names_in_stream(self, stream: GitStream, wanted: list[str]) -> list[str] | None:
        """The blob ids of a few files, from their directories' tree objects read through the
        same `cat-file` process that then reads the blobs (one git process instead of an
        `ls-tree` and a `cat-file`: a one-key deploy reads two or three files). None: not
        worth it here (the tree is listed already, or many directories)."""
        dirs = sorted({p.rpartition("/")[0] for p in wanted})
        if self._blobs is not None or self._refused is not None or len(dirs) > _FEW_DIRS \
                or any("\n" in p for p in wanted):
            return None
        for name in self._dir_names(dirs):
            stream.stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        stream.stdin.flush()
        try:
            trees = [read_object(stream, d or "the root") for d in dirs]
        except GitError as exc:
            raise stream.error(str(exc)) from None
        return self._blob_ids(wanted, dirs, trees)

    def _object_names(self, wanted: list[str]) -> list[str]:
        if self._blobs is not None:
            _refuse(wanted, self._refused or [])
            return [self._blobs[p] for p in wanted]
        if self._refused is not None:  # listed before pickling: git resolves `commit:path`
            _refuse(wanted, self._refused)
            return [f"{self.commit}:{p}" for p in wanted]
        blobs: dict[str, str] = {}
        refused: list[Refused] = []
        for i in range(0, len(wanted), 1000):  # only these paths: no listing of the whole tree
            out = run_git(["ls-tree", "-z", "--full-tree", "--end-of-options", self.commit,
                           "--", *wanted[i:i + 1000]], git_dir=self.source.git_dir,
                          env={"GIT_LITERAL_PATHSPECS": "1"}).text
            more, odd = _parse_ls_tree(out)
            blobs.update(more)
            refused += odd
        _refuse(wanted, refused)
        return [blobs[p] for p in wanted]


_FEW_DIRS = 8
_TREE_KINDS = {b"40000": "tree", b"160000": "commit"}


def _tree_entries(data: bytes, prefix: str, hash_bytes: int) -> list[str]:
    """A raw tree object's entries (`<mode> <name>\\0<binary id>`) as `ls-tree` lines."""
    out, i = [], 0
    while i < len(data):
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        mode, name = data[i:space], data[space + 1:nul].decode("utf-8", "surrogateescape")
        oid = data[nul + 1:nul + 1 + hash_bytes].hex()
        kind = _TREE_KINDS.get(mode, "blob")
        out.append(f"{mode.decode()} {kind} {oid}\t{prefix}{name}")
        i = nul + 1 + hash_bytes
    return out


def _parse_ls_tree(out: str) -> tuple[dict[str, str], list[Refused]]:
    blobs: dict[str, str] = {}
    refused: list[Refused] = []
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split(" ")
        if kind == "blob" and mode.startswith("100"):
            blobs[path] = sha
        elif mode == "120000":
            refused.append(symlink_entry(path))
        elif kind == "blob":
            refused.append(special_entry(path, f"a blob of mode {mode}"))
        # a submodule ("commit") is skipped; `-r` lists no trees
    return blobs, refused


def _refuse(wanted: list[str], refused: list[Refused]) -> None:
    if refused:
        by_path = {r.path: r for r in refused}
        for p in wanted:
            if p in by_path:
                raise RefusedFile(by_path[p])
