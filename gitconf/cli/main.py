"""Entry point: registers every command module on the app and runs it."""

from __future__ import annotations

from . import (  # noqa: F401  (importing registers the commands)
    cmd_daemon,
    cmd_demo,
    cmd_deploy,
    cmd_inspect,
    cmd_override,
    cmd_rollback,
    cmd_validate,
)
from .app import app


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
