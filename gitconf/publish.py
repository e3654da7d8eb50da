"""Publishing each service's compiled schema under `_system/schemas/` for clients that resolve
defaults (SPEC §3): written only when it changed, so a pass with nothing to do writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import EtcdError
from .records import Keys, SchemaRecord
from .store import Store

_MANY = 64  # above this many services, one snapshot of the prefix is cheaper than gets
_PER_TXN = 64


def publish_schemas(store: Store, keys: Keys,
                    schemas: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Write the schemas that differ from what etcd holds; returns the revisions written."""
    if not schemas:
        return []
    names = sorted(schemas)
    current: dict[bytes, bytes] = {}
    if len(names) > _MANY:
        for kv in store.scan(keys.kind_prefix("schemas"))[0]:
            current[kv.key] = kv.value
    else:  # a few (a small commit): read just those, in one transaction
        res = store.txn([], [store.op_get(keys.schema(n)) for n in names])
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
