"""Who is acting, and when: the `deployed_by` and timestamps every record carries (SPEC §3)."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone


def default_actor(explicit: str | None = None) -> str:
    """`--actor`, else `$GITHUB_ACTOR`, else user@host."""
    if explicit:
        return explicit
    if os.environ.get("GITHUB_ACTOR"):
        return os.environ["GITHUB_ACTOR"]
    import getpass  # (and termios): only when neither --actor nor GITHUB_ACTOR says who

    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
