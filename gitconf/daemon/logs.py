"""The daemon's log lines: text for a terminal, one JSON object per line for a collector.
Timestamps carry their time zone (UTC); extra fields (`unit`, `deploy`, ...) become JSON keys."""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    _skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "msg": record.getMessage()}
        doc.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


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


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("gitconf")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
