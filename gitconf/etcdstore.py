"""The only module that talks to etcd (through `pyetcd`, the maintained python-etcd3 fork).

Requests are built from etcd's own protobufs and sent on pyetcd's channels: that gives us ranges
filtered by `mod_revision`, count-only ranges, pagination and compare-guarded transactions that the
high-level client does not expose, and lets us turn grpc's raw errors into ours with the server's
text (DEPENDENCY-FACTS.md). Failover is ours too: an endpoint that fails is skipped for a couple of
seconds (pyetcd's default would refuse it for 300 s) and the call goes to the next one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end

from .errors import EtcdError, EtcdUnavailable, UsageError

DEFAULT_ENDPOINT = "127.0.0.1:2379"
_DELETE = 1  # mvccpb.Event.EventType.DELETE
MAX_RECEIVE = 256 * 1024 * 1024
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
T = TypeVar("T")


class TxnTooLarge(EtcdError):
    """The server refused a transaction for its size; the caller splits it and tries again."""


class Change(NamedTuple):
    key: bytes
    mod_revision: int
    deleted: bool


class KV(NamedTuple):
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass
class RangeResult:
    kvs: list[KV]
    count: int
    more: bool
    revision: int


@dataclass
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[Any] = field(default_factory=list)


@dataclass
class EtcdConfig:
    endpoints: list[tuple[str, int]]
    secure: bool = False
    user: str | None = None
    password: str | None = None
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_env(cls, endpoints: str | None = None, timeout: float = 10.0) -> EtcdConfig:
        spec = endpoints or os.environ.get("GITCONF_ETCD_ENDPOINTS") or DEFAULT_ENDPOINT
        secure = False
        parsed: list[tuple[str, int]] = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            if item.startswith("https://"):
                secure = True
            item = item.split("://", 1)[-1].rstrip("/")
            host, sep, port = item.rpartition(":")
            if not sep or not port.isdigit():
                raise UsageError(f"etcd endpoint {item!r} is not host:port")
            parsed.append((host.strip("[]"), int(port)))
        if not parsed:
            raise UsageError("no etcd endpoint given")
        env = os.environ.get
        cacert = env("GITCONF_ETCD_CACERT") or None
        return cls(parsed, secure=secure or cacert is not None,
                   user=env("GITCONF_ETCD_USER") or None,
                   password=env("GITCONF_ETCD_PASSWORD") or None,
                   cacert=cacert, cert=env("GITCONF_ETCD_CERT") or None,
                   key=env("GITCONF_ETCD_KEY") or None, timeout=timeout)

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return ",".join(f"{scheme}://{h}:{p}" for h, p in self.endpoints)


# -- etcd's protobuf wire format, written by hand for the hot path -----------------------------
# A deploy sends ~100,000 puts; building a message object per put and letting grpc serialize
# the whole request again costs more than the rest of the write. Operations are encoded once,
# straight to bytes, and a transaction is the concatenation of its fields.


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def wire_put(key: bytes, value: bytes, lease: int = 0) -> bytes:
    """`RequestOp{request_put: PutRequest{key, value, lease}}` as bytes."""
    body = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(value)) + value
    if lease:
        body += b"\x18" + _varint(lease)
    return b"\x12" + _varint(len(body)) + body


def wire_delete(key: bytes) -> bytes:
    """`RequestOp{request_delete_range: DeleteRangeRequest{key}}` as bytes."""
    body = b"\x0a" + _varint(len(key)) + key
    return b"\x1a" + _varint(len(body)) + body


def wire_txn(compares: Sequence[Any], ops: Sequence[bytes]) -> bytes:
    """`TxnRequest{compare..., success...}` from compare messages and encoded operations."""
    parts = []
    for c in compares:
        data = c.SerializeToString()
        parts.append(b"\x0a" + _varint(len(data)) + data)
    for op in ops:
        parts.append(b"\x12" + _varint(len(op)) + op)
    return b"".join(parts)


def _server_text(exc: grpc.RpcError) -> str:
    details = exc.details() if hasattr(exc, "details") else None
    return str(details or exc)


class EtcdStore:
    """A connection to an etcd cluster with failover, auth, TLS and our error types."""

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._client = self._connect()

    # -- connection -----------------------------------------------------------------------

    def _connect(self) -> Any:
        cfg = self.config
        creds = None
        if cfg.secure:
            if not cfg.cacert:
                raise UsageError("TLS needs GITCONF_ETCD_CACERT (the CA that signed etcd's cert)")
            try:
                creds = pyetcd.MultiEndpointEtcd3Client.get_secure_creds(
                    cfg.cacert, cfg.key, cfg.cert)
            except OSError as exc:
                raise UsageError(f"cannot read TLS files: {exc}") from None
        opts = [("grpc.max_receive_message_length", MAX_RECEIVE),
                ("grpc.max_send_message_length", MAX_RECEIVE)]
        endpoints = [pyetcd.Endpoint(h, p, secure=cfg.secure, creds=creds, time_retry=2.0,
                                     opts=opts) for h, p in cfg.endpoints]
        last: Exception | None = None
        for _ in range(max(2, len(endpoints) * 2)):
            try:
                client = pyetcd.MultiEndpointEtcd3Client(
                    endpoints=endpoints, timeout=cfg.timeout, user=cfg.user,
                    password=cfg.password, failover=True)
                # plaintext + token: grpc refuses call credentials on an insecure channel; the
                # token still travels as metadata (pyetcd issue #17)
                client.call_credentials = None
                return client
            except grpc.RpcError as exc:
                last = exc
                if exc.code() in _RETRY_CODES:
                    self._fail_endpoint_of(endpoints)
                    continue
                raise self._error(exc) from None
            except pyetcd.exceptions.NoServerAvailableError as exc:
                last = exc
                time.sleep(0.2)
        raise EtcdUnavailable(f"etcd at {cfg.describe()} is unreachable: {last}")

    @staticmethod
    def _fail_endpoint_of(endpoints: Sequence[Any]) -> None:
        for ep in endpoints:
            if not ep.is_failed():
                ep.fail()
                return

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: grpc.RpcError) -> EtcdError:
        text = _server_text(exc)
        if "too many operations" in text or "request is too large" in text:
            return TxnTooLarge(text)
        if exc.code() in _RETRY_CODES:
            return EtcdUnavailable(f"etcd at {self.config.describe()} is unreachable ({text})")
        return EtcdError(f"etcd: {text}")

    def _call(self, fn: Callable[[Any], T], attempts: int = 0) -> T:
        """Run `fn(client)`; on an unreachable member, fail over to the next and try again."""
        attempts = attempts or max(3, len(self.config.endpoints) * 2)
        last: grpc.RpcError | None = None
        for attempt in range(attempts):
            client = self._client
            try:
                return fn(client)
            except grpc.RpcError as exc:
                last = exc
                text = _server_text(exc)
                if exc.code() in _RETRY_CODES:
                    try:
                        client.endpoint_in_use.fail()
                        client._clear_old_stubs()
                    except Exception:
                        pass
                    time.sleep(min(0.1 * (attempt + 1), 0.5))
                    continue
                if "invalid auth token" in text or ("token" in text and "expired" in text):
                    with self._lock:  # tokens are never refreshed by the client: reconnect
                        self._client = self._connect()
                    continue
                raise self._error(exc) from None
            except pyetcd.exceptions.NoServerAvailableError:
                time.sleep(min(0.2 * (attempt + 1), 1.0))
                for ep in client.endpoints.values():
                    ep.last_failed = 0  # every member failed recently: try them all again
                continue
            except (pyetcd.exceptions.ConnectionFailedError,
                    pyetcd.exceptions.ConnectionTimeoutError):
                # pyetcd's own calls (watch creation) map grpc errors to these, without text
                time.sleep(min(0.1 * (attempt + 1), 0.5))
                continue
            except pyetcd.exceptions.Etcd3Exception as exc:
                raise EtcdError(f"etcd: {type(exc).__name__} {exc}") from None
            except ValueError as exc:  # pyetcd: "Trying to use a failed node"
                last = None
                if "failed node" not in str(exc):
                    raise
                time.sleep(0.1)
                continue
        if last is not None:
            raise self._error(last) from None
        raise EtcdUnavailable(f"etcd at {self.config.describe()} is unreachable")

    def _kw(self, timeout: float | None = None) -> dict[str, Any]:
        c = self._client
        return {"timeout": timeout or self.config.timeout, "credentials": c.call_credentials,
                "metadata": c.metadata}

    # -- reads ----------------------------------------------------------------------------

    def range(self, start: bytes, end: bytes | None = None, *, keys_only: bool = False,
              count_only: bool = False, min_mod_revision: int = 0, limit: int = 0,
              revision: int = 0, serializable: bool = False) -> RangeResult:
        req = etcdrpc.RangeRequest(key=start, keys_only=keys_only, count_only=count_only,
                                   limit=limit, revision=revision, serializable=serializable)
        if end is not None:
            req.range_end = end
        if min_mod_revision:
            req.min_mod_revision = min_mod_revision

        def call(c: Any) -> Any:
            return c.kvstub.Range(req, **self._kw(timeout=max(self.config.timeout, 30)))

        resp = self._call(call)
        kvs = [KV(kv.key, kv.value, kv.mod_revision, kv.create_revision) for kv in resp.kvs]
        return RangeResult(kvs, resp.count, resp.more, resp.header.revision)

    def get(self, key: bytes) -> KV | None:
        res = self.range(key)
        return res.kvs[0] if res.kvs else None

    def scan(self, prefix: bytes, *, keys_only: bool = False, min_mod_revision: int = 0,
             page: int = 20_000) -> tuple[list[KV], int]:
        """Every key under `prefix`, in pages read at one revision (a consistent snapshot)."""
        end = prefix_range_end(prefix)
        out: list[KV] = []
        start = prefix
        revision = 0
        while True:
            res = self.range(start, end, keys_only=keys_only, min_mod_revision=min_mod_revision,
                             limit=page, revision=revision)
            revision = revision or res.revision
            out.extend(res.kvs)
            if not res.more or not res.kvs:
                return out, revision
            start = res.kvs[-1].key + b"\0"

    def count(self, prefix: bytes, end: bytes | None = None) -> tuple[int, int]:
        res = self.range(prefix, end or prefix_range_end(prefix), count_only=True)
        return res.count, res.revision

    def revision(self) -> int:
        return self.range(b"\0", count_only=True).revision

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    def cmp_mod(key: bytes, mod_revision: int) -> Any:
        """`mod_revision(key) == rev`; with 0 it means "the key does not exist"."""
        return etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD,
                               key=key, mod_revision=mod_revision)

    @staticmethod
    def cmp_range_unchanged(prefix: bytes, revision: int) -> Any:
        """No key under `prefix` was created or modified after `revision` (one compare over a
        range: etcd checks every key in it)."""
        return etcdrpc.Compare(result=etcdrpc.Compare.LESS, target=etcdrpc.Compare.MOD,
                               key=prefix, range_end=prefix_range_end(prefix),
                               mod_revision=revision + 1)

    @staticmethod
    def op_put(key: bytes, value: bytes, lease: int = 0) -> Any:
        return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value,
                                                                lease=lease))

    @staticmethod
    def op_delete(key: bytes) -> Any:
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))

    @staticmethod
    def op_get(key: bytes) -> Any:
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key))

    def txn(self, compares: Sequence[Any], success: Sequence[Any],
            failure: Sequence[Any] = ()) -> TxnResult:
        req = etcdrpc.TxnRequest(compare=list(compares), success=list(success),
                                 failure=list(failure))

        def call(c: Any) -> Any:
            return c.kvstub.Txn(req, **self._kw())

        resp = self._call(call)
        return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))

    def _raw_txn(self, client: Any) -> Any:
        """`KV/Txn` on the client's current channel, taking an already encoded request."""
        channel = client.channel
        if getattr(self, "_raw_channel", None) is not channel:
            self._raw_channel = channel
            self._raw_method = channel.unary_unary(
                "/etcdserverpb.KV/Txn", request_serializer=None,
                response_deserializer=etcdrpc.TxnResponse.FromString)
        return self._raw_method

    def txn_start(self, compares: Sequence[Any], ops: Sequence[bytes]) -> Any:
        """Send a transaction of encoded operations (`wire_put`, `wire_delete`) without
        waiting: grpc's own future, no Python thread per call. `txn_finish` collects it (and
        resends it, once failed over, if the member went away; resending is safe because every
        write of ours is guarded by compares)."""
        req = wire_txn(compares, ops)
        try:
            return self._raw_txn(self._client).future(req, **self._kw()), req
        except (grpc.RpcError, ValueError, pyetcd.exceptions.Etcd3Exception):
            return None, req

    def txn_finish(self, started: Any) -> TxnResult:
        fut, req = started
        if fut is not None:
            try:
                resp = fut.result()
                return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY_CODES:
                    raise self._error(exc) from None
        resp = self._call(lambda c: self._raw_txn(c)(req, **self._kw()))
        return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))

    def txn_wire(self, compares: Sequence[Any], ops: Sequence[bytes]) -> TxnResult:
        return self.txn_finish(self.txn_start(compares, ops))

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        req = etcdrpc.PutRequest(key=key, value=value, lease=lease)
        resp = self._call(lambda c: c.kvstub.Put(req, **self._kw()))
        return int(resp.header.revision)

    def delete(self, key: bytes) -> int:
        req = etcdrpc.DeleteRangeRequest(key=key)
        resp = self._call(lambda c: c.kvstub.DeleteRange(req, **self._kw()))
        return int(resp.deleted)

    # -- leases ---------------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        req = etcdrpc.LeaseGrantRequest(TTL=ttl)
        resp = self._call(lambda c: c.leasestub.LeaseGrant(req, **self._kw()))
        return int(resp.ID)

    def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns its TTL (0: the lease is gone)."""
        def call(c: Any) -> Any:
            reqs = iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)])
            for resp in c.leasestub.LeaseKeepAlive(reqs, **self._kw()):
                return resp
            return None

        resp = self._call(call)
        return int(resp.TTL) if resp is not None else 0

    def lease_revoke(self, lease_id: int) -> None:
        req = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(lambda c: c.leasestub.LeaseRevoke(req, **self._kw()), attempts=2)
        except EtcdError:
            pass

    # -- watches --------------------------------------------------------------------------

    def changes_since(self, prefix: bytes, start_revision: int, until_revision: int,
                      timeout: float = 10.0) -> list[Change] | None:
        """Every put and delete under `prefix` with a revision in [start, until], replayed from
        etcd's history by a watch: the cost follows the number of changes, where a
        `min_mod_revision` range makes the server walk the whole prefix (and sees no deletes).

        The watch covers the whole keyspace: every revision is made by some write, so an event
        at `until_revision` is certain to arrive and marks the end (etcd 3.5's progress
        notifications can arrive before the replayed events). None when that history was
        compacted, the user may not read the whole keyspace, or the replay took too long."""
        if start_revision > until_revision:
            return []
        create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=b"\0", range_end=b"\0", start_revision=start_revision))
        done = threading.Event()

        def outgoing() -> Iterator[Any]:
            yield create
            done.wait(timeout)

        def call(c: Any) -> Any:
            return etcdrpc.WatchStub(c.channel).Watch(outgoing(), timeout,
                                                      credentials=c.call_credentials,
                                                      metadata=c.metadata)

        stream = self._call(call)
        changes: list[Change] = []
        try:
            for resp in stream:
                if resp.compact_revision or resp.canceled:
                    return None
                for ev in resp.events:  # one revision's events never span two responses
                    rev = ev.kv.mod_revision
                    if rev <= until_revision and ev.kv.key.startswith(prefix):
                        changes.append(Change(ev.kv.key, rev, ev.type == _DELETE))
                if resp.events and resp.events[-1].kv.mod_revision >= until_revision:
                    return changes
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.CANCELLED):
                return None
            raise self._error(exc) from None
        finally:
            done.set()
            stream.cancel()
        return None

    def watch_prefix(self, prefix: bytes, start_revision: int,
                     callback: Callable[[Any], None]) -> Any:
        """Events under `prefix` from `start_revision`, one callback per response (one etcd
        transaction arrives as one response). Errors reach the callback as exceptions."""
        return self._call(lambda c: c.add_watch_prefix_callback(
            prefix, callback, start_revision=start_revision))

    def cancel_watch(self, watch_id: Any) -> None:
        try:
            self._client.cancel_watch(watch_id)
        except Exception:
            pass


def connect(endpoints: str | None = None, timeout: float = 10.0) -> EtcdStore:
    return EtcdStore(EtcdConfig.from_env(endpoints, timeout=timeout))
