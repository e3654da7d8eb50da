"""Entry point: registers every command module on the app and runs it."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

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
    """The `gitconf` process: the command, then an exit without the interpreter's teardown.

    Freeing every module's objects one by one took ~50-60 ms after a one-key `apply` had
    finished (a tenth of it; grpc, protobuf and rich hold many). What an orderly exit does
    that matters is done first: threads joined, `atexit` handlers run (multiprocessing's
    among them), logging and the standard streams flushed. In-process callers (tests, the
    demo) use `app()` and keep the usual exit."""
    code: Any = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    _exit(code)


def _exit(code: Any) -> NoReturn:
    """`sys.exit(code)` as the interpreter would end it, minus freeing what the OS frees."""
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # non-daemon threads, as at exit
    atexit._run_exitfuncs()  # logging.shutdown, multiprocessing, futures...
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`gitconf diff | head`): nothing to say
            pass
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
