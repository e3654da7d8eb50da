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


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("gitconf")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
