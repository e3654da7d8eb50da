"""Leader election on an etcd lease: exactly one replica applies.

Campaign: a create-only transaction puts `_system/leader` attached to a fresh lease. The leader
refreshes the lease every third of its TTL; if it cannot, or the key is no longer its own, it
steps down. Every write of the leader compares the leader key's `mod_revision` (the fence), so
a replica that was paused past its lease and does not know it yet cannot write anything.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from ..errors import EtcdError
from ..store import Store

log = logging.getLogger("gitconf.daemon")


class LeaderElection:
    def __init__(self, store: Store, key: bytes, identity: str, ttl: int,
                 on_change: Callable[[bool], None], on_etcd: Callable[[bool], None]):
        self.store = store
        self.key = key
        self.identity = identity
        self.ttl = max(2, ttl)
        self.on_change = on_change
        self.on_etcd = on_etcd
        self.lease = 0
        self.revision = 0  # mod_revision of our leader key: the fence
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)

    @property
    def retry(self) -> float:
        return self.ttl / 3

    def start(self) -> None:
        self._thread.start()

    def fence(self) -> tuple[bytes, int] | None:
        return (self.key, self.revision) if self.leading else None

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("leadership %s", "acquired" if leading else "lost",
                     extra={"identity": self.identity})
            self.on_change(leading)

    def _campaign(self) -> None:
        lease = self.store.lease_grant(self.ttl)
        value = json.dumps({"identity": self.identity, "since": time.time()}).encode()
        absent = self.store.cmp_created(self.key, 0)
        res = self.store.txn([absent], [self.store.op_put(self.key, value, lease=lease)])
        if res.succeeded:
            self.lease, self.revision = lease, res.revision
            self._set(True)
        else:
            self.store.lease_revoke(lease)

    def _hold(self) -> bool:
        if self.store.lease_keepalive(self.lease) <= 0:
            return False
        kv = self.store.get(self.key)
        return kv is not None and kv.mod_revision == self.revision

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.is_set():
            try:
                if self.leading:
                    if not self._hold():
                        self._set(False)
                    else:
                        last_ok = time.monotonic()
                else:
                    self._campaign()
                self.on_etcd(True)
            except EtcdError as exc:
                self.on_etcd(False)
                log.warning("leader election: %s", exc)
                if self.leading and time.monotonic() - last_ok > self.ttl:
                    self._set(False)  # the lease has expired on the server by now
            self._stop.wait(self.retry)

    def resign(self) -> None:
        """Stop campaigning and hand the lease back so a standby takes over at once."""
        self._stop.set()
        if self.leading and self.lease:
            self.store.lease_revoke(self.lease)
        self._set(False)
