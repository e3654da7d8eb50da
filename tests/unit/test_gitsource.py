"""gitconf's one way to run git, reading commits through it, and pushing override branches,
against real repositories in temporary directories (working trees and bare remotes)."""

from __future__ import annotations

import pickle
import shutil
import subprocess
from pathlib import Path

import pytest

from gitconf.errors import GitError
from gitconf.gitpush import (
    PushRejected,
    Scratch,
    prepare_branch,
    push_with_rebuild,
    with_trailers,
)
from gitconf.gitsource import (
    Credential,
    GitSource,
    KeptReader,
    first_line,
    git_env,
    run_git,
    start_git,
    version_order,
)
from gitconf.trees import RefusedFile
from tests.helpers import GitRepo, git, make_repo

BRANCH = "gitconf/override/svc/prod"

# -- the helper ----------------------------------------------------------------------------------


def test_run_git_returns_bytes_and_raises_one_clean_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    res = run_git(["rev-parse", "HEAD"], cwd=repo.path)
    assert res.returncode == 0 and res.stdout == (repo.head() + "\n").encode()
    with pytest.raises(GitError) as err:
        run_git(["rev-parse", "--verify", "no-such-ref"], cwd=repo.path, what="resolving")
    assert str(err.value) == "resolving failed: Needed a single revision"
    assert run_git(["rev-parse", "--verify", "--quiet", "nope"], cwd=repo.path,
                   ok=(0, 1)).returncode == 1


def test_first_line_prefers_the_fatal_line() -> None:
    stderr = ("Cloning into 'x'...\nhint: try this\nremote: Not Found\n"
              "fatal: repository 'https://h/r.git/' not found\n")
    assert first_line(stderr) == "repository 'https://h/r.git/' not found"
    assert first_line("hint: a\nsomething broke\n") == "something broke"
    assert first_line("") == ""


def test_environment_is_fixed_and_redirections_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    monkeypatch.setenv("GIT_INDEX_FILE", "/elsewhere/index")
    monkeypatch.setenv("GIT_SSH_COMMAND", "ssh -i key")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.sslVerify")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "true")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    env = git_env(credential=Credential("https://h", "u", "pw"))
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env
    assert env["GIT_SSH_COMMAND"] == "ssh -i key"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["LC_ALL"] == "C"
    assert env["GIT_CONFIG_COUNT"] == "3" and env["GIT_CONFIG_KEY_0"] == "http.sslVerify"
    assert env["GIT_CONFIG_KEY_1"] == env["GIT_CONFIG_KEY_2"] == "credential.https://h.helper"
    assert env["GIT_CONFIG_VALUE_1"] == "" and env["GIT_CONFIG_VALUE_2"].startswith("!")
    assert "pw" not in env["GIT_CONFIG_VALUE_2"] and env["GITCONF_CRED_PASSWORD"] == "pw"


