"""The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, `POST /webhook/github`.

The webhook checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with
`GITCONF_WEBHOOK_SECRET`) in constant time before reading anything from the payload.

The server is exposed to whatever can reach it: connections are bounded in number (64; one
more is answered 503 at once) and in time (10 s for a request and its answer, however slowly
the client sends), so idle or trickling clients cannot hold `/healthz` hostage.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import UsageError

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


def make_server(host: str, port: int, ep: Endpoints, max_connections: int = 64,
                deadline: float = 10.0) -> Server:
    """A bound server (not serving yet); `UsageError` when the address cannot be had."""
    return bind(host, port, ep, max_connections, deadline)


class Handler(BaseHTTPRequestHandler):
    server_version = "gitconf"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.deadline)  # per read; the reaper: per request

    @property
    def ep(self) -> Endpoints:
        return self.server.ep

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
            ok, detail = self.ep.ready()
            self._send(200 if ok else 503, detail)
        elif path == "/metrics":
            self._send(200, self.ep.metrics(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/webhook/github" or not self.ep.secret:
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
        if len(body) < length:  # the deadline passed, or the client went away
            log.warning("webhook delivery %s: body incomplete (%d of %d bytes) when the "
                        "connection ended", delivery, len(body), length,
                        extra={"delivery": delivery, "streak": "webhook body incomplete"})
            self.close_connection = True
            return
        self._handle(body, delivery)

    def _handle(self, body: bytes, delivery: str) -> None:
        assert self.ep.secret is not None
        if not signature_ok(self.ep.secret, body, self.headers.get("X-Hub-Signature-256")):
            self.ep.on_bad_signature()
            self._reject(401, "bad or missing X-Hub-Signature-256", delivery)
            return
        if not self.ep.first_delivery(delivery):
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
        if ref != f"refs/heads/{self.ep.branch}":
            self._send(202, {"status": "ignored", "reason": f"push to {ref}"})
            return
        self.ep.on_push(after)
        self._send(202, {"status": "accepted", "after": after})

    def _pull_request(self, payload: dict[str, Any], delivery: str) -> None:
        from ..github import parse_pull_request_event

        event = parse_pull_request_event(payload)
        if event is None or event.outcome is None:
            self._send(202, {"status": "ignored", "reason": "not a closed pull request"})
            return
        self.ep.on_pull_request(event.number, delivery)
        self._send(202, {"status": "accepted", "pull_request": event.number})




# -- the server: bounded in connections and in time ------------------------------------------


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: one more is answered 503
    at once by the accepting thread. Each connection has `deadline` seconds for its request
    and the answer (HTTP/1.0: one request per connection), however slowly its client sends;
    then its socket is shut down, which ends any read or write blocked on it."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], ep: Endpoints, family: socket.AddressFamily,
                 max_connections: int, deadline: float, dualstack: bool = False):
        self.ep = ep
        self.address_family = family
        self.dualstack = dualstack
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, float] = {}  # connection -> its deadline (monotonic)
        self._lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        if self.dualstack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind, not HTTPServer's: that one looks the host name up in DNS
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._busy(request)
            return
        with self._lock:
            self._open[request] = time.monotonic() + self.deadline
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self.shutdown_request(request)
            raise

    def shutdown_request(self, request: Any) -> None:
        """Every connection ends here (the handler's thread, or the accepting one)."""
        with self._lock:
            counted = self._open.pop(request, None) is not None
        super().shutdown_request(request)
        if counted:
            self._slots.release()

    def service_actions(self) -> None:
        """The reaper, run by `serve_forever` between accepts (every 0.25 s at most)."""
        now = time.monotonic()
        with self._lock:  # under the lock: a connection still listed is not closed yet
            for conn, until in self._open.items():
                if until < now:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or was cut off: one debug line, not a traceback."""
        log.debug("http: connection from %s ended: %s", client_address,
                  sys.exc_info()[1])

    def _busy(self, request: socket.socket) -> None:
        body = json.dumps({"error": "too many connections"}).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\n"
                f"Connection: close\r\n\r\n").encode()
        with contextlib.suppress(OSError):
            request.setblocking(False)  # never wait on a client from the accepting thread
            request.send(head + body)
        log.warning("http: connection refused: %d connections open already",
                    len(self._open))
        super().shutdown_request(request)


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or `:port` for every interface (the Go convention)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen takes host:port or :port, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def shown_url(address: tuple[Any, ...]) -> str:
    host = str(address[0])
    return f"http://[{host}]:{address[1]}" if ":" in host else f"http://{host}:{address[1]}"


def bind(host: str, port: int, ep: Endpoints, max_connections: int, deadline: float,
         ) -> Server:
    """Bind `host:port`; an empty host is every interface (IPv6 and IPv4 where the system has
    both). A port in use or an address that is not this machine's is a `UsageError`."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if not host and socket.has_dualstack_ipv6():
            try:
                return Server(("::", port), ep, socket.AF_INET6, max_connections, deadline,
                              dualstack=True)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return Server((host or "0.0.0.0", port), ep, family, max_connections, deadline)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise UsageError(f"cannot listen on {shown}: {reason}") from None


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


def serve(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25},
                              name="http", daemon=True)
    thread.start()
    return thread
