"""Exceptions that stop a command. Each carries the exit status the CLI returns for it.

Problems in the repository are *values* (`model.Problem`), collected and reported together;
these exceptions are for what makes going on pointless, rendered once at the CLI edge.
"""

from __future__ import annotations


class GitconfError(Exception):
    """Base class; `exit_code` follows SPEC §7: 1 the check failed, 2 usage or connection."""

    exit_code = 2


class UsageError(GitconfError):
    exit_code = 2


class CheckFailed(GitconfError):
    """The command ran but what it checked is not right (invalid unit, unknown commit, ...)."""

    exit_code = 1


class GitError(GitconfError):
    exit_code = 2


class UnknownRef(CheckFailed):
    pass


class EtcdError(GitconfError):
    """etcd answered with an error or could not be reached; carries the server's own text."""

    exit_code = 2


class EtcdUnavailable(EtcdError):
    pass


class GitHubError(GitconfError):
    exit_code = 2


class CacheCorrupt(GitconfError):
    """A file of gitconf's own cache directory changed under it; deleting it is safe."""

    exit_code = 2
