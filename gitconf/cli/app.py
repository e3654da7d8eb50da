"""The typer application, its shared options, and the one place errors become exit statuses.

Heavy libraries (grpc, jsonschema, rich tables) are imported inside the commands that use them:
a CLI run is dominated by imports, and `gitconf apply` of one key must stay well under a second.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from ..errors import GitconfError

app = typer.Typer(
    name="gitconf",
    help="GitOps for service configuration in etcd: validate, diff, apply, roll back, reconcile.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(str, Enum):
    text = "text"
    json = "json"


class ValidateFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
EtcdOpt = Annotated[
    str | None,
    typer.Option("--etcd", envvar="GITCONF_ETCD_ENDPOINTS", show_envvar=True,
                 help="etcd endpoints host:port[,host:port...] [default: 127.0.0.1:2379]"),
]
PrefixOpt = Annotated[
    str, typer.Option("--prefix", envvar="GITCONF_PREFIX", show_envvar=True,
                      help="Key prefix in etcd.")
]
RepoOpt = Annotated[
    str, typer.Option("--repo", "-r", envvar="GITCONF_REPO",
                      help="Working tree, bare repository or URL (cloned into a cache).")
]
RefOpt = Annotated[str, typer.Option("--ref", help="Any commit-ish to read the config from.")]
ServiceOpt = Annotated[list[str] | None, typer.Option("--service", "-s",
                                                      help="Only this service (repeatable).")]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", "-e",
                                                  help="Only this environment (repeatable).")]
ShowSecretsOpt = Annotated[bool, typer.Option("--show-secrets",
                                              help="Show values marked secret instead of ***.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who deploys (deployed_by).")]

F = TypeVar("F", bound=Callable[..., Any])


def edge(fn: F) -> F:
    """Render a `GitconfError` once, on stderr, and exit with the status its class carries."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GitconfError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def err(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which JSON output owns)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(message, markup=False)


def out_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("CI") is None


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"gitconf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """GitOps for service configuration in etcd."""