def test_inherited_git_dir_does_not_redirect_gitconf(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Run inside a git hook, GIT_DIR points at the hook's repository, not the one asked."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    other = make_repo(tmp_path / "o", {"x.yaml": "b: 1\n"})
    head = repo.head()
    monkeypatch.setenv("GIT_DIR", str(other.path / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other.path))
    source = GitSource.open(str(repo.path))
    assert source.resolve("HEAD") == head
    assert source.work_tree == repo.path.resolve()


def test_reads_go_through_the_helper(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 2\n"})
    first = repo.head()
    second = repo.commit({"svc/prod.yaml": "a: 3\n"})
    source = GitSource.open(str(repo.path))
    assert source.is_ancestor(first, second) and not source.is_ancestor(second, first)
    assert not source.is_ancestor("0" * 40, second)  # unknown: False, not an error
    assert not source.is_ancestor("--help", second)
    tree = source.tree(second)
    assert tree.paths() == ["svc/dev.yaml", "svc/prod.yaml"]
    assert list(tree.read(["svc/prod.yaml", "svc/dev.yaml"])) == [
        ("svc/prod.yaml", b"a: 3\n"), ("svc/dev.yaml", b"a: 2\n")]
    with pytest.raises(KeyError):
        list(tree.read(["svc/none.yaml"]))
    unlisted = pickle.loads(pickle.dumps(source.tree(second)))
    assert dict(unlisted.read(["svc/dev.yaml"])) == {"svc/dev.yaml": b"a: 2\n"}
    assert source.changed_status(first, second) == [("M", "svc/prod.yaml")]
    with pytest.raises(GitError):
        source.changed_status("--output=" + str(tmp_path / "written"), second)
    assert not (tmp_path / "written").exists()


TAGS = ["v1.2.0", "v1.10.0", "v1.9", "v1.10.0-rc1", "release-2", "release-10", "2.0", "10.0",
        "v1.10", "V2", "zeta", "v1.2.0.1", "a-b_c.9"]


def test_a_commits_version_is_its_highest_tag_in_gits_version_order(tmp_path: Path) -> None:
    """Each commit's version comes from one `git show` (its tags are decorations) sorted by
    `version_order`, which must agree with git's own `tag --sort=-v:refname`."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    source = GitSource.open(str(repo.path))
    head = repo.head()
    assert source.commit_info(head).version == head[:12]  # no tag: the short id
    for tag in TAGS:
        git(repo.path, "tag", tag)
    by_git = git(repo.path, "tag", "--points-at", head, "--sort=-v:refname").split()
    assert sorted(TAGS, key=lambda t: (version_order(t), t), reverse=True) == by_git
    assert source.commit_info(head).version == by_git[0]
    assert GitSource.open(str(repo.path)).commit_info(head).sha == head


def test_a_few_files_are_read_with_their_trees_in_one_process(tmp_path: Path) -> None:
    """A few files are read by asking one `cat-file` for their directories' trees, then their
    blobs; the answers (contents, refused links, missing files) are those of the listed tree."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 2\n",
                                      ".gitconf.yaml": "ignore: [docs]\n",
                                      "schemas/common.json": "{}", "docs/x y.yaml": "z: 1\n"})
    (repo.path / "svc" / "link.yaml").symlink_to("dev.yaml")
    (repo.path / "docs" / "bin.sh").write_text("#!/bin/sh\n")
    (repo.path / "docs" / "bin.sh").chmod(0o755)
    head = repo.commit({})
    source = GitSource.open(str(repo.path))
    paths = ["svc/prod.yaml", ".gitconf.yaml", "schemas/common.json", "docs/x y.yaml",
             "docs/bin.sh"]
    listed = source.tree(head)
    listed.paths()  # the whole tree listed first: the other way of finding blob ids
    assert list(source.tree(head).read(paths)) == list(listed.read(paths))
    assert dict(source.tree(head).read(["docs/bin.sh"])) == {"docs/bin.sh": b"#!/bin/sh\n"}
    for tree in (source.tree(head), listed):
        with pytest.raises(RefusedFile):
            list(tree.read(["svc/prod.yaml", "svc/link.yaml"]))
        with pytest.raises(KeyError):
            list(tree.read(["svc/none.yaml"]))
        with pytest.raises(KeyError):
            list(tree.read(["nowhere/prod.yaml"]))
        with pytest.raises(KeyError):
            list(tree.read(["svc/prod.yaml/deeper"]))


def test_streaming_process_reports_gits_own_words(tmp_path: Path) -> None:
    stream = start_git(["cat-file", "--batch"], tmp_path / "not-a-repo", what="reading")
    err = stream.error("no answer")
    assert str(err).startswith("reading failed: not a git repository")


