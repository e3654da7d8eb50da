"""The `Store` over etcd: the only module that imports `pyetcd` (the maintained python-etcd3
fork) or `grpc`.

Requests are built from etcd's own protobufs and sent on pyetcd's channels: that gives us ranges
filtered by `mod_revision`, count-only ranges, pagination and compare-guarded transactions that the
high-level client does not expose. Every error the client raises goes through one table
(`map_etcd_errors`, like httpx's `map_httpcore_exceptions`) and comes out as a
`gitconf.errors.EtcdError` carrying the server's text (DEPENDENCY-FACTS.md). Failover is ours
too: an endpoint that fails is skipped for a couple of seconds (pyetcd's default would refuse it
for 300 s) and the call goes to the next one; an endpoint that accepts connections but never
answers is given up after the dial timeout (2 s, `GITCONF_ETCD_TIMEOUT`), not grpc's 20 s.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd.events import DeleteEvent

from .errors import EtcdError, EtcdUnavailable, UsageError
from .fastclass import dataclass
from .store import (
    KV,
    Change,
    Compare,
    EtcdAuthFailed,
    EtcdCompacted,
    EtcdNoSpace,
    EtcdPermissionDenied,
    KeyEvent,
    Op,
    PendingTxn,
    RangeResult,
    Replay,
    TxnResult,
    TxnTooLarge,
    WatchBatch,
    WatchId,
    WatchScope,
    prefix_end,
    scan_pages,
    varint,
    wire_delete,
    wire_put,
)

if TYPE_CHECKING:
    from .store import Store

__all__ = ["KV", "Change", "EtcdAuthFailed", "EtcdCompacted", "EtcdConfig", "EtcdNoSpace",
           "EtcdPermissionDenied", "EtcdStore", "KeyEvent", "RangeResult", "TxnResult",
           "TxnTooLarge", "WatchBatch", "connect", "map_etcd_errors", "wire_delete", "wire_put",
           "wire_txn"]

DEFAULT_ENDPOINT = "127.0.0.1:2379"
DEFAULT_DIAL_TIMEOUT = 2.0  # like etcdctl's --dial-timeout
RANGE_TIMEOUT = 30.0  # a large range may take a while; every other request has `timeout`
_DELETE = 1  # mvccpb.Event.EventType.DELETE
MAX_RECEIVE = 256 * 1024 * 1024
T = TypeVar("T")


# -- errors: one table from what pyetcd/grpc raise to ours (the classes are in store.py) ---------


_FAILOVER = "failover"  # another member (or the same one, later) may answer
_REAUTH = "reauth"  # get a fresh token and try again
_CODE = grpc.StatusCode
_AUTH_HINT = "check GITCONF_ETCD_USER/GITCONF_ETCD_PASSWORD"
_ClientError = (grpc.RpcError, pyetcd.exceptions.Etcd3Exception, ValueError)


@dataclass(frozen=True)
class _Rule:
    """One row of the table: what the client raised -> what we raise."""

    raised: type[BaseException]
    error: type[EtcdError]
    message: str  # str.format fields: text (the server's), op, subject, where
    codes: tuple[grpc.StatusCode, ...] = ()  # grpc status codes; any when empty
    text: str = ""  # a piece of the server's text; any when empty
    retry: str = ""  # _FAILOVER, _REAUTH or "" (raise at once)


_UNREACHABLE = "{where} is unreachable ({text})"
_ERROR_TABLE: tuple[_Rule, ...] = (
    # grpc errors, which pyetcd lets through (or loses the text of): the server's text decides
    _Rule(grpc.RpcError, TxnTooLarge, "etcd refused the transaction: {text}",
          text="too many operations in txn request"),
    _Rule(grpc.RpcError, TxnTooLarge, "etcd refused the transaction: {text}",
          text="request is too large"),
    _Rule(grpc.RpcError, TxnTooLarge, "the transaction is larger than the client sends: {text}",
          codes=(_CODE.RESOURCE_EXHAUSTED,), text="Sent message larger than max"),
    _Rule(grpc.RpcError, EtcdError, "etcd's answer to {op} on {subject} is larger than the "
          "client accepts: {text}", codes=(_CODE.RESOURCE_EXHAUSTED,), text="larger than max"),
    _Rule(grpc.RpcError, EtcdNoSpace, "etcd is out of space (alarm NOSPACE): {text}; only reads "
          "and deletes work until an operator compacts and defragments etcd and disarms the "
          "alarm (etcdctl alarm disarm)", text="database space exceeded"),
    _Rule(grpc.RpcError, EtcdAuthFailed, f"authentication failed: {_AUTH_HINT} ({{text}})",
          text="authentication failed"),
    _Rule(grpc.RpcError, EtcdAuthFailed, "authentication failed: etcd requires a user; set "
          "GITCONF_ETCD_USER/GITCONF_ETCD_PASSWORD ({text})", text="user name is empty"),
    _Rule(grpc.RpcError, EtcdAuthFailed, "authentication failed: etcd has authentication "
          "disabled; unset GITCONF_ETCD_USER/GITCONF_ETCD_PASSWORD ({text})",
          text="authentication is not enabled"),
    _Rule(grpc.RpcError, EtcdAuthFailed, f"authentication failed: {_AUTH_HINT} ({{text}})",
          text="auth token", retry=_REAUTH),  # invalid or expired: the client never refreshes
    _Rule(grpc.RpcError, EtcdAuthFailed, f"authentication failed: {_AUTH_HINT} ({{text}})",
          text="revision of auth store is old", retry=_REAUTH),
    _Rule(grpc.RpcError, EtcdPermissionDenied, "etcd: permission denied for {op} on {subject}: "
          "the user needs read/write on the prefix (docs/security.md)",
          codes=(_CODE.PERMISSION_DENIED,)),
    _Rule(grpc.RpcError, EtcdCompacted, "etcd: {text}", text="has been compacted"),
    _Rule(grpc.RpcError, EtcdUnavailable, _UNREACHABLE,
          codes=(_CODE.UNAVAILABLE, _CODE.DEADLINE_EXCEEDED), retry=_FAILOVER),
    _Rule(grpc.RpcError, EtcdError, "etcd: {op} on {subject} was cancelled ({text})",
          codes=(_CODE.CANCELLED,)),
    _Rule(grpc.RpcError, EtcdError, "etcd: {text}"),
    # pyetcd's own exceptions (its watch and its failover raise these)
    _Rule(pyetcd.exceptions.NoServerAvailableError, EtcdUnavailable,
          "{where} is unreachable (every member failed recently)", retry=_FAILOVER),
    _Rule(pyetcd.exceptions.ConnectionFailedError, EtcdUnavailable, _UNREACHABLE,
          retry=_FAILOVER),
    _Rule(pyetcd.exceptions.ConnectionTimeoutError, EtcdUnavailable, _UNREACHABLE,
          retry=_FAILOVER),
    _Rule(pyetcd.exceptions.WatchTimedOut, EtcdUnavailable,
          "{where} did not confirm the watch in time", retry=_FAILOVER),
    _Rule(pyetcd.exceptions.RevisionCompactedError, EtcdCompacted, "etcd: {text}"),
    _Rule(pyetcd.exceptions.Etcd3Exception, EtcdError, "etcd: {text}"),
    _Rule(ValueError, EtcdUnavailable, "{where} is unreachable ({text})",
          text="failed node", retry=_FAILOVER),  # pyetcd: "Trying to use a failed node"
)

Subject = str | Callable[[], str] | None  # what the request was about, computed on error only


def _text_of(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        details = exc.details() if hasattr(exc, "details") else None
        return str(details or exc).replace("\n", " ")
    if isinstance(exc, pyetcd.exceptions.RevisionCompactedError):
        return (f"required revision has been compacted (history starts at "
                f"{exc.compacted_revision})")
    return str(exc) or type(exc).__name__


def _rule_for(exc: BaseException) -> _Rule | None:
    code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
    text = _text_of(exc)
    for rule in _ERROR_TABLE:
        if (isinstance(exc, rule.raised) and (not rule.codes or code in rule.codes)
                and rule.text in text):
            return rule
    return None


def _render(rule: _Rule, exc: BaseException, op: str, subject: Subject, where: str) -> str:
    try:
        about = subject() if callable(subject) else subject
    except Exception:  # describing the keys must never hide the error itself
        about = None
    return rule.message.format(text=_text_of(exc), op=op, subject=about or "its keys",
                               where=f"etcd at {where}" if where else "etcd")


def etcd_error(exc: BaseException, op: str = "request", subject: Subject = None,
               where: str = "") -> EtcdError | None:
    """Our exception for what the client raised (None: not an etcd error, let it through)."""
    if isinstance(exc, EtcdError):
        return exc
    rule = _rule_for(exc)
    if rule is None:
        return None
    return rule.error(_render(rule, exc, op, subject, where))


@contextmanager
def map_etcd_errors(op: str = "request", subject: Subject = None,
                    where: str = "") -> Iterator[None]:
    """Turn any pyetcd/grpc error raised inside into the `EtcdError` the table gives."""
    try:
        yield
    except _ClientError as exc:
        mapped = etcd_error(exc, op, subject, where)
        if mapped is None:
            raise
        raise mapped from exc


def _range_subject(req: Any) -> Callable[[], str]:
    """What a `RangeRequest` asked for, in words: computed on error only."""
    return lambda: describe_keys(req.key, req.range_end or None)


def _show(key: bytes) -> str:
    text = key.decode("utf-8", "backslashreplace")
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def describe_keys(start: bytes, end: bytes | None = None) -> str:
    if not end:
        return f"key {_show(start)}"
    if end == prefix_end(start):
        return f"prefix {_show(start)}"
    if start == b"\0" and end == b"\0":
        return "every key"
    return f"keys [{_show(start)}, {_show(end)})"


def _op_key(op: Any) -> bytes:
    if isinstance(op, bytes):  # an encoded RequestOp
        op = etcdrpc.RequestOp.FromString(op)
    kind = op.WhichOneof("request")
    return bytes(getattr(op, kind).key) if kind else b""


def _txn_subject(compares: Sequence[Any], ops: Sequence[Any]) -> str:
    keys = [_op_key(op) for op in ops] + [bytes(c.key) for c in compares]
    keys = [k for k in keys if k]
    if not keys:
        return "its keys"
    more = len(set(keys)) - 1
    return describe_keys(keys[0]) + (f" and {more} more" if more else "")


# -- configuration -----------------------------------------------------------------------------


@dataclass
class EtcdConfig:
    endpoints: list[tuple[str, int]]
    secure: bool = False
    user: str | None = None
    password: str | None = None
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 10.0  # each request (ranges: at least RANGE_TIMEOUT)
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT  # a member that does not answer is given up

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
        dial = _seconds(env("GITCONF_ETCD_TIMEOUT"), DEFAULT_DIAL_TIMEOUT)
        return cls(parsed, secure=secure or cacert is not None,
                   user=env("GITCONF_ETCD_USER") or None,
                   password=env("GITCONF_ETCD_PASSWORD") or None,
                   cacert=cacert, cert=env("GITCONF_ETCD_CERT") or None,
                   key=env("GITCONF_ETCD_KEY") or None, timeout=max(timeout, dial),
                   dial_timeout=dial)

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return ",".join(f"{scheme}://{h}:{p}" for h, p in self.endpoints)


def _seconds(raw: str | None, default: float) -> float:
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"GITCONF_ETCD_TIMEOUT must be a number of seconds, not {raw!r}")
    return value


# -- etcd's protobuf wire format, written by hand for the hot path -----------------------------
# A deploy sends ~100,000 puts; building a message object per put and letting grpc serialize
# the whole request again costs more than the rest of the write. Operations are encoded once,
# straight to bytes (`store.wire_put`, `store.wire_delete`), and a transaction is the
# concatenation of its fields.


def wire_txn(compares: Sequence[Any], ops: Sequence[bytes]) -> bytes:
    """`TxnRequest{compare..., success...}` from compare messages and encoded operations."""
    parts: list[bytes] = []
    add = parts.extend
    for c in compares:
        data = c.SerializeToString()
        add((b"\x0a", varint(len(data)), data))
    for op in ops:
        add((b"\x12", varint(len(op)), op))
    return b"".join(parts)


# -- the connection: client, auth, failover, error mapping -------------------------------------


class _Connection:
    """One pyetcd client with our failover, re-authentication and error table."""

    def __init__(self, config: EtcdConfig):
        self.config = config
        self._lock = threading.Lock()
        self._client: Any = None
        self._raw_channel: Any = None
        self._raw_method: Any = None
        self._connect()

    def _connect(self) -> None:
        cfg = self.config
        if (cfg.user is None) != (cfg.password is None):
            raise UsageError("GITCONF_ETCD_USER and GITCONF_ETCD_PASSWORD go together")
        self._client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=self._endpoints(), timeout=cfg.timeout, failover=True)
        # plaintext + token: grpc refuses call credentials on an insecure channel; the token
        # travels as metadata instead (pyetcd issue #17)
        self._client.call_credentials = None
        if cfg.user is not None:
            self._authenticate()

    def _endpoints(self) -> list[Any]:
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
        dial_ms = max(100, int(cfg.dial_timeout * 1000))
        opts = [("grpc.max_receive_message_length", MAX_RECEIVE),
                ("grpc.max_send_message_length", MAX_RECEIVE),
                # grpc's connect timeout (20 s by default) is this option; a member that came
                # back is tried again within 5 s (grpc's default backoff grows to 120 s)
                ("grpc.min_reconnect_backoff_ms", dial_ms),
                ("grpc.max_reconnect_backoff_ms", max(dial_ms, 5000))]
        return [pyetcd.Endpoint(h, p, secure=cfg.secure, creds=creds, time_retry=2.0,
                                opts=opts) for h, p in cfg.endpoints]

    def _authenticate(self) -> None:
        """A fresh token for the current client (pyetcd never refreshes it: it expires after
        etcd's --auth-token-ttl, 300 s by default)."""
        cfg = self.config
        req = etcdrpc.AuthenticateRequest(name=cfg.user, password=cfg.password)
        resp = self._call(lambda c: c.authstub.Authenticate(req, timeout=cfg.timeout),
                          "authenticate", f"user {cfg.user}", reauth=False)
        client = self._client
        with self._lock:
            client.metadata = (("token", resp.token),)
            watcher = client._stubs.get("watcher")
            if watcher is not None:  # its stream reconnects with the token it was given
                watcher._metadata = client.metadata

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _call(self, fn: Callable[[Any], T], op: str = "request", subject: Subject = None,
              attempts: int = 0, reauth: bool = True) -> T:
        """Run `fn(client)`; on an unreachable member fail over to the next and try again, on
        an expired token authenticate again; anything else becomes our error at once."""
        attempts = attempts or max(3, len(self.config.endpoints) * 2)
        last: tuple[BaseException, _Rule] | None = None
        for attempt in range(attempts):
            client = self._client
            try:
                return fn(client)
            except _ClientError as exc:
                rule = _rule_for(exc)
                if rule is None:
                    raise
                last = exc, rule
                if rule.retry == _FAILOVER:
                    self._failover(client, exc, attempt)
                elif rule.retry == _REAUTH and reauth and self.config.user is not None:
                    self._authenticate()
                else:
                    break
        if last is None:
            raise EtcdUnavailable(f"etcd at {self.config.describe()} is unreachable")
        err, rule = last
        raise rule.error(_render(rule, err, op, subject, self.config.describe())) from err

    @staticmethod
    def _failover(client: Any, exc: BaseException, attempt: int) -> None:
        if isinstance(exc, pyetcd.exceptions.NoServerAvailableError):
            for ep in client.endpoints.values():
                ep.last_failed = 0  # every member failed recently: try them all again
            time.sleep(min(0.2 * (attempt + 1), 1.0))
            return
        if isinstance(exc, grpc.RpcError):
            try:
                client.endpoint_in_use.fail()
                client._clear_old_stubs()
            except Exception:
                pass
        time.sleep(min(0.1 * (attempt + 1), 0.5))

    def _fail_member(self, member: Any) -> None:
        """Mark `member` failed (once: several transactions in flight on it fail together),
        so the client's next request goes to another member."""
        if member is None or member.is_failed():
            return
        member.fail()
        if self._client.endpoint_in_use is member:
            self._client._clear_old_stubs()

    def _kw(self, timeout: float | None = None) -> dict[str, Any]:
        c = self._client
        return {"timeout": timeout or self.config.timeout, "credentials": c.call_credentials,
                "metadata": c.metadata}

    def _where(self) -> str:
        return self.config.describe()


# -- reads -------------------------------------------------------------------------------------


class _Reads(_Connection):
    def range(self, start: bytes, end: bytes | None = None, *, keys_only: bool = False,
              count_only: bool = False, min_mod_revision: int = 0, limit: int = 0,
              revision: int = 0, serializable: bool = False) -> RangeResult:
        req = etcdrpc.RangeRequest(key=start, keys_only=keys_only, count_only=count_only,
                                   limit=limit, revision=revision, serializable=serializable)
        if end is not None:
            req.range_end = end
        if min_mod_revision:
            req.min_mod_revision = min_mod_revision
        resp = self._range_call(req)
        kvs = [KV(kv.key, kv.value, kv.mod_revision, kv.create_revision) for kv in resp.kvs]
        return RangeResult(kvs, resp.count, resp.more, resp.header.revision)

    def _range_kw(self) -> dict[str, Any]:
        """A `Range`'s call options: the longer timeout a large range may need."""
        return self._kw(max(self.config.timeout, RANGE_TIMEOUT))

    def _range_call(self, req: Any) -> Any:
        """One `Range` through `_call` (failover, re-authentication, our errors)."""
        return self._call(lambda c: c.kvstub.Range(req, **self._range_kw()), "range",
                          _range_subject(req))

    def _ranges(self, requests: Sequence[Any]) -> list[Any]:
        """Several `Range`s in flight at once, their answers in order: etcd serves them in
        parallel (grpc's futures, no Python thread). One whose member went away, or whose
        token expired, is asked again through `_call` (failover, re-authentication); any other
        failure is our error at once. Either way the ones not yet read are cancelled."""
        client = self._client
        pending: list[Any] = []
        for req in requests:
            try:
                pending.append(client.kvstub.Range.future(req, **self._range_kw()))
            except _ClientError:
                pending.append(None)

        out: list[Any] = []
        try:
            for req, fut in zip(requests, pending, strict=True):
                resp = None
                if fut is not None:
                    try:
                        resp = fut.result()
                    except grpc.RpcError as exc:
                        rule = _rule_for(exc)
                        if rule is None or rule.retry not in (_FAILOVER, _REAUTH):
                            with map_etcd_errors("range", _range_subject(req),
                                                 self._where()):
                                raise  # the same answer twice: compacted, denied...
                out.append(resp if resp is not None else self._range_call(req))
        finally:
            for fut in pending[len(out):]:
                if fut is not None:
                    fut.cancel()
        return out

    def get(self, key: bytes) -> KV | None:
        res = self.range(key)
        return res.kvs[0] if res.kvs else None

    def scan(self, prefix: bytes, *, keys_only: bool = False, min_mod_revision: int = 0,
             page: int = 20_000) -> tuple[list[KV], int]:
        """Every key under `prefix`, in pages read at one revision (a consistent snapshot)."""
        out: list[KV] = []
        revision = 0
        for kvs, at in scan_pages(self, prefix, page, keys_only=keys_only,
                                  min_mod_revision=min_mod_revision):
            out.extend(kvs)
            revision = at
        return out, revision

    def count(self, prefix: bytes, end: bytes | None = None) -> tuple[int, int]:
        res = self.range(prefix, end or prefix_end(prefix), count_only=True)
        return res.count, res.revision

    def revision(self, within: bytes | None = None) -> int:
        """The store's current revision. It is read with a count-only range of one key: by
        default key "\\0", outside any prefix; `within` reads the key `within` instead (the
        prefix itself, which a role granting the prefix covers), for users who may read
        nothing else. Either is one index lookup, whatever the prefix holds."""
        return self.range(b"\0" if within is None else within, count_only=True).revision


# -- transactions and writes -------------------------------------------------------------------


class _Writes(_Connection):
    @staticmethod
    def cmp_mod(key: bytes, mod_revision: int) -> Compare:
        """`mod_revision(key) == rev`; with 0 it means "the key does not exist"."""
        return etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD,
                               key=key, mod_revision=mod_revision)

    @staticmethod
    def cmp_range_unchanged(prefix: bytes, revision: int) -> Compare:
        """No key under `prefix` was created or modified after `revision` (one compare over a
        range: etcd checks every key in it)."""
        return etcdrpc.Compare(result=etcdrpc.Compare.LESS, target=etcdrpc.Compare.MOD,
                               key=prefix, range_end=prefix_end(prefix),
                               mod_revision=revision + 1)

    @staticmethod
    def cmp_created(key: bytes, create_revision: int) -> Compare:
        """`create_revision(key) == rev`; with 0: the key does not exist (an election)."""
        return etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.CREATE,
                               key=key, create_revision=create_revision)

    @staticmethod
    def op_put(key: bytes, value: bytes, lease: int = 0) -> Op:
        return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value,
                                                                lease=lease))

    @staticmethod
    def op_delete(key: bytes) -> Op:
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))

    @staticmethod
    def op_get(key: bytes) -> Op:
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key))

    @staticmethod
    def op_range_prefix(prefix: bytes) -> Op:
        """Every key under `prefix` (read with `TxnResult.ranges()`)."""
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
            key=prefix, range_end=prefix_end(prefix)))

    wire_put = staticmethod(wire_put)
    wire_delete = staticmethod(wire_delete)

    def txn(self, compares: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnResult:
        req = etcdrpc.TxnRequest(compare=list(compares), success=list(success),
                                 failure=list(failure))
        resp = self._call(lambda c: c.kvstub.Txn(req, **self._kw()), "txn",
                          lambda: _txn_subject(compares, success))
        return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))

    def _raw_txn(self, client: Any) -> Any:
        """`KV/Txn` on the client's current channel, taking an already encoded request."""
        channel = client.channel
        if self._raw_channel is not channel:
            self._raw_channel = channel
            self._raw_method = channel.unary_unary(
                "/etcdserverpb.KV/Txn", request_serializer=None,
                response_deserializer=etcdrpc.TxnResponse.FromString)
        return self._raw_method

    def txn_start(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> PendingTxn:
        """Send a transaction of encoded operations (`wire_put`, `wire_delete`) without
        waiting: grpc's own future, no Python thread per call. `txn_finish` collects it (and
        resends it, once failed over, if the member went away; resending is safe because every
        write of ours is guarded by compares)."""
        req = wire_txn(compares, ops)
        client = self._client
        try:
            method = self._raw_txn(client)  # picks the member: note which one it is
            return PendingTxn((method.future(req, **self._kw()), req, client.endpoint_in_use))
        except _ClientError:
            return PendingTxn((None, req, None))

    def txn_finish(self, started: PendingTxn) -> TxnResult:
        """Collect a transaction; if its member failed (gone, or frozen past the request
        timeout), mark that member failed before resending, so the resend goes to another one
        instead of waiting a second timeout on the same member."""
        fut, req, member = cast("tuple[Any, bytes, Any]", started)
        if fut is not None:
            try:
                resp = fut.result()
                return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))
            except grpc.RpcError as exc:
                rule = _rule_for(exc)
                if rule is None or rule.retry != _FAILOVER:
                    with map_etcd_errors("txn", lambda: _wire_subject(req), self._where()):
                        raise
                self._fail_member(member)
        resp = self._call(lambda c: self._raw_txn(c)(req, **self._kw()), "txn",
                          lambda: _wire_subject(req))
        return TxnResult(resp.succeeded, resp.header.revision, list(resp.responses))

    def txn_wire(self, compares: Sequence[Compare], ops: Sequence[bytes]) -> TxnResult:
        return self.txn_finish(self.txn_start(compares, ops))

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        req = etcdrpc.PutRequest(key=key, value=value, lease=lease)
        resp = self._call(lambda c: c.kvstub.Put(req, **self._kw()), "put", describe_keys(key))
        return int(resp.header.revision)

    def delete(self, key: bytes) -> int:
        req = etcdrpc.DeleteRangeRequest(key=key)
        resp = self._call(lambda c: c.kvstub.DeleteRange(req, **self._kw()), "delete",
                          describe_keys(key))
        return int(resp.deleted)


