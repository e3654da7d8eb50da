"""Running `gitconf daemon` as a real process in tests, and talking to it over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitconf.embedded_etcd import free_port


def wait_until(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> float:
    """Poll `check` until it is truthy; returns the seconds it took (fails the test if never)."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        try:
            last = check()
        except Exception as exc:  # a server still starting, a key not there yet
            last = exc
        if last and not isinstance(last, Exception):
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"not true after {timeout}s (last: {last!r})")


class DaemonProc:
    def __init__(self, tmp: Path, repo: str, env: dict[str, str], *args: str,
                 name: str = "daemon"):
        self.port = free_port()
        self.log = tmp / f"{name}-{self.port}.log"
        self.cmd = [sys.executable, "-m", "gitconf", "daemon", "--repo", repo, "--listen",
                    f"127.0.0.1:{self.port}", "--log-format", "json", *args]
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out)
        wait_until(lambda: self.get("/healthz")[0] == 200, timeout=20)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def ready_is(self, status: int, **fields: Any) -> bool:
        """`/readyz` answers `status` with these fields in its body, in one request."""
        code, body = self.ready()
        return code == status and all(body.get(k) == v for k, v in fields.items())

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] \
                    == name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        req = urllib.request.Request(self.url(path), data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def push_hook(self, secret: str | None, ref: str = "refs/heads/main",
                  event: str = "push", signature: str | None = None, form: bool = False,
                  ) -> int:
        """A push event as GitHub sends it: JSON, or with `form` its default content type,
        `application/x-www-form-urlencoded` with the JSON in `payload` (signed as sent)."""
        doc = json.dumps({"ref": ref, "after": "0" * 40})
        body = urllib.parse.urlencode({"payload": doc}).encode() if form else doc.encode()
        kind = "application/x-www-form-urlencoded" if form else "application/json"
        headers = {"X-GitHub-Event": event, "Content-Type": kind}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = "sha256=" + digest
        return self.post("/webhook/github", body, headers)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