def test_pickled_source_carries_no_credential(tmp_path: Path) -> None:
    source = GitSource(tmp_path, None, "https://u:tok@example.com/r.git")
    assert source.remote is not None and source.remote.credential is not None
    copy = pickle.loads(pickle.dumps(source))
    assert copy.remote.credential is None and copy.describe() == "https://***@example.com/r.git"
    assert b"tok" not in pickle.dumps(source)


# -- hooks and identity --------------------------------------------------------------------------


@pytest.fixture
def hostile_global_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's global config whose hooks would leave a marker, and no identity."""
    hooks = tmp_path / "global-hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("pre-commit", "commit-msg", "post-commit", "pre-push", "post-checkout",
                 "reference-transaction", "post-update", "pre-receive"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\necho \"{name} $(pwd)\" >> '{marker}'\n")
        hook.chmod(0o755)
    config = tmp_path / "global.gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n[commit]\n\tgpgSign = true\n"
                      f'[trailer "seen"]\n\tcmd = "echo trailer-cmd >> {marker}; true"\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    return marker


def test_no_user_hook_runs_and_no_identity_is_needed(tmp_path: Path,
                                                      hostile_global_config: Path) -> None:
    marker = hostile_global_config
    remote = _remote_with_main(tmp_path)
    # the hooks are live: plain git runs them for the same kind of operation
    subprocess.run(["git", "--git-dir", str(remote), "update-ref", "refs/heads/probe", "main"],
                   check=True)
    assert marker.exists()
    marker.unlink()
    source = GitSource.open(f"file://{remote}", cache_dir=tmp_path / "cache")
    source.fetch()
    sha = push_with_rebuild(source, "main", BRANCH, _edit("a: 9\n"))
    assert sha is not None
    # only the receiving repository's own hooks ran (a server's policy, not gitconf's side)
    ran = marker.read_text().splitlines() if marker.exists() else []
    assert all(line.endswith(f" {remote}") for line in ran), ran
    assert not {line.split()[0] for line in ran} & {"pre-commit", "commit-msg", "post-commit",
                                                     "pre-push", "post-checkout"}
    assert _log(remote, sha, "%cn <%ce>|%G?") == "gitconf <gitconf@localhost>|N"


def test_trailers_join_the_trailer_block() -> None:
    trailer = {"Gitconf-Override": "ov-1"}
    assert with_trailers("Subject", trailer) == "Subject\n\nGitconf-Override: ov-1\n"
    assert with_trailers("Subject\n\nBody text.\n", trailer) == (
        "Subject\n\nBody text.\n\nGitconf-Override: ov-1\n")
    assert with_trailers("Subject\n\nReason: disk full", trailer) == (
        "Subject\n\nReason: disk full\nGitconf-Override: ov-1\n")
    assert with_trailers("Subject\n", {}) == "Subject\n"


# -- pushing override branches -------------------------------------------------------------------


def _remote_with_main(tmp_path: Path) -> Path:
    work = make_repo(tmp_path / "seed", {"svc/prod.yaml": "# prod\na: 1\n", "README.md": "x\n"})
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(work.path), str(remote))
    return remote


def _person(tmp_path: Path, remote: Path, name: str = "person") -> GitRepo:
    """A colleague's clone of the remote."""
    git(tmp_path, "clone", "-q", str(remote), name)
    return GitRepo(tmp_path / name)


def _edit(text: str, override: str = "ov-1"):  # type: ignore[no-untyped-def]
    def build(scratch: Scratch) -> str | None:
        scratch.write("svc/prod.yaml", text.encode())
        return scratch.commit(f"Override svc/prod ({override})", "Ann Oncall",
                              "ann@example.com", {"Gitconf-Override": override})
    return build


def _log(remote: Path, ref: str, fmt: str) -> str:
    return git(remote, "log", "-1", f"--format={fmt}", ref)


@pytest.fixture
def checkout(tmp_path: Path) -> GitRepo:
    """The user's working tree, whose origin is the bare remote."""
    remote = _remote_with_main(tmp_path)
    return _person(tmp_path, remote, "checkout")


