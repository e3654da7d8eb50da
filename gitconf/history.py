"""A unit's deploy history (`_system/history/{svc}/{env}/…`), newest first, as typed records."""

from __future__ import annotations

from .errors import CheckFailed
from .model import UnitId
from .records import DeployRecord, Keys, RecordError
from .store import Store


def read_history(store: Store, keys: Keys, unit: UnitId, limit: int = 0,
                 ) -> list[DeployRecord]:
    """The newest `limit` deploys (0: all). A unit gitconf never deployed is an error; a
    record that cannot be read is skipped rather than hiding the others."""
    kvs, _ = store.scan(keys.history_prefix(unit))
    if not kvs and store.get(keys.unit_record(unit)) is None:
        raise CheckFailed(f"no deploys of {unit} under {keys.prefix or '/'}")
    out: list[DeployRecord] = []
    for kv in reversed(kvs):
        try:
            out.append(DeployRecord.from_json(kv.value))
        except RecordError:
            continue
        if limit and len(out) >= limit:
            break
    return out
