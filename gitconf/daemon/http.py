"""The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, `POST /webhook/github`.

The webhook checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with
`GITCONF_WEBHOOK_SECRET`) in constant time before reading anything from the payload.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("gitconf.daemon")
MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


class Endpoints:
    """What the handler needs from the daemon, as plain callables."""

    def __init__(self, ready: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics: Callable[[], bytes], branch: str, secret: str | None,
                 on_push: Callable[[str], None], on_bad_signature: Callable[[], None],
                 on_pull_request: Callable[[int, str], None] = lambda n, d: None):
        self.ready = ready
        self.metrics = metrics
        self.branch = branch
        self.secret = secret
        self.on_push = on_push
        self.on_bad_signature = on_bad_signature
        self.on_pull_request = on_pull_request
        self._seen: deque[str] = deque(maxlen=1024)
        self._lock = threading.Lock()

    def first_delivery(self, delivery: str) -> bool:
        """GitHub's redeliveries repeat `X-GitHub-Delivery`: act on each delivery once."""
        if delivery == "-":
            return True
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen.append(delivery)
            return True


def make_server(host: str, port: int, ep: Endpoints) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gitconf"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s", format % args)

        def _send(self, status: int, body: bytes | dict[str, Any],
                  content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, {"status": "ok"})
            elif path == "/readyz":
                ok, detail = ep.ready()
                self._send(200 if ok else 503, detail)
            elif path == "/metrics":
                self._send(200, ep.metrics(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/webhook/github" or not ep.secret:
                self._send(404, {"error": "not found"})
                return
            delivery = self.headers.get("X-GitHub-Delivery", "-")
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._reject(413, "payload too large", delivery)
                return
            body = self.rfile.read(length)
            if not signature_ok(ep.secret, body, self.headers.get("X-Hub-Signature-256")):
                ep.on_bad_signature()
                self._reject(401, "bad or missing X-Hub-Signature-256", delivery)
                return
            if not ep.first_delivery(delivery):
                self._send(200, {"status": "duplicate delivery", "delivery": delivery})
                return
            event = self.headers.get("X-GitHub-Event", "")
            if event == "ping":
                self._send(200, {"status": "pong"})
                return
            payload = _payload(body, self.headers.get("Content-Type", ""))
            if payload is None:
                self._reject(400, "body is not a JSON or form-encoded payload", delivery)
            elif event == "push":
                self._push(payload)
            elif event == "pull_request":
                self._pull_request(payload, delivery)
            else:
                self._send(202, {"status": "ignored", "reason": f"event {event!r}"})

        def _reject(self, status: int, reason: str, delivery: str) -> None:
            log.warning("webhook delivery %s rejected: %s", delivery, reason,
                        extra={"delivery": delivery})
            self._send(status, {"error": reason})

        def _push(self, payload: dict[str, Any]) -> None:
            ref, after = str(payload.get("ref", "")), str(payload.get("after", ""))
            if ref != f"refs/heads/{ep.branch}":
                self._send(202, {"status": "ignored", "reason": f"push to {ref}"})
                return
            ep.on_push(after)
            self._send(202, {"status": "accepted", "after": after})

        def _pull_request(self, payload: dict[str, Any], delivery: str) -> None:
            from ..github import parse_pull_request_event

            event = parse_pull_request_event(payload)
            if event is None or event.outcome is None:
                self._send(202, {"status": "ignored", "reason": "not a closed pull request"})
                return
            ep.on_pull_request(event.number, delivery)
            self._send(202, {"status": "accepted", "pull_request": event.number})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _payload(body: bytes, content_type: str) -> dict[str, Any] | None:
    """GitHub sends JSON, or (its default) `application/x-www-form-urlencoded` with the JSON
    in a `payload` field."""
    try:
        if content_type.split(";", 1)[0].strip() == "application/x-www-form-urlencoded":
            from urllib.parse import parse_qs

            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
            body = fields["payload"][0].encode("utf-8")
        doc = json.loads(body)
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
