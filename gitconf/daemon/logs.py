"""The daemon's log lines: text for a terminal, one JSON object per line for a collector.

Both carry an ISO 8601 timestamp in UTC (`2025-01-15T10:30:00.123Z`); extra fields (`unit`,
`deploy`, `trigger`, ...) become JSON keys. Two filters sit on the handler: no URL credential
reaches a line, and an identical warning or error is logged once per streak (the streak ends
when the loop next succeeds; the lines it held back are then summed up in one line each).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

from ..errors import GitconfError
from ..fastclass import dataclass

log = logging.getLogger("gitconf.daemon")


def iso_utc(created: float) -> str:
    """`2025-01-15T10:30:00.123Z`: what both formats print."""
    millis = int((created - int(created)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def one_line(exc: BaseException) -> str:
    """An error as one line: gitconf's errors already say what failed and carry the server's
    text; anything else is named by its class (a bug, or a library's own exception)."""
    text = " ".join(_text(exc).split())
    if not isinstance(exc, GitconfError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 1000 else text[:999] + "…"


def _text(exc: BaseException) -> str:
    """A grpc error that escaped the store's table is shown by its status and details, not by
    its repr (which spans lines and carries a debug string)."""
    details, code = getattr(exc, "details", None), getattr(exc, "code", None)
    if callable(details) and callable(code):
        try:
            return f"{getattr(code(), 'name', code())}: {details()}"
        except Exception:  # not a grpc error after all
            pass
    return str(exc)


class JsonFormatter(logging.Formatter):
    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "every", "streak"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": iso_utc(record.created),
                               "level": record.levelname.lower(), "msg": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_utc(record.created)} {record.levelname} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RedactFilter(logging.Filter):
    """A last line of defence: no URL credential reaches a log line, whatever formatted it
    (`user:token@host` becomes `***@host`, in the message and in string fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ..gitsource import redact

        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        for name, value in list(vars(record).items()):
            if name not in JsonFormatter._skip and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


_UNREACHABLE = re.compile(r"is unreachable \(.*")


@dataclass
class _Held:
    message: str
    level: int
    first: float
    count: int = 0  # lines held back after the first
    last: float = 0.0


class RepeatFilter(logging.Filter):
    """An identical warning or error is logged once per streak: the loop's retries while etcd
    is down, the leader's campaign every third of the lease, a client that keeps sending bad
    signatures. Identical means the same logger and message (or the same `streak` field, for
    lines whose text carries a changing detail); the transport detail after "is unreachable"
    does not count (grpc words the same outage several ways). A record with `every=True`
    always passes: per-cycle facts such as a failed unit."""

    def __init__(self, limit: int = 256):
        super().__init__()
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], _Held] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "every", False):
            return True
        message = record.getMessage()
        key = (record.name, _UNREACHABLE.sub("is unreachable", str(
            getattr(record, "streak", "") or message)))
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                held.count += 1
                held.last = record.created
                return False
            if len(self._held) >= self.limit:
                self._held.pop(next(iter(self._held)))
            self._held[key] = _Held(message, record.levelno, record.created)
        return True

    def end(self) -> list[_Held]:
        """End every streak; what was held back (the lines the caller should sum up)."""
        with self._lock:
            held, self._held = self._held, {}
        return [h for h in held.values() if h.count]


REPEATS = RepeatFilter()


def end_streaks() -> None:
    """The loop succeeded: say how often each held-back line repeated, and let the next
    occurrence of any of them be logged again."""
    for held in REPEATS.end():
        log.info("… repeated %d more time(s) until %s: %s", held.count, iso_utc(held.last),
                 held.message, extra={"repeated": held.count, "since": iso_utc(held.first)})


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactFilter())
    handler.addFilter(REPEATS)  # after redaction: what it keeps is what was shown
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("gitconf")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