def test_first_push_creates_the_branch_from_base(checkout: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    base = git(remote, "rev-parse", "main")
    before = git(checkout.path, "status", "--porcelain"), checkout.head()
    source = GitSource.open(str(checkout.path))
    with prepare_branch(source, "main", BRANCH) as scratch:
        assert not scratch.existing and scratch.tip == base
        assert scratch.read("svc/prod.yaml") == b"# prod\na: 1\n"
        assert scratch.read("svc/none.yaml") is None
        sha = _edit("# prod\na: 2\n")(scratch)
        scratch.push()
        workdir = scratch.dir
    assert not workdir.exists()
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}") == sha
    assert _log(remote, BRANCH, "%P") == base
    assert _log(remote, BRANCH, "%an <%ae>|%cn <%ce>") == (
        "Ann Oncall <ann@example.com>|gitconf <gitconf@localhost>")
    assert _log(remote, BRANCH, "%(trailers:key=Gitconf-Override,valueonly)") == "ov-1"
    assert git(remote, "show", f"{BRANCH}:svc/prod.yaml") == "# prod\na: 2"
    assert (git(checkout.path, "status", "--porcelain"), checkout.head()) == before
    assert BRANCH not in git(checkout.path, "branch", "--list", "--all")  # origin's, not local


def test_second_override_adds_a_commit_on_top(checkout: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    source = GitSource.open(str(checkout.path))
    first = push_with_rebuild(source, "main", BRANCH, _edit("a: 2\n", "ov-1"))
    second = push_with_rebuild(source, "main", BRANCH, _edit("a: 3\n", "ov-2"))
    assert first and second and first != second
    assert _log(remote, BRANCH, "%P") == first
    assert git(remote, "rev-list", "--count", f"main..{BRANCH}") == "2"
    assert _log(remote, BRANCH, "%(trailers:key=Gitconf-Override,valueonly)") == "ov-2"
    assert push_with_rebuild(source, "main", BRANCH, _edit("a: 3\n", "ov-3")) is None  # no-op


def test_a_push_that_loses_the_refs_lock_is_built_again(checkout: GitRepo,
                                                         tmp_path: Path) -> None:
    """Two pushes creating one branch at the same moment: the remote refuses the loser with
    `[remote rejected] (failed to update ref)` or `(cannot lock ref ...)`, not a
    non-fast-forward. That is a lost race, retried like one, not a refusal."""
    remote = tmp_path / "remote.git"
    lock = remote / "refs" / "heads" / f"{BRANCH}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("another push holds it\n")
    source = GitSource.open(str(checkout.path))
    builds = []

    def build(scratch: Scratch) -> str | None:
        builds.append(scratch.tip)
        if len(builds) == 2:
            lock.unlink()  # the other push finished
        return _edit("a: 7\n")(scratch)

    sha = push_with_rebuild(source, "main", BRANCH, build)
    assert len(builds) == 2 and git(remote, "rev-parse", f"refs/heads/{BRANCH}") == sha
    lock.write_text("held for good\n")
    with pytest.raises(PushRejected, match="same moment"):
        push_with_rebuild(source, "main", BRANCH, _edit("a: 8\n"))


def test_a_concurrent_push_is_kept_and_built_upon(checkout: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    source = GitSource.open(str(checkout.path))
    push_with_rebuild(source, "main", BRANCH, _edit("a: 2\n"))
    person = _person(tmp_path, remote)
    git(person.path, "checkout", "-q", BRANCH)
    calls: list[str] = []

    def build(scratch: Scratch) -> str | None:
        calls.append(scratch.tip)
        if len(calls) == 1:  # between our prepare and our push, a person pushes
            person.commit({"svc/README.md": "theirs\n"}, message="their fix")
            git(person.path, "push", "-q", "origin", BRANCH)
        return _edit("a: 5\n", "ov-2")(scratch)

    sha = push_with_rebuild(source, "main", BRANCH, build)
    theirs = person.head()
    assert len(calls) == 2 and calls[1] == theirs
    assert git(remote, "rev-parse", BRANCH) == sha and _log(remote, BRANCH, "%P") == theirs
    assert git(remote, "show", f"{BRANCH}:svc/README.md") == "theirs"
    assert git(remote, "show", f"{BRANCH}:svc/prod.yaml") == "a: 5"


def test_push_rejected_when_the_branch_moved(checkout: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    source = GitSource.open(str(checkout.path))
    with prepare_branch(source, "main", BRANCH) as scratch:
        _edit("a: 2\n")(scratch)
        person = _person(tmp_path, remote)
        person.commit({"other.txt": "x\n"}, message="theirs")
        git(person.path, "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}")
        with pytest.raises(PushRejected) as err:
            scratch.push()
        assert "the branch moved" in str(err.value) and "\n" not in str(err.value)
        assert git(remote, "rev-parse", BRANCH) == person.head()  # never forced
        scratch.reset()
        assert scratch.existing and scratch.tip == person.head()
        assert scratch.read("svc/prod.yaml") == b"# prod\na: 1\n"  # the edit is to redo


def test_push_to_a_remote_that_is_gone(checkout: GitRepo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    source = GitSource.open(str(checkout.path))
    with prepare_branch(source, "main", BRANCH) as scratch:
        _edit("a: 2\n")(scratch)
        shutil.rmtree(remote)
        with pytest.raises(GitError) as err:
            scratch.push()
    message = str(err.value)
    assert not isinstance(err.value, PushRejected)
    assert message.startswith(f"pushing {BRANCH} to {remote} failed: ")
    assert "fatal" not in message and "\n" not in message
    with pytest.raises(GitError) as err:
        prepare_branch(source, "main", BRANCH)
    assert str(err.value).startswith(f"reading the branches of {remote} failed: ")


def test_scratch_refuses_bad_names_links_and_unknown_base(checkout: GitRepo,
                                                          tmp_path: Path) -> None:
    checkout.commit({"svc/dev.yaml": "a: 1\n"})
    (checkout.path / "svc" / "link.yaml").symlink_to("dev.yaml")
    checkout.commit(message="link")
    git(checkout.path, "push", "-q", "origin", "main")
    source = GitSource.open(str(checkout.path))
    for base, branch in (("main", "bad..name"), ("main", "-x"), ("nope", BRANCH)):
        with pytest.raises(GitError):
            prepare_branch(source, base, branch)
    with prepare_branch(source, "main", BRANCH) as scratch:
        for path in ("../x", ".git/config", "/abs", "a//b"):
            with pytest.raises(GitError):
                scratch.write(path, b"x")
        with pytest.raises(GitError, match="symbolic link"):
            scratch.read("svc/link.yaml")
        with pytest.raises(GitError, match="symbolic link"):
            scratch.write("svc/link.yaml", b"a: 2\n")
        with pytest.raises(GitError):
            scratch.commit("m", "Ann <evil>", "ann@example.com")
        with pytest.raises(GitError):
            scratch.commit("m", "Ann", "ann@example.com", {"Bad Key": "v"})
        assert scratch.commit("nothing", "Ann", "ann@example.com") is None


def test_local_repository_without_origin_gets_the_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n"})
    source = GitSource.open(str(repo.path))
    sha = push_with_rebuild(source, "main", BRANCH, _edit("a: 2\n"))
    assert git(repo.path, "rev-parse", BRANCH) == sha
    assert git(repo.path, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (repo.path / "svc" / "prod.yaml").read_text() == "a: 1\n"  # checkout untouched


def test_a_restricted_tree_travels_with_its_blob_ids(tmp_path: Path) -> None:
    """Workers read their share of the files by object id, not `commit:path`."""
    from gitconf.gitsource import GitSource

    repo = make_repo(tmp_path / "r", {"a/prod.yaml": "x: 1\n", "b/prod.yaml": "y: 2\n"})
    tree = GitSource.open(str(repo.path)).tree(repo.head())
    part = pickle.loads(pickle.dumps(tree.restricted(["b/prod.yaml"])))
    assert part._object_names(["b/prod.yaml"]) == [tree.blobs()["b/prod.yaml"]]
    assert dict(part.read(["b/prod.yaml"])) == {"b/prod.yaml": b"y: 2\n"}
    whole = pickle.loads(pickle.dumps(tree))  # the whole listing stays behind
    assert whole._blobs is None


def test_a_commits_info_brings_its_changes_when_asked_since_its_parent(tmp_path: Path) -> None:
    """`commit_info(sha, since=parent)` lists what the commit changed in the same `git show`,
    exactly as `git diff` does (modified, added, deleted, odd names); since another commit (or
    for a merge) the changes are asked of `git diff`, and are the same either way."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 1\n",
                                      "old/prod.yaml": "a: 1\n"})
    first = repo.head()
    (repo.path / "svc" / "prod.yaml").write_text("a: 2\n")
    (repo.path / "new svc é" / "prod.yaml").parent.mkdir()
    (repo.path / "new svc é" / "prod.yaml").write_text("a: 1\n")
    shutil.rmtree(repo.path / "old")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "three kinds of change")
    second = repo.head()
    source = GitSource.open(str(repo.path))
    info = source.commit_info(second, since=first)
    assert info.sha == second and info.subject == "three kinds of change"
    by_diff = GitSource.open(str(repo.path)).changed_status(first, second)
    assert sorted(by_diff) == [("A", "new svc é/prod.yaml"), ("D", "old/prod.yaml"),
                               ("M", "svc/prod.yaml")]
    assert (first, second) in source._diffs  # came with the commit's info
    assert source.changed_status(first, second) == by_diff
    (repo.path / "svc" / "dev.yaml").write_text("a: 3\n")
    git(repo.path, "commit", "-qam", "third")
    other = GitSource.open(str(repo.path))
    other.commit_info(repo.head(), since=first)  # not its parent: nothing remembered
    assert (first, repo.head()) not in other._diffs
    assert other.changed_status(first, repo.head()) == \
        GitSource.open(str(repo.path)).changed_status(first, repo.head())


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_kept_reader_serves_every_read_through_one_process(tmp_path: Path) -> None:
    """The daemon's kept `cat-file` (`GitSource.keep_reading`) answers as a process per read
    does (contents, refused links, missing files and folders, names with spaces), serves
    reads of commits made after it started from the same process, starts a new one after it
    was killed and after a repack rewrote the packs, and is gone once the source is closed."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "svc/dev.yaml": "a: 2\n",
                                      "my svc/prod.yaml": "b: 1\n", ".gitconf.yaml": "{}\n"})
    (repo.path / "svc" / "link.yaml").symlink_to("dev.yaml")
    first = repo.commit({})
    wanted = ["svc/prod.yaml", "my svc/prod.yaml", ".gitconf.yaml", "svc/dev.yaml"]
    with GitSource.open(str(repo.path)) as source:
        source.keep_reading()
        assert source.reader is not None
        assert list(source.tree(first).read(wanted)) == \
            list(GitSource.open(str(repo.path)).tree(first).read(wanted))
        proc = source.reader._stream.proc  # type: ignore[union-attr]
        listed = source.tree(first)
        assert listed.paths() and dict(listed.read(["svc/dev.yaml"])) == {
            "svc/dev.yaml": b"a: 2\n"}  # a listed tree's blob ids, through the same process
        with pytest.raises(RefusedFile):
            list(source.tree(first).read(["svc/prod.yaml", "svc/link.yaml"]))
        for missing in ("svc/none.yaml", "no such dir/prod.yaml", "svc/prod.yaml/deeper"):
            with pytest.raises(KeyError):
                list(source.tree(first).read([missing]))
        second = repo.commit({"svc/prod.yaml": "a: 3\n"})
        assert dict(source.tree(second).read(["svc/prod.yaml"])) == {"svc/prod.yaml": b"a: 3\n"}
        assert source.reader._stream.proc is proc  # type: ignore[union-attr]

        proc.kill()
        assert _gone(proc)
        assert dict(source.tree(first).read(["svc/prod.yaml"])) == {"svc/prod.yaml": b"a: 1\n"}
        again = source.reader._stream.proc  # type: ignore[union-attr]
        assert again is not proc

        git(repo.path, "gc", "-q", "--prune=now")  # every object moves into a new pack
        third = repo.commit({"svc/dev.yaml": "a: 4\n"})
        assert dict(source.tree(third).read(["svc/dev.yaml", "svc/prod.yaml"])) == {
            "svc/dev.yaml": b"a: 4\n", "svc/prod.yaml": b"a: 3\n"}
        last = source.reader._stream.proc  # type: ignore[union-attr]
        assert last is not again and _gone(again)  # restarted: the old packs are let go
    assert _gone(last)  # closed with the source
    assert pickle.loads(pickle.dumps(source)).reader is None  # workers never share it


def test_a_commits_info_names_the_trees_of_the_folders_it_changed(tmp_path: Path) -> None:
    """With its parent as `since`, a commit's info also gives the tree ids of the folders it
    changed (added and modified ones, a file replaced by a folder too), which a read then
    asks for by id instead of walking the root tree; its changed paths stay those of `git
    diff`, folders left out. Started early (`start_commit_info`) it is the same info."""
    repo = make_repo(tmp_path / "r", {"svc/prod.yaml": "a: 1\n", "old/prod.yaml": "a: 1\n",
                                      "f": "a file\n", "keep/prod.yaml": "k: 1\n"})
    first = repo.head()
    git(repo.path, "rm", "-q", "f")
    second = repo.commit({"svc/prod.yaml": "a: 2\n", "new dir/prod.yaml": "n: 1\n",
                          "f/prod.yaml": "x: 1\n", "old/prod.yaml": None})
    source = GitSource.open(str(repo.path))
    info = source.start_commit_info(second, since=first)()
    assert info == GitSource.open(str(repo.path)).commit_info(second)
    trees = dict(source.trees_of(second))
    assert trees == {d: git(repo.path, "rev-parse", f"{second}:{d}")
                     for d in ("svc", "new dir", "f")}
    assert sorted(source.changed_status(first, second)) == sorted(
        GitSource.open(str(repo.path)).changed_status(first, second))
    assert ("D", "f") in source.changed_status(first, second)
    assert dict(source.tree(second).read(["f/prod.yaml", "keep/prod.yaml"])) == {
        "f/prod.yaml": b"x: 1\n", "keep/prod.yaml": b"k: 1\n"}
    assert source.trees_of(first) == {}


def test_a_kept_reader_takes_long_requests_of_large_objects(tmp_path: Path) -> None:
    """A request larger than a pipe's buffer, for answers larger than it too, is written in
    runs whose answers are read in between: it neither deadlocks nor mixes up the answers."""
    folder = "f" * 200
    files = {f"{folder}/{i:03}.yaml": f"n: {i}\n" + "x" * 20_000 for i in range(300)}
    repo = make_repo(tmp_path / "r", files)
    head = repo.head()
    names = [f"{head}:{path}" for path in sorted(files)] + [f"{head}:{folder}/none.yaml"]
    assert sum(len(n) + 1 for n in names) > 64 * 1024
    reader = KeptReader(GitSource.open(str(repo.path)).git_dir)
    try:
        got = reader.read(names)
    finally:
        reader.close()
    assert [g[2] if g else None for g in got] == [files[p].encode() for p in sorted(files)] + [None]