def _wire_subject(req: bytes) -> str:
    txn = etcdrpc.TxnRequest.FromString(req)
    return _txn_subject(list(txn.compare), list(txn.success))


# -- leases and watches ------------------------------------------------------------------------


class _LeasesWatches(_Connection):
    def lease_grant(self, ttl: int) -> int:
        req = etcdrpc.LeaseGrantRequest(TTL=ttl)
        resp = self._call(lambda c: c.leasestub.LeaseGrant(req, **self._kw()), "lease grant")
        return int(resp.ID)

    def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease once; returns its TTL (0: the lease is gone)."""
        def call(c: Any) -> Any:
            reqs = iter([etcdrpc.LeaseKeepAliveRequest(ID=lease_id)])
            for resp in c.leasestub.LeaseKeepAlive(reqs, **self._kw()):
                return resp
            return None

        resp = self._call(call, "lease keepalive")
        return int(resp.TTL) if resp is not None else 0

    def lease_revoke(self, lease_id: int) -> None:
        req = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(lambda c: c.leasestub.LeaseRevoke(req, **self._kw()), "lease revoke",
                       attempts=2)
        except EtcdError:
            pass

    def watch_prefix(self, prefix: bytes, start_revision: int,
                     callback: Callable[[WatchBatch | Exception], None]) -> WatchId:
        """Events under `prefix` from `start_revision`, one `WatchBatch` per response (one etcd
        transaction arrives as one response). An error, or the end of the stream, reaches the
        callback as an `EtcdError` and ends the watch: watch again from the last revision + 1."""
        subject, where = describe_keys(prefix, prefix_end(prefix)), self._where()

        def deliver(resp: Any) -> None:
            if resp is None:  # pyetcd ends the stream quietly (a failover closed it)
                callback(EtcdUnavailable(f"etcd at {where}: the watch stream was closed"))
            elif isinstance(resp, BaseException):
                mapped = etcd_error(resp, "watch", subject, where)
                callback(mapped if mapped is not None else EtcdError(f"etcd: {resp}"))
            else:
                callback(WatchBatch([KeyEvent(ev.key, ev.mod_revision,
                                              isinstance(ev, DeleteEvent), ev.value)
                                     for ev in resp.events], resp.header.revision))

        return WatchId(self._call(lambda c: c.add_watch_prefix_callback(
            prefix, deliver, start_revision=start_revision), "watch", subject))

    def cancel_watch(self, watch_id: WatchId) -> None:
        try:
            self._client.cancel_watch(watch_id)
        except Exception:
            pass


# -- history: what changed between two revisions -----------------------------------------------

_WATCH_BATCH_REVS = 1000  # etcd's watchBatchMaxRevs: a replayed batch with fewer is whole
_SILENCE = 1.0  # prefix replay on an etcd whose progress notifications may overtake events


class _Silence:
    """Cancels a watch stream when nothing arrived for a while (re-armed by each response)."""

    def __init__(self, stream: Any, seconds: float):
        self.stream, self.seconds = stream, seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        self.stop()
        self._timer = threading.Timer(self.seconds, self.stream.cancel)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _drain(requests: queue.SimpleQueue[Any]) -> Iterator[Any]:
    while (item := requests.get()) is not None:
        yield item


def _whole_batch(events: Sequence[Any]) -> bool:
    """Fewer revisions than etcd puts in one replayed batch: nothing of it was held back."""
    revs, last = 0, -1
    for ev in events:
        if ev.kv.mod_revision != last:
            revs, last = revs + 1, ev.kv.mod_revision
    return revs < _WATCH_BATCH_REVS


def _progress_is_ordered(version: str) -> bool:
    """etcd sends requested progress notifications after the events they cover since 3.5.13
    and 3.4.31 (etcd issues #15220 and #17507); before, one can overtake replayed events."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return False
    v = tuple(int(x) for x in m.groups())
    return (3, 4, 31) <= v < (3, 5, 0) or v >= (3, 5, 13)


def _collect(stream: Any, prefix: bytes, until: int, trust_progress: bool,
             silence: _Silence | None, subject: str) -> Replay | None:
    """Events under `prefix` up to `until` from a watch replaying history, or None. The end
    is known from (a) an event at or past `until` (events arrive in revision order), (b) a
    progress notification at or past `until`, where etcd orders them after the events, or
    (c) a replayed batch sent at a revision past `until` that etcd did not cut short: etcd
    replays every event from the start revision to its current one in one batch of at most
    1000 revisions, and sends nothing when none matched."""
    changes = Replay()
    for resp in stream:
        if resp.compact_revision:
            return None
        if resp.canceled:
            if "permission denied" in resp.cancel_reason.lower():
                raise EtcdPermissionDenied(f"etcd: permission denied for watch on {subject}")
            return None
        if silence is not None:
            silence.arm()
        events = resp.events
        if resp.created or not events:
            if not resp.created and trust_progress and resp.header.revision >= until:
                return changes  # (b)
            continue
        changes.examined += len(events)
        for ev in events:  # one revision's events never span two responses
            kv = ev.kv
            if kv.mod_revision <= until and kv.key.startswith(prefix):
                changes.append(KeyEvent(kv.key, kv.mod_revision, ev.type == _DELETE, kv.value))
        if events[-1].kv.mod_revision >= until:
            return changes  # (a)
        if resp.header.revision >= until and _whole_batch(events):
            return changes  # (c)
    return None


_WALK_FROM = 5_000  # events a replay would ship before walking the prefix is considered
_WALK_LIMIT = 10_000  # changed keys a walk may return; more and the replay answers
_SAMPLE_REVS = 16  # the last revisions whose events estimate a replay's size
_TXN_OPS = 128  # etcd's default --max-txn-ops: most revisions write no more keys than this


class _History(_Reads):
    _progress_ordered: bool | None = None

    def changes_since(self, prefix: bytes, start_revision: int, until_revision: int,
                      timeout: float = 10.0, *, scope: WatchScope = "keyspace",
                      cuts: Sequence[bytes] = ()) -> Replay | None:
        """Every put and delete under `prefix` with a revision in [start, until], replayed from
        etcd's history by a watch: the cost follows the number of changes, where a
        `min_mod_revision` range makes the server walk the whole prefix (and sees no deletes).
        None when that history was compacted, may not be read, or the replay took too long.

        `scope="keyspace"` watches every key: every revision is made by some write, so an event
        at `until_revision` is certain to arrive and mark the end; it needs read access to the
        whole keyspace. `scope="prefix"` watches only the prefix: on etcd >= 3.5.13 a progress
        notification marks the end; on older servers, a replayed batch does, and when nothing
        under the prefix changed the answer is None after a second of silence. `scope="auto"`:
        the prefix where the server orders progress notifications, else the keyspace and, if
        the user may not read it, the prefix; or, after bulk traffic elsewhere, the prefix's
        keys changed since `start` (`_walk`: one event per key, at its last revision, without
        its value), read in parts cut at `cuts` (keys inside the prefix) that etcd reads in
        parallel."""
        if start_revision > until_revision:
            return Replay()
        if scope == "auto":
            walked = self._walk(prefix, start_revision, until_revision, timeout, cuts)
            if walked is not None:
                return walked
        whole, only = (b"\0", b"\0"), (prefix, prefix_end(prefix))
        if scope == "prefix" or (scope == "auto" and self._orders_progress()):
            tries = [only]
        else:
            tries = [whole, only] if scope == "auto" else [whole]
        for key, end in tries:
            try:
                return self._replay(prefix, key, end, start_revision, until_revision, timeout)
            except EtcdPermissionDenied:
                continue
        return None

    def _replay(self, prefix: bytes, key: bytes, end: bytes, start: int, until: int,
                timeout: float) -> Replay | None:
        whole = key == b"\0"
        trust = not whole and self._orders_progress()
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=key, range_end=end, start_revision=start)))
        if trust:
            requests.put(etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest()))
        subject = describe_keys(key, end)
        stream = self._call(lambda c: etcdrpc.WatchStub(c.channel).Watch(
            _drain(requests), timeout, credentials=c.call_credentials, metadata=c.metadata),
            "watch", subject)
        silence = None if whole or trust else _Silence(stream, min(_SILENCE, timeout))
        try:
            return _collect(stream, prefix, until, trust, silence, subject)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                return None
            with map_etcd_errors("watch", subject, self._where()):
                raise
        finally:
            if silence is not None:
                silence.stop()
            requests.put(None)
            stream.cancel()

    def _walk(self, prefix: bytes, start: int, until: int, timeout: float,
              cuts: Sequence[bytes] = ()) -> Replay | None:
        """The keys under `prefix` changed in [start, until] read from the prefix itself, when
        that is cheaper than a replay; None to replay instead. A replay costs what happened in
        the whole keyspace in between (etcd 3.5 reads every revision, a keyspace watch ships
        every event: 1.1 s for 200,000 writes of another application), a walk what the prefix
        holds (a `min_mod_revision` range reads every key under it: 0.2 s for 100,000 keys).
        The prefix's size comes from an index-only count. A replay holds one event a revision
        at least: when the revisions in between outnumber the prefix's keys, that settles it
        (and `examined` is that lower bound). Otherwise the replay's size is estimated from the
        events of the last 16 revisions, read by a keyspace watch; etcd syncs a watch that
        starts in the past every 100 ms, so this costs up to 0.1 s and is asked only when the
        revisions alone cannot tell.

        A walk sees no deletes. The counts before and after tell whether any key disappeared:
        keys before - keys after + keys created since = keys deleted + keys deleted and made
        again, so 0 means neither happened; otherwise the replay answers. `examined` is the
        estimated replay, so the pass moves its low-water mark past the traffic. Below
        ADVANCE_AFTER the mark stays and the next pass walks again, as cheaply; should a
        delete under the prefix send a later pass to the replay, that replay reads this
        traffic once more (and then moves the mark)."""
        revisions = until - start + 1
        if revisions * _TXN_OPS < _WALK_FROM or start < 2:  # a short replay, whatever the batches
            return None  # (and revision 0 would be "now" to the count before)
        end = prefix_end(prefix)
        try:
            after = self.range(prefix, end, count_only=True, revision=until).count
        except EtcdError:
            return None
        events = revisions
        if revisions < after:
            sample = min(revisions, _SAMPLE_REVS)
            events = revisions * self._events_in(until - sample + 1, until, timeout) // sample
            if events < _WALK_FROM or after > events:
                return None
        try:
            before, changed, more = self._walk_reads(prefix, start, until, cuts)
        except EtcdError:  # compacted, not permitted...: the replay knows what to answer
            return None
        created = sum(kv.create_revision >= start for kv in changed)
        if more or before - after + created != 0:
            return None
        return Replay([KeyEvent(kv.key, kv.mod_revision, False) for kv in changed],
                      examined=events)

    def _walk_reads(self, prefix: bytes, start: int, until: int, cuts: Sequence[bytes],
                    ) -> tuple[int, list[Any], bool]:
        """The prefix's count before `start`, its keys changed in [start, until] and whether
        there were more than `_WALK_LIMIT`, asked at once: the count and each part of the
        prefix between `cuts` are ranges etcd reads in parallel (the count and a walk of
        106,000 keys: 0.27 s one after the other, 0.19 s at once in parts on two cores)."""
        end = prefix_end(prefix)
        bounds = [prefix, *sorted({c for c in cuts if prefix < c < end}), end]
        count, *parts = self._ranges(
            [etcdrpc.RangeRequest(key=prefix, range_end=end, count_only=True,
                                  revision=start - 1)]
            + [etcdrpc.RangeRequest(key=a, range_end=b, keys_only=True, min_mod_revision=start,
                                    revision=until, limit=_WALK_LIMIT)
               for a, b in pairwise(bounds)])
        changed = [kv for part in parts for kv in part.kvs]
        return (int(count.count), changed,
                any(part.more for part in parts) or len(changed) > _WALK_LIMIT)

    def _events_in(self, first: int, last: int, timeout: float) -> int:
        """How many keys the transactions of [first, last] wrote (as many as revisions when
        that cannot be read): a sample of the traffic's batch size, the last few revisions
        replayed by a keyspace watch."""
        try:
            sample = self._replay(b"", b"\0", b"\0", first, last, min(timeout, 2.0))
        except EtcdError:
            sample = None
        return max(len(sample or ()), last - first + 1)

    def _orders_progress(self) -> bool:
        if self._progress_ordered is None:
            try:
                status = self._call(lambda c: c.maintenancestub.Status(
                    etcdrpc.StatusRequest(), **self._kw()), "status")
                self._progress_ordered = _progress_is_ordered(status.version)
            except EtcdError:
                self._progress_ordered = False
        return self._progress_ordered


# -- the facade --------------------------------------------------------------------------------


class EtcdStore(_History, _Writes, _LeasesWatches):
    """A connection to an etcd cluster with failover, auth, TLS and our error types: the
    `store.Store` the core uses."""

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(endpoints: str | None = None, timeout: float = 10.0) -> EtcdStore:
    return EtcdStore(EtcdConfig.from_env(endpoints, timeout=timeout))


if TYPE_CHECKING:
    def _is_a_store(store: EtcdStore) -> Store:  # mypy checks EtcdStore against the protocol
        return store
