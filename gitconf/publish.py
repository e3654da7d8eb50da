"""Publishing each service's compiled schema under `_system/schemas/` for clients that resolve
defaults (SPEC §3): written only when it changed, so a pass with nothing to do writes nothing.
A pass over a few units reads the records it compares with its live state, before it deploys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import EtcdError
from .records import Keys, SchemaRecord
from .store import KV, Store

_MANY = 64  # above this many services, one snapshot of the prefix is cheaper than gets
_PER_TXN = 64


def publish_schemas(store: Store, keys: Keys, schemas: Mapping[str, Mapping[str, Any]],
                    known: Mapping[bytes, KV | None] | None = None) -> list[int]:
    """Write the schemas that differ from what etcd holds; returns the revisions written.
    `known`: schema records the pass read before its deploy wrote (`read_live(also=...)`,
    None for an absent one); only the others are read here. A read after the deploy's
    write waited ~7 ms for it in a 1M-key etcd, and most passes write no schema at all."""
    if not schemas:
        return []
    names = sorted(schemas)
    known = known or {}
    current: dict[bytes, bytes] = {k: kv.value for k, kv in known.items() if kv is not None}
    unread = [n for n in names if keys.schema(n) not in known]
    if len(unread) > _MANY:
        for kv in store.scan(keys.kind_prefix("schemas"))[0]:
            current[kv.key] = kv.value
    elif unread:  # a few (a small commit): read just those, in one transaction
        res = store.txn([], [store.op_get(keys.schema(n)) for n in unread])
        for kvs in res.ranges():
            for kv in kvs:
                current[kv.key] = kv.value
    ops = []
    for name in names:
        key, value = keys.schema(name), SchemaRecord(schemas[name]).to_json()
        if current.get(key) != value:
            ops.append(store.op_put(key, value))
    revisions: list[int] = []
    for i in range(0, len(ops), _PER_TXN):
        try:
            revisions.append(store.txn([], ops[i:i + _PER_TXN]).revision)
        except EtcdError:
            pass  # a convenience for clients: the deploy itself has succeeded
    return revisions
